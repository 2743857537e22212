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
import re
import subprocess
import pytest

from tests.docs_markdown import (DOC_FILES, DOC_IDS, ROOT, check_links, split_segments)
from tests.docs_tools import (prefetch_help)
from tests.docs_commands import (
    _option_values,
    check_commands,
    check_inline_commands,
    classify,
    doc_commands,
    inline_commands,
    needs_help,
)

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
