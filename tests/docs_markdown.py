"""Markdown of the docs for tests/test_docs.py: fenced blocks, shell commands split into
invocations, relative links and GitHub heading anchors. Constants name the programs the
command check knows."""
from __future__ import annotations

import dataclasses
import functools
import re
import shlex
from pathlib import Path



ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted({ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md",
                    *(ROOT / "docs").glob("*.md")})
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
def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)



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
