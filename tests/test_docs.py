"""The documentation says only what exists.

Every shell command shown in a fenced ```bash / ```console / ```sh / ```shell block
of README.md, CONTRIBUTING.md and docs/*.md is checked without running it:

- ``python train.py`` / ``python eval.py`` / ``stra-train`` / ``stra-eval`` /
  ``python -m stra_jax.tools.{train,evaluate}``: the ``--config`` file exists, its
  ``get_config(variant)`` accepts the ``:variants``, every ``--config.a.b=v`` names a key
  of that config (``--config.model.kwargs.X`` may also name an option of the model
  family, as the tools accept);
- ``stra-sweep`` / ``python -m stra_jax.tools.sweep``: the same for ``--config``,
  ``--variants`` (``a+b`` is ``:a,b``) and ``--set KEY=VALUE``;
- ``python -m MODULE`` and the ``stra-*`` console scripts (pyproject.toml
  ``[project.scripts]``): the module exists and every ``--flag`` is in its ``--help``
  (``--helpfull`` for absl tools), run once per tool in a subprocess;
- ``python FILE.py`` / ``bash FILE.sh``: the file exists (and the ``--flags`` given to a
  repository script are in its ``--help``); ``configs/``, ``benchmarks/``,
  ``notebooks/``, ``tests/`` paths given as arguments exist;
- other programs (pip, git, cd, ...) are skipped by name (``SKIPPED_PROGRAMS``); any
  other program fails, naming the file and line, so that list stays honest.

Values written as placeholders (``WORKDIR``, ``gs://BUCKET/x``, ``<dir>``, ``...``) are
not checked. Every relative link ``[text](path)`` / ``![alt](path)`` resolves to a
file, and a ``#anchor`` to a heading of its page. README's Quickstart block holds the
two commands that ``.ci/run`` reads. Nothing here trains or imports TensorFlow.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
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

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted({ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")})
DOC_IDS = [str(p.relative_to(ROOT)) for p in DOC_FILES]

SHELL_LANGS = {"bash", "console", "sh", "shell"}
# Programs whose commands are not checked (not this project's); anything else unknown fails.
SKIPPED_PROGRAMS = {
    "pip", "pip3", "git", "cd", "export", "source", ".", "tensorboard", "gsutil", "gcloud", "jupyter",
    "docker", "curl", "wget", "mkdir", "ls", "cat", "echo", "cp", "mv", "rm", "tar", "unzip", "head",
    "tail", "saved_model_cli", "nvidia-smi", "conda", "uv", "sed", "grep", "du", "ln",
}
# Skipped programs whose arguments may name files they create: their paths are not checked.
WRITING_PROGRAMS = {"cd", "export", "mkdir", "cp", "mv", "rm", "ln", "tar", "unzip", "git", "echo", "wget", "curl",
                    "docker", "sed", "source", "."}
SKIPPED_PYTHON_MODULES = {"pip", "venv", "ensurepip", "tensorboard", "jupyter", "notebook", "http.server"}
PYTHONS = {"python", "python3"}
# Scripts at the repository root that run a tool module (its --help lists the flags).
ROOT_SCRIPTS = {"train.py": "stra_jax.tools.train", "eval.py": "stra_jax.tools.evaluate"}
CONFIG_TOOLS = {"stra_jax.tools.train", "stra_jax.tools.evaluate"}
SWEEP_TOOL = "stra_jax.tools.sweep"
# Arguments under these folders are inputs of the repository and must exist.
CHECKED_PATH_PREFIXES = ("configs/", "benchmarks/", "notebooks/", "tests/", ".ci/")
HELP_FLAGS = {"-h", "--help", "--helpfull", "--helpshort"}
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
REDIRECTS = {">", ">>", "<", ">&", "&>", "<<", ">|"}


# --------------------------------------------------------------------------- markdown


@dataclasses.dataclass
class Block:
    lang: str
    fence_line: int  # 1-based line of the opening fence
    indent: int
    lines: list[tuple[int, str]]  # (1-based line number, text without the fence's indent)


_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


def fenced_blocks(text: str) -> list[Block]:
    blocks, current, fence = [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if current is None:
            if m:
                fence = m.group(2)
                current = Block(m.group(3).lower(), number, len(m.group(1)), [])
            continue
        if m and m.group(2).startswith(fence) and not line.strip()[len(m.group(2)):].strip():
            blocks.append(current)
            current = None
            continue
        strip = min(current.indent, len(line) - len(line.lstrip(" ")))
        current.lines.append((number, line[strip:]))
    return blocks


def strip_comment(line: str) -> str:
    """Cut an unquoted ``#`` that starts a word, as the shell does."""
    quote, prev = None, " "
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            return line[:i].rstrip()
        prev = ch
    return line


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) of a shell block: continuation lines joined, ``$ `` prompts
    stripped; in a ``console`` block with prompts, the lines without one are output."""
    prompted = block.lang == "console" and any(t.lstrip().startswith("$ ") for _, t in block.lines)
    commands, pending, start = [], "", 0
    for number, text in block.lines:
        if pending:
            text = pending + " " + strip_comment(text).strip()
        else:
            stripped = text.strip()
            if prompted and not stripped.startswith("$ "):
                continue
            if stripped.startswith("$ "):
                stripped = stripped[2:]
            text, start = strip_comment(stripped).strip(), number
        if text.endswith("\\"):
            pending = text[:-1].rstrip()
            continue
        pending = ""
        if text:
            commands.append((start, text))
    if pending:
        commands.append((start, pending))
    return commands


def split_segments(command: str) -> list[list[str]]:
    """shlex words of each simple command (split on && ; | ...), redirections dropped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    segments, words, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token in SEPARATORS:
            if words:
                segments.append(words)
            words = []
        elif token in REDIRECTS:
            skip_next = True
            if words and words[-1].isdigit():
                words.pop()
        else:
            words.append(token)
    if words:
        segments.append(words)
    return segments


