"""Command-line helpers shared by train.py and eval.py: flags that fail in one line.

absl + ml_collections answer a missing config file, an unknown ``:variant`` or a
misspelt ``--config.x.y=v`` with a traceback (or only the bad key), and
``--help`` with exit status 1. :func:`parse_flags_or_exit` checks those first
and prints one line naming the flag, the value and what is expected.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from absl import flags

from stra_jax.utils import ConfigError

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


def fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, PermissionError)


def run_or_exit(fn: Callable[..., Any], *args: Any, interrupted: str,
                errors: tuple[type[BaseException], ...] = USER_ERRORS) -> Any:
    """``fn(*args)`` for a command-line tool: a bad-input error (``errors``) prints
    ``error: <message>`` and exits 1, 2 for a :class:`ConfigError` (a config
    value, as for a bad flag); Ctrl-C prints ``interrupted`` and exits 130; no
    traceback for any."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    except ConfigError as err:
        fail(str(err))
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


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


def add_config_package_root(path: str) -> None:
    """Put the folder holding a config's package on ``sys.path``, so that
    ``configs/x.py`` can ``from configs.common import ...`` when run by a console
    script (``stra-train``), whose ``sys.path`` starts at its bin folder, not at
    the repository."""
    folder = Path(path).resolve().parent
    while (folder / "__init__.py").is_file():
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def load_config(spec: str) -> Any:
    """``configs/<exp>.py[:variant]`` -> its ConfigDict, or exit naming what is wrong."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        fail(f"--config {spec}: no such file {path!r} (expected configs/<exp>.py[:variant])")
    add_config_package_root(path)
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
                moved = _moved_keys().get(".".join(walked[1:] + [key]))
                if moved:
                    fail(f"--config.{dotted}: config.{'.'.join(walked[1:] + [key])} has moved: write it as {moved}")
                near = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
                hint = f'Did you mean "{near[0]}"? ' if near else ""
                fail(f"--config.{dotted}: {'.'.join(walked)} has no key {key!r}. {hint}"
                     f"Keys of {'.'.join(walked)}: {sorted(keys)}")
            node, walked = node[key], walked + [key]


def _moved_keys() -> dict[str, str]:
    """Config keys of older layouts (``train.lr_gamma``, ...) -> where they live now."""
    from stra_jax.losses import LEGACY_KEYS
    from stra_jax.training import optim, schedules

    return {f"train.{old}": new for table in (LEGACY_KEYS, optim.MOVED_KEYS, schedules.MOVED_KEYS)
            for old, new in table.items()}


MODEL_KWARGS = "--config.model.kwargs."


def _literal(text: str) -> Any:
    """A flag value as Python would read it (numbers, booleans, tuples), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_model_options(argv: list[str], config: Any) -> tuple[list[str], dict[str, Any]]:
    """``--config.model.kwargs.<option>=<value>`` for an option the config does not
    list yet (e.g. ``dtype``, ``attention_implementation``): ml_collections refuses
    new keys, so take them out of ``argv`` here, check them against the model
    family's options (one line naming them if not) and return them to be set."""
    from stra_jax.models.registry import get_entry, list_models  # only when flags are parsed

    name = _flag_value(argv, "config.model.name") or config.model.name
    listed = set(config.model.get("kwargs", {}).keys())
    kept, options = [], {}
    for arg in argv:
        key = arg[len(MODEL_KWARGS):].split("=", 1)[0] if arg.startswith(MODEL_KWARGS) else None
        if key is None or "." in key or key in listed:
            kept.append(arg)
            continue
        try:
            valid = get_entry(name).options
        except (KeyError, ValueError):
            fail(f"--config.model.name={name}: unknown model; known models: {list_models()}")
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f'Did you mean "{near[0]}"? ' if near else ""
            fail(f"{MODEL_KWARGS}{key}: {name} has no option {key!r}. {hint}Options of {name}: {valid}")
        if "=" not in arg:
            fail(f"{arg}: write a new model option as {MODEL_KWARGS}{key}=VALUE")
        options[key] = _literal(arg.split("=", 1)[1])
    return kept, options


def flags_parser(doc: str | None) -> Callable[[list[str]], list[str]]:
    """:func:`parse_flags_or_exit` whose ``--help`` prints ``doc`` (a console
    script's ``__main__`` has no docstring of its own)."""
    return lambda argv: parse_flags_or_exit(argv, doc)


def parse_flags_or_exit(argv: list[str], doc: str | None = None) -> list[str]:
    """absl flag parsing with one-line errors (exit 2) and ``--help`` (exit 0)."""
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print((doc if doc is not None else sys.modules["__main__"].__doc__ or "").strip() + "\n")
        # The tools' own flags (defined in stra_jax.tools.*, also when python train.py is __main__).
        own = [m for m in flags.FLAGS.flags_by_module_dict() if m == "__main__" or m.startswith("stra_jax.tools")]
        print("\n".join(flags.FLAGS.module_help(m) for m in own) or flags.FLAGS.get_help())
        sys.exit(0)
    spec = _flag_value(argv, "config")
    model_options: dict[str, Any] = {}
    if spec is not None:
        config = load_config(spec)
        argv, model_options = split_model_options(argv, config)
        check_overrides(argv, config)
        if model_options:
            sys.argv = list(argv)  # config_flags reads its overrides from sys.argv
    try:
        remaining = flags.FLAGS(argv)
        if spec is not None:
            config = flags.FLAGS["config"].value  # config_flags loads lazily; fail here, not in main
            if model_options:
                with config.unlocked():
                    config.model.kwargs.update(model_options)
    except SystemExit:
        raise
    except Exception as err:  # flags.Error, and whatever a config override raises
        fail(_last_line(err) if "Traceback" in str(err) else str(err).strip().replace("\n", " "))
    return remaining

