"""notebooks/quickstart.ipynb runs top to bottom (nbclient, a real Jupyter kernel).

The kernel is this interpreter (a kernelspec written to a temporary
JUPYTER_PATH), it imports stra_jax from this checkout (PYTHONPATH) and the
notebook finds the repository and its working folder through
``STRA_JAX_REPO`` and ``STRA_QUICKSTART_DIR``: nothing is written into the
repository. The saved notebook has no outputs (``make_quickstart.py`` writes it).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import nbclient  # requirements-dev.txt, as nbformat and ipykernel (the kernel)
import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
KERNEL = "stra-quickstart-test"
TIMEOUT_S = 300  # per cell; the whole notebook takes about a minute on a 2-core CPU

# An IPython startup file for the kernel: import torchvision even from a wheel whose
# C++ ops do not load beside this torch (torchvision then fails at import while
# registering fake kernels for the missing ops; those registrations are skipped,
# as tests/test_mobilenetv2.py does). ResNet-50 uses none of torchvision's custom
# ops. Without torch it does nothing, and the notebook's import cell explains and skips.
TORCHVISION_STARTUP = textwrap.dedent('''
    def _import_torchvision():
        try:
            import torch
        except ImportError:
            return
        register_fake = torch.library.register_fake

        def tolerant(op, *args, **kwargs):
            if isinstance(op, str) and op.startswith("torchvision::") \\
                    and not hasattr(torch.ops.torchvision, op.split("::")[1]):
                return lambda fn: fn
            return register_fake(op, *args, **kwargs)

        torch.library.register_fake = tolerant
        try:
            import torchvision  # noqa: F401  (now in sys.modules: the notebook's import finds it)
        except ImportError:
            pass
        finally:
            torch.library.register_fake = register_fake


    _import_torchvision()
    del _import_torchvision
''')


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one code cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def _has_png(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs
               if o.get("output_type") in ("display_data", "execute_result"))


def _seconds(cell) -> float:
    """A cell's run time from the timing nbclient records in its metadata."""
    from datetime import datetime

    timing = cell.metadata.get("execution", {})
    try:
        start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
    except (KeyError, ValueError):
        return float("nan")
    return (end - start).total_seconds()


def test_saved_notebook_has_no_outputs_and_matches_its_generator():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    spec = importlib.util.spec_from_file_location("make_quickstart", NOTEBOOK.parent / "make_quickstart.py")
    make_quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_quickstart)
    assert nbformat.writes(make_quickstart.build()) + "\n" == NOTEBOOK.read_text(), \
        "notebooks/quickstart.ipynb is stale: run python notebooks/make_quickstart.py"
    # No made-up repository URL: the first cell says how to open it from your fork.
    assert "colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/quickstart.ipynb" \
        in nb.cells[0].source and "stra-jax/stra-jax" not in NOTEBOOK.read_text()


def test_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    kernel_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "stra-jax test kernel", "language": "python"}))
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-torchvision.py").write_text(TORCHVISION_STARTUP)
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("STRA_JAX_REPO", str(REPO))
    monkeypatch.setenv("STRA_QUICKSTART_DIR", str(work))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    finally:
        seconds = time.perf_counter() - start
        nbformat.write(nb, tmp_path / "quickstart.executed.ipynb")  # to look at (pytest keeps tmp_path)
        (work / "resnet50_random.pth").unlink(missing_ok=True)  # 100 MB of random weights
    print(f"notebook executed in {seconds:.1f} s: " + ", ".join(
        f"{c.metadata['tags'][0]} {_seconds(c):.1f}" for c in nb.cells if c.cell_type == "code"))

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, cell.source[:200]
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"{cell.source[:200]}\n{errors}"

    install = _text(_tagged(nb, "install"))
    assert "stra_jax is importable: nothing to install" in install and "devices:" in install
    assert f"({sys.executable})" in install, "the kernel is not this interpreter"

    final = re.search(r"final: mAP ([\d.]+)%\s+rank-1 ([\d.]+)%", _text(_tagged(nb, "train")))
    assert final, _text(_tagged(nb, "train"))[-2000:]
    m_ap, rank1 = float(final.group(1)), float(final.group(2))
    assert math.isfinite(m_ap) and 0.0 < m_ap <= 100.0 and 0.0 <= rank1 <= 100.0
    logged = json.loads((work / "run" / "final_metrics.json").read_text())
    assert abs(100 * logged["reid/mAP"] - m_ap) < 0.051

    evaluated = re.search(r"eval\.py: mAP ([\d.]+)%", _text(_tagged(nb, "eval")))
    assert evaluated and math.isfinite(float(evaluated.group(1)))
    assert "differs from what training logged" not in _text(_tagged(nb, "eval"))  # eval.py repeats the run's numbers
    assert (work / "eval_synthetic.json").is_file()

    for tag in ("data-picture", "curves", "modes"):
        assert _has_png(_tagged(nb, tag)), f"cell {tag!r} showed no image"
    assert (work / "fig4" / "summary_modes.png").is_file() and (work / "curves.png").is_file()

    converted = _text(_tagged(nb, "convert"))
    assert "skipped" not in converted, converted
    assert "embedding: shape (1, 2048), logits (1, 1000)" in converted, converted
    diff = float(re.search(r"max \|JAX - PyTorch\| = (\S+)", converted).group(1))
    assert diff < 1e-3, converted
    partial = re.search(r"stra_resnet50 \(strict=False\): \d+ tensors loaded, .* \d+ left at initialisation, in: (.*)",
                        converted)
    assert partial and "layer4.2.conv2 (StRA)" in partial.group(1) and "classifier" in partial.group(1), converted

    assert not list((REPO / "notebooks").glob("stra_quickstart*")) and not (REPO / "stra_quickstart").exists()