_CAPS = re.compile(r"(?<![a-z0-9])[A-Z][A-Z0-9_]*(?![a-z0-9])")


def is_placeholder(value: str) -> bool:
    """WORKDIR, gs://BUCKET/x, <dir>, ..., $VAR, globs and brace lists stand for values."""
    return bool(_CAPS.search(value)) or any(c in value for c in "<>$*?{}[]") or "..." in value


# --------------------------------------------------------------------------- tools


@functools.lru_cache(maxsize=None)
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


@dataclasses.dataclass
class Invocation:
    """One simple command, classified."""

    words: list[str]  # program first
    tool: str | None = None  # help target ('module:X' / 'script:path') whose flags are checked
    module: str | None = None  # the tool module (train / evaluate / sweep get config checks)
    args: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None
    skipped: bool = False


def classify(words: list[str]) -> Invocation:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    inv = Invocation(words)
    if not words:
        inv.skipped = True
        return inv
    program, rest = words[0], words[1:]
    if program == UNPARSABLE:
        inv.problem = f"the shell cannot split this command: {rest[0]}"
        return inv
    if program in ("sudo", "env", "nohup", "exec", "time"):
        return classify(rest)
    if program in ("pip", "pip3") or (program in PYTHONS and rest[:2] == ["-m", "pip"]):
        args = rest[2:] if program in PYTHONS else rest
        missing = [f for f in _option_values(args, "requirement") + [args[i + 1] for i, a in enumerate(args[:-1])
                                                                     if a == "-r"]
                   if not is_placeholder(f) and not (ROOT / f).is_file()]
        if missing:
            inv.problem = f"pip -r {missing[0]}: no such file"
        else:
            inv.skipped = True
    elif program in SKIPPED_PROGRAMS:
        inv.args = [] if program in WRITING_PROGRAMS else rest
        inv.skipped = not inv.args  # the others: their repository paths are checked
    elif program in console_scripts():
        module = console_scripts()[program]
        inv.tool, inv.module, inv.args = f"module:{module}", module, rest
        if not module_exists(module):
            inv.problem = f"{program}: module {module} (pyproject.toml) does not exist"
    elif program in PYTHONS:
        if not rest:
            inv.skipped = True
        elif rest[0] == "-c":
            inv.skipped = True
        elif rest[0] == "-m":
            if len(rest) < 2:
                inv.problem = "python -m without a module"
            elif rest[1] in SKIPPED_PYTHON_MODULES or is_placeholder(rest[1]):
                inv.skipped = True
            else:
                module = rest[1]
                inv.tool, inv.module, inv.args = f"module:{module}", module, rest[2:]
                if not module_exists(module):
                    inv.problem = f"python -m {module}: no such module"
        elif rest[0].startswith("-"):
            inv.problem = f"python option {rest[0]} is not understood by this test"
        else:
            script, inv.args = rest[0], rest[1:]
            if is_placeholder(script):
                inv.skipped = True
            elif not (ROOT / script).is_file():
                inv.problem = f"python {script}: no such file"
            elif script in ROOT_SCRIPTS:
                inv.module = ROOT_SCRIPTS[script]
                inv.tool = f"module:{inv.module}"
            elif any(a.startswith("--") for a in inv.args):
                source = (ROOT / script).read_text()
                if "argparse" in source or "absl" in source:
                    inv.tool = f"script:{script}"
                else:
                    inv.problem = f"python {script}: flags given to a script without argparse/absl"
    elif program in ("bash", "sh"):
        script = next((w for w in rest if not w.startswith("-")), None)
        if script is None or "-c" in rest:
            inv.problem = f"{program} without a script file"
        elif not is_placeholder(script) and not (ROOT / script).is_file():
            inv.problem = f"{program} {script}: no such file"
        inv.args = rest
    elif "/" in program and not is_placeholder(program):  # ./tool, .ci/run
        if not (ROOT / program).is_file():
            inv.problem = f"{program}: no such file"
        inv.args = rest
    else:
        inv.problem = (f"unknown program {program!r}: check it here, or add it to "
                       f"SKIPPED_PROGRAMS in tests/test_docs.py if it is not this project's")
    return inv


