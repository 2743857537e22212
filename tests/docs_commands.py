"""A documented command checked against the repository, for tests/test_docs.py: what it
invokes, its config and variants, its flags and the paths it names."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tests.docs_markdown import (
    CHECKED_PATH_PREFIXES,
    CONFIG_TOOLS,
    HELP_FLAGS,
    PYTHONS,
    ROOT,
    ROOT_SCRIPTS,
    SHELL_LANGS,
    SKIPPED_PROGRAMS,
    SKIPPED_PYTHON_MODULES,
    SWEEP_TOOL,
    WRITING_PROGRAMS,
    _INLINE_CODE,
    _rel,
    _without_fences,
    fenced_blocks,
    is_placeholder,
    shell_commands,
    split_segments,
)
from tests.docs_tools import (
    check_override,
    console_scripts,
    help_flags,
    load_config,
    module_exists,
    prefetch_help,
)

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
        # eval.py takes the run's own config when --config is left out
        problems += check_config_tool(inv, require_config and inv.module != "stra_jax.tools.evaluate")
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
