"""What the documented tools accept, for tests/test_docs.py: console scripts, modules,
each tool's ``--help`` flags (run once, in a few processes), configs and their keys."""
from __future__ import annotations

import concurrent.futures
import functools
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.docs_markdown import (ROOT)

def console_scripts() -> dict[str, str]:
    """stra-* -> the module it runs (``pkg.__main__`` -> ``pkg``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    out = {}
    for name, target in project["project"].get("scripts", {}).items():
        module = target.partition(":")[0]
        out[name] = module[: -len(".__main__")] if module.endswith(".__main__") else module
    return out


@functools.lru_cache(maxsize=None)
def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec and spec.origin else ""
    if spec and spec.submodule_search_locations:  # a package run with -m: its __main__
        main = Path(list(spec.submodule_search_locations)[0]) / "__main__.py"
        origin = str(main) if main.is_file() else origin
    return Path(origin).read_text() if origin and Path(origin).is_file() else ""


_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")

# One Python runs the --help of every argparse tool in turn (runpy, as ``python -m``
# would), so that jax and flax are imported once, not once per tool.
_HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys
results = {}
for target in json.loads(sys.argv[1]):
    kind, _, name = target.partition(":")
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if kind == "script":
                runpy.run_path(name, run_name="__main__")
            else:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException as error:
        code, _ = 1, err.write(f"{type(error).__name__}: {error}")
    results[target] = [code, out.getvalue(), err.getvalue()]
sys.__stdout__.write("\n@@HELP@@" + json.dumps(results))
"""


def _is_absl(target: str) -> bool:
    kind, _, name = target.partition(":")
    source = (ROOT / name).read_text() if kind == "script" else _module_source(name)
    return "absl" in source and "argparse" not in source


def _flag_names(text: str) -> frozenset[str]:
    names = set()
    for no, name in re.findall(r"(?<![\w-])--(\[no\])?([A-Za-z0-9][\w-]*)", text):
        names.add(name)
        if no:
            names.add("no" + name)
    return frozenset(names)


def _run(cmd: list[str], timeout: int = 180) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out"
    return proc.returncode, proc.stdout, proc.stderr


_HELP: dict[str, frozenset[str] | str] = {}


def _store(target: str, code: int, out: str, err: str, how: str) -> None:
    if code != 0:
        _HELP[target] = f"`{how}` exit {code}: {err.strip()[-300:]}"
    else:
        _HELP[target] = _flag_names(out)


def prefetch_help(targets) -> None:
    """The --help of every tool in ``targets`` (``module:NAME`` / ``script:PATH``):
    absl tools (``--helpfull``) and pytest each in a process of their own, the argparse
    tools one after the other in one more, all at the same time."""
    todo = sorted(set(targets) - set(_HELP))
    alone = [t for t in todo if _is_absl(t) or t == "module:pytest"]
    batch = [t for t in todo if t not in alone]

    def one(target: str) -> None:
        kind, _, name = target.partition(":")
        flag = "--helpfull" if _is_absl(target) else "--help"
        cmd = [sys.executable, *(["-m", name] if kind == "module" else [str(ROOT / name)]), flag]
        _store(target, *_run(cmd), how=shlex.join(["python", *cmd[1:]]))

    def batched() -> None:
        if not batch:
            return
        code, out, err = _run([sys.executable, "-c", _HELP_DRIVER, json.dumps(batch)])
        head, sep, tail = out.rpartition("\n@@HELP@@")
        if not sep:
            for target in batch:
                _HELP[target] = f"the --help driver failed (exit {code}): {err.strip()[-300:]}"
            return
        for target, (tcode, tout, terr) in json.loads(tail).items():
            kind, _, name = target.partition(":")
            _store(target, tcode, tout, terr, how=f"python {'-m ' if kind == 'module' else ''}{name} --help")

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(alone) + 1) as pool:
        for future in [pool.submit(one, t) for t in alone] + [pool.submit(batched)]:
            future.result()


def help_flags(target: str) -> frozenset[str] | str:
    """The --flag names a tool's help lists, or why its --help failed."""
    if target not in _HELP:
        prefetch_help([target])
    return _HELP[target]


# --------------------------------------------------------------------------- configs


@functools.lru_cache(maxsize=None)
def _config_module(path: str):
    rel = Path(path)
    if rel.parent == Path("configs") and (ROOT / "configs" / "__init__.py").is_file():
        return importlib.import_module(f"configs.{rel.stem}")
    spec = importlib.util.spec_from_file_location(f"_doc_config_{abs(hash(path))}", ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def load_config(path: str, arg: str | None):
    """get_config(arg) of a config file, or a string saying why it fails."""
    if not (ROOT / path).is_file():
        return f"no such config file {path!r}"
    try:
        module = _config_module(path)
        if not hasattr(module, "get_config"):
            return f"{path} has no get_config"
        return module.get_config(arg) if arg else module.get_config()
    except Exception as err:  # the config's own message (unknown variant, ...)
        return f"{path}:{arg or ''}: get_config raised {type(err).__name__}: {err}"


def check_override(config, dotted: str, model_name: str | None = None) -> str | None:
    """None if ``config.<dotted>`` exists (or names an option of the model family
    under model.kwargs, which the tools accept as new keys); else why not."""
    node, walked = config, []
    keys = dotted.split(".")
    for i, key in enumerate(keys):
        names = list(node.keys()) if hasattr(node, "keys") else []
        if key not in names:
            if walked == ["model", "kwargs"] and i == len(keys) - 1:
                from stra_jax.models.registry import get_entry

                name = model_name or config.model.name
                try:
                    if key in get_entry(name).options:
                        return None
                except (KeyError, ValueError):
                    return f"unknown model {name!r}"
                return f"model {name!r} has no option {key!r}"
            where = ".".join(["config", *walked])
            return f"{where} has no key {key!r} (keys: {sorted(names)})"
        node, walked = node[key], walked + [key]
    return None


# --------------------------------------------------------------------------- commands