def _option_values(args: list[str], name: str) -> list[str]:
    """Values of ``--name V`` / ``--name=V`` (repeatable)."""
    out = []
    for i, arg in enumerate(args):
        if arg == f"--{name}" and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith(f"--{name}="):
            out.append(arg.split("=", 1)[1])
    return out


def _config_spec(spec: str) -> tuple[str, str | None] | None:
    """'configs/x.py:a,b' -> ('configs/x.py', 'a,b'); None for a placeholder file."""
    path, _, arg = spec.partition(":")
    if is_placeholder(path):
        return None
    return path, (None if not arg or is_placeholder(arg) else arg)


def check_config_tool(inv: Invocation, require_config: bool = True) -> list[str]:
    """train / evaluate: --config file and variants, --config.a.b=v keys."""
    if any(a in HELP_FLAGS for a in inv.args):
        return []
    specs = _option_values(inv.args, "config")
    if not specs:
        return ["no --config given"] if require_config else []
    parsed = _config_spec(specs[-1])
    if parsed is None:
        return []
    config = load_config(*parsed)
    if isinstance(config, str):
        return [config]
    problems = []
    names = _option_values(inv.args, "config.model.name")
    for i, arg in enumerate(inv.args):
        if arg.startswith("--config."):
            dotted = arg[len("--config."):].split("=", 1)[0]
            if is_placeholder(dotted):
                continue
            why = check_override(config, dotted, names[-1] if names else None)
            if why:
                problems.append(f"--config.{dotted}: {why} ({specs[-1]})")
    return problems


def check_sweep(inv: Invocation, require_config: bool = True) -> list[str]:
    if any(a in HELP_FLAGS for a in inv.args):
        return []
    specs = _option_values(inv.args, "config")
    if not specs:
        return ["no --config given"] if require_config else []
    if ":" in specs[-1]:
        return [f"--config {specs[-1]}: the sweep takes the file only; variants go in --variants"]
    if is_placeholder(specs[-1]):
        return []
    variants = [v.strip() for text in _option_values(inv.args, "variants") for v in text.split(",") if v.strip()]
    problems = []
    for variant in variants or [""]:
        arg = None if not variant or is_placeholder(variant) else variant.replace("+", ",")
        config = load_config(specs[-1], arg)
        if isinstance(config, str):
            problems.append(f"--variants {variant}: {config}")
            continue
        for override in _option_values(inv.args, "set"):
            dotted = override.split("=", 1)[0]
            if not is_placeholder(dotted):
                why = check_override(config, dotted)
                if why:
                    problems.append(f"--set {override}: {why} ({specs[-1]}:{arg or ''})")
    return problems


def needs_help(inv: Invocation) -> bool:
    return bool(inv.tool and not inv.skipped and not inv.problem and _flags_used(inv))


def check_flags(inv: Invocation) -> list[str]:
    used = _flags_used(inv)
    if not used:
        return []
    flags = help_flags(inv.tool)
    if isinstance(flags, str):
        return [flags]
    return [f"--{name}: not a flag of {inv.tool.partition(':')[2]} (see its --help)"
            for name in used if name not in flags]


