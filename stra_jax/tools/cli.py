"""Command-line helpers shared by train.py and eval.py: flags that fail in one line.

absl + ml_collections answer a missing config file, an unknown ``:variant`` or a
misspelt ``--config.x.y=v`` with a traceback (or only the bad key), and
``--help`` with exit status 1. :func:`parse_flags_or_exit` checks those first
and prints one line naming the flag, the value and what is expected.
"""
from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from absl import flags

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


def fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _last_line(err: BaseException) -> str:
    """The innermost, most specific line of an error (config files raise inside
    ml_collections, which wraps the message in a formatted traceback)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception"))]
    return (errors or lines or [type(err).__name__])[-1].strip("'\"")


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def load_config(spec: str) -> Any:
    """``configs/<exp>.py[:variant]`` -> its ConfigDict, or exit naming what is wrong."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        fail(f"--config {spec}: no such file {path!r} (expected configs/<exp>.py[:variant])")
    try:
        module_spec = importlib.util.spec_from_file_location("_checked_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            fail(f"--config {spec}: {path} has no get_config(arg=None)")
        return module.get_config(arg) if arg else module.get_config()
    except SystemExit:
        raise
    except Exception as err:  # any error of the user's config file
        fail(f"--config {spec}: {_last_line(err)}")


def check_overrides(argv: list[str], config: Any) -> None:
    """Every ``--config.a.b=v`` names an existing key; otherwise exit naming the
    nearest valid key and the keys at that level."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, ["config"]
        for key in dotted.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if key not in keys:
                near = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
                hint = f'Did you mean "{near[0]}"? ' if near else ""
                fail(f"--config.{dotted}: {'.'.join(walked)} has no key {key!r}. {hint}"
                     f"Keys of {'.'.join(walked)}: {sorted(keys)}")
            node, walked = node[key], walked + [key]


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors (exit 2) and ``--help`` (exit 0)."""
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        main = sys.modules["__main__"]
        print((main.__doc__ or "").strip() + "\n")
        print(flags.FLAGS.main_module_help() if hasattr(flags.FLAGS, "main_module_help")
              else flags.FLAGS.get_help())
        sys.exit(0)
    spec = _flag_value(argv, "config")
    if spec is not None:
        check_overrides(argv, load_config(spec))
    try:
        remaining = flags.FLAGS(argv)
        if spec is not None:
            flags.FLAGS["config"].value  # noqa: B018 - config_flags loads lazily; fail here, not in main
    except SystemExit:
        raise
    except Exception as err:  # flags.Error, and whatever a config override raises
        fail(_last_line(err) if "Traceback" in str(err) else str(err).strip().replace("\n", " "))
    return remaining

