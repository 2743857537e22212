"""`pip install .`: the console scripts point at functions that exist, the package's
dependencies are requirements.txt, and an installed script finds the repository's
configs package from a config path while running outside the repository."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("stra-train", "stra-eval", "stra-convert", "stra-export", "stra-build-tfds", "stra-sweep",
           "stra-visualize-modes", "stra-plot-metrics", "stra-extract-features", "stra-pack-faces", "stra-summary",
           "stra-report")


def test_console_scripts_name_existing_functions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts = project["project"]["scripts"]
    assert sorted(scripts) == sorted(SCRIPTS)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), (name, path)
        defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert function in defined, (name, target)
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert project["project"]["dynamic"] == ["dependencies"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}


def test_installed_layout_finds_configs_from_the_config_path(tmp_path):
    """Only the package on sys.path (as after `pip install .`), run from elsewhere:
    the config file's own package root is added, so `from configs.common import`
    works and flag errors are the usual one-liners."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "stra_jax", site / "stra_jax", ignore=shutil.ignore_patterns("__pycache__"))
    run = tmp_path / "elsewhere"
    run.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    code = "import sys; from stra_jax.tools.train import cli; sys.argv[0] = 'stra-train'; cli()"
    config = f"{REPO / 'configs' / 'reid_synthetic.py'}:smoke"
    proc = subprocess.run([sys.executable, "-c", code, "--config", config, "--workdir", str(run / "w"),
                           "--config.train.epochz=1"], cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config.train has no key 'epochz'" in proc.stderr and 'Did you mean "epochs"' in proc.stderr
    assert not (run / "w").exists()
    helped = subprocess.run([sys.executable, "-c", code, "--help"], cwd=run, env=env, capture_output=True,
                            text=True, timeout=300)
    assert helped.returncode == 0 and "Train (and evaluate) a model" in helped.stdout