def _flags_used(inv: Invocation) -> list[str]:
    used = []
    for arg in inv.args:
        if arg.startswith("[--"):  # usage syntax: [--flag VALUE]
            arg = arg[1:].rstrip("]")
        if not arg.startswith("--") or arg == "--":
            continue
        name = arg[2:].split("=", 1)[0]
        if inv.module in CONFIG_TOOLS and name.startswith("config."):
            continue  # config overrides: checked against the config
        used.append(name)
    return used


def check_paths(inv: Invocation) -> list[str]:
    problems = []
    configs = set(_option_values(inv.args, "config")) if inv.module in CONFIG_TOOLS | {SWEEP_TOOL} else set()
    for arg in inv.args:
        if arg in configs or arg.startswith("--config="):
            continue  # checked with the config (file, variants)
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        for part in value.split(","):
            part = part.split("::", 1)[0].partition(":")[0] if part.startswith("configs/") else part.split("::", 1)[0]
            if part.startswith("./"):
                part = part[2:]
            if (part.startswith(CHECKED_PATH_PREFIXES) and not is_placeholder(part)
                    and not (ROOT / part).exists()):
                problems.append(f"{part}: no such file or folder")
    return problems


def check_invocation(inv: Invocation, require_config: bool = True) -> list[str]:
    if inv.skipped:
        return []
    if inv.problem:
        return [inv.problem]
    problems = check_paths(inv)
    if inv.words[0] in SKIPPED_PROGRAMS:
        return problems
    if inv.tool:
        problems += check_flags(inv)
    if inv.module in CONFIG_TOOLS:
        problems += check_config_tool(inv, require_config)
    elif inv.module == SWEEP_TOOL:
        problems += check_sweep(inv, require_config)
    return problems


UNPARSABLE = "\0unparsable"


def _segments_or_error(command: str) -> list[list[str]]:
    try:
        return split_segments(command)
    except ValueError as err:  # e.g. an unbalanced quote
        return [[UNPARSABLE, str(err)]]


def doc_commands(md: Path) -> list[tuple[int, str, list[str]]]:
    """(line, command, words of one simple command) of every shell block of ``md``."""
    out = []
    for block in fenced_blocks(md.read_text()):
        if block.lang in SHELL_LANGS:
            for line, command in shell_commands(block):
                out.extend((line, command, words) for words in _segments_or_error(command))
    return out


_COMMAND_START = re.compile(r"^(\$ )?(python3? |pip3? |stra-[a-z-]+ |bash |\./|\.ci/)")


def untagged_command_blocks(md: Path) -> list[str]:
    """A fenced block with no language whose lines read like commands escapes these checks."""
    problems = []
    for block in fenced_blocks(md.read_text()):
        if block.lang == "" and any(_COMMAND_START.match(t.strip()) for _, t in block.lines):
            problems.append(f"{_rel(md)}:{block.fence_line}: a fenced block of commands without a "
                            f"language: open it with ```bash")
    return problems


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _check(md: Path, commands: list[tuple[int, str, list[str]]], require_config: bool) -> list[str]:
    items = [(line, command, classify(words)) for line, command, words in commands]
    prefetch_help(inv.tool for _, _, inv in items if needs_help(inv))
    problems = []
    for line, command, inv in items:
        for problem in check_invocation(inv, require_config):
            short = command if len(command) <= 120 else command[:117] + "..."
            problems.append(f"{_rel(md)}:{line}: `{short}`: {problem}")
    return problems


def check_commands(md: Path) -> list[str]:
    """Every problem of the shell blocks' commands of ``md``, one line each, naming
    file and line."""
    return _check(md, doc_commands(md), require_config=True) + untagged_command_blocks(md)


_INLINE_COMMAND = re.compile(r"^(python3? (-m \S+|\S+\.py)|stra-[a-z-]+|bash \S+\.sh)(\s|$)")


def inline_commands(md: Path) -> list[tuple[int, str, list[str]]]:
    """Commands written as inline code in the prose (``python train.py --config ...``,
    ``python -m stra_jax.tools.X ...``, ``stra-*``, ``bash X.sh``), e.g. in tables."""
    text = _without_fences(md.read_text())
    out = []
    for m in _INLINE_CODE.finditer(text):
        command = " ".join(m.group(0).strip("`").split())
        if _INLINE_COMMAND.match(command):
            line = text.count("\n", 0, m.start()) + 1
            out.extend((line, command, words) for words in _segments_or_error(command))
    return out


def check_inline_commands(md: Path) -> list[str]:
    """The same checks for inline-code commands (a missing ``--config`` is not reported:
    prose may name a tool without its arguments)."""
    return _check(md, inline_commands(md), require_config=False)


# --------------------------------------------------------------------------- links

_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HTML_SRC = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=[\"']([^\"']+)[\"']", re.I)


def _without_fences(text: str) -> str:
    """The text with fenced blocks blanked (line count kept)."""
    lines = text.splitlines()
    for block in fenced_blocks(text):
        for number in range(block.fence_line, (block.lines[-1][0] if block.lines else block.fence_line) + 2):
            if number - 1 < len(lines):
                lines[number - 1] = ""
    return "\n".join(lines)


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code (line count kept)."""
    return _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), _without_fences(text))


def github_slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(md: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _without_fences(md.read_text()).splitlines():
        m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    for m in re.finditer(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", md.read_text()):
        out.add(m.group(1))
    return frozenset(out)


def links(md: Path) -> list[tuple[int, str]]:
    text = _prose(md.read_text())
    found = []
    for pattern in (_LINK, _REF_DEF, _HTML_SRC):
        for m in pattern.finditer(text):
            target = m.group(1).strip("<>")
            found.append((text.count("\n", 0, m.start()) + 1, target))
    return sorted(found)


def check_links(md: Path) -> list[str]:
    """Every relative link of ``md`` names an existing file (and a ``#anchor`` a heading
    of that page); http(s), mailto and other schemes are not followed."""
    problems = []
    for line, target in links(md):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if path and not dest.exists():
            problems.append(f"{_rel(md)}:{line}: link {target!r}: no such file {_rel(dest)}")
            continue
        if path and md.resolve().is_relative_to(ROOT) and not dest.is_relative_to(ROOT):
            problems.append(f"{_rel(md)}:{line}: link {target!r}: outside the repository")
            continue
        if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
            problems.append(f"{_rel(md)}:{line}: link {target!r}: {_rel(dest)} has no heading "
                            f"#{anchor}")
    return problems


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module", autouse=True)
def _help_of_every_documented_tool():
    """All the documented tools' --help at once (the slowest part of this file)."""
    prefetch_help(inv.tool for md in DOC_FILES for _, _, words in doc_commands(md) + inline_commands(md)
                  if needs_help(inv := classify(words)))


@pytest.mark.parametrize("md", DOC_FILES, ids=DOC_IDS)
def test_documented_commands_parse(md):
    problems = check_commands(md)
    assert not problems, "\n" + "\n".join(problems)


@pytest.mark.parametrize("md", DOC_FILES, ids=DOC_IDS)
def test_inline_commands_parse(md):
    """Commands in inline code (the README's "reproduce the paper" table) likewise."""
    problems = check_inline_commands(md)
    assert not problems, "\n" + "\n".join(problems)


@pytest.mark.parametrize("md", DOC_FILES, ids=DOC_IDS)
def test_relative_links_resolve(md):
    problems = check_links(md)
    assert not problems, "\n" + "\n".join(problems)


def _quickstart_block(readme: str) -> tuple[str, list[str]]:
    """The Quickstart section's first fenced block: (its opening fence, its lines)."""
    lines = readme.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## Quickstart"), None)
    assert start is not None, "README.md has no '## Quickstart' section"
    fence = next((i for i in range(start + 1, len(lines))
                  if lines[i].startswith("```") or lines[i].startswith("## ")), None)
    assert fence is not None and lines[fence].startswith("```"), "the Quickstart section has no fenced block"
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
    return lines[fence], lines[fence + 1:end]


def test_quickstart_holds_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    fence, body = _quickstart_block(readme)
    commands = [ln for ln in body if ln.strip()]
    assert len(commands) == 2, f"the Quickstart block holds {len(commands)} non-empty lines: {commands}"
    assert fence.strip("`").strip() in ("", "bash", "console", "sh", "shell"), fence

    first = split_segments(commands[0])
    assert commands[0].startswith("pip install -r requirements.txt && "), commands[0]
    assert len(first) == 2 and first[1][:2] == ["python", "train.py"], commands[0]
    assert "configs/reid_synthetic.py" in _option_values(first[1], "config"), commands[0]

    second = split_segments(commands[1])
    assert commands[1].startswith("pip install -r requirements-dev.txt && "), commands[1]
    assert len(second) == 2 and second[1][:3] == ["python", "-m", "pytest"], commands[1]

    # .ci/run runs the second line, read with its own awk: the same line comes out.
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^test_cmd=\$\((.*)\)\s*$", ci, re.M)
    assert m, ".ci/run no longer reads the test command with test_cmd=$(...)"
    proc = subprocess.run(["bash", "-c", m.group(1)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == commands[1].strip(), (proc.stdout, commands[1])


def test_the_checks_report_what_is_wrong(tmp_path):
    """Mutation check: a bad variant, unknown flags, a missing key, file and program,
    and dead links are each reported; the same commands written right are not."""
    (tmp_path / "real.md").write_text("# Real page\n\n## A section\n")
    bad = tmp_path / "bad.md"
    bad.write_text(
        "# Bad\n\n"
        "```bash\n"
        "python train.py --config configs/reid_synthetic.py:no_such_variant --workdir runs/x\n"
        "python train.py --config configs/reid_synthetic.py --workdir runs/x --no_such_flag\n"
        "python train.py --config configs/reid_synthetic.py --workdir runs/x \\\n"
        "    --config.train.no_such_key=1\n"
        "python -m stra_jax.tools.sweep --config configs/reid_synthetic.py --variants paper,nope \\\n"
        "    --seeds 0 --workdir runs/t --no-such-option\n"
        "python eval.py --config configs/no_such_config.py --checkpoint runs/x\n"
        "bash benchmarks/no_such_script.sh && jupyter notebook notebooks/no_such.ipynb\n"
        "frobnicate --all; pip install -r requirements-nope.txt\n"
        "python train.py --config 'configs/reid_synthetic.py --workdir x\n"
        "```\n\n"
        "```\npython train.py --config configs/reid_synthetic.py --workdir runs/x\n```\n\n"
        "A [dead link](no/such/file.md), a ![dead picture](missing.png), `python train.py`,\n"
        "`python train.py --config configs/reid_synthetic.py:inline_nope\n   --workdir runs/x`\n"
        "a [dead anchor](real.md#no-such-section), [`code`](#no-heading-here).\n")
    problems = check_commands(bad)
    expected = [(4, "no_such_variant"), (5, "--no_such_flag: not a flag of stra_jax.tools.train"),
                (6, "config.train has no key 'no_such_key'"), (8, "--variants nope"),
                (8, "--no-such-option: not a flag of stra_jax.tools.sweep"),
                (10, "no such config file 'configs/no_such_config.py'"),
                (11, "bash benchmarks/no_such_script.sh: no such file"),
                (11, "notebooks/no_such.ipynb: no such file"),
                (12, "unknown program 'frobnicate'"),
                (12, "pip -r requirements-nope.txt: no such file"), (13, "cannot split"), (16, "without a language")]
    for line, text in expected:
        assert any(p.startswith(f"{bad}:{line}:") and text in p for p in problems), (line, text, problems)
    assert len(problems) == len(expected), "\n".join(problems)

    inline = check_inline_commands(bad)
    assert len(inline) == 1 and f"{bad}:21:" in inline[0] and "inline_nope" in inline[0], inline

    dead = check_links(bad)
    assert len(dead) == 4, dead
    for text in ("no/such/file.md", "missing.png", "has no heading #no-such-section", "#no-heading-here"):
        assert any(text in p for p in dead), (text, dead)

    good = tmp_path / "good.md"
    good.write_text(
        "# Good\n\n"
        "```console\n"
        "$ pip install -r requirements.txt -r requirements-dev.txt && \\\n"
        "    python train.py --config configs/reid_synthetic.py:smoke --workdir WORKDIR \\\n"
        "    --config.train.epochs=2 --config.model.kwargs.dtype=bfloat16\n"
        "output lines of a console block are not commands\n"
        "$ python -m stra_jax.tools.sweep --config configs/reid_synthetic.py --variants paper,baseline+k5 \\\n"
        "    --seeds 0,1 --workdir runs/t --set train.epochs=20   # a comment --not-a-flag\n"
        "$ EPOCHS=60 bash benchmarks/table2_synthetic.sh > log.txt 2>&1\n"
        "$ jupyter notebook notebooks/quickstart.ipynb; mkdir -p configs/new && cp x configs/new/\n"
        "```\n\n"
        "[a page](real.md#a-section), [here](#good), [web](https://example.com/x#y), [DIR](<real.md>)\n")
    assert check_commands(good) == []
    assert check_links(good) == []
