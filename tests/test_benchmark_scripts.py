"""The benchmark scripts run and print their columns (tiny sizes; no timing asserts).

benchmarks/device.sh runs these same scripts at accelerator sizes; this keeps them
from rotting between device runs.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_auto_choices_quick_prints_every_table_and_its_pick():
    from benchmarks.auto_choices import TABLES

    out = _run("benchmarks/auto_choices.py", "--quick")
    assert "# picks for cpu" in out
    for table in TABLES:
        assert f"{table.name} ({table.path}), cpu" in out
        assert f"{table.name}['cpu'] = " in out
        for candidate in table.candidates:
            assert f"\n  {candidate} " in out


def test_decide_keeps_todays_entry_within_the_margin_and_writes_the_edit_otherwise():
    from benchmarks.auto_choices import TABLES, decide
    from stra_jax.layers.local_attention import AUTO_ATTENTION

    table = next(t for t in TABLES if t.name == "AUTO_ATTENTION")
    today = AUTO_ATTENTION["cpu"]
    other = next(c for c in table.candidates if c != today)
    # 3% faster is inside the 5% margin: keep today's, no edit
    assert decide(table, {today: 100.0, other: 97.0}, "cpu", 0.05) == (today, today, "")
    # twice as fast: the edit replaces the cpu entry only
    _, pick, edit = decide(table, {today: 100.0, other: 50.0}, "cpu", 0.05)
    expected = {**AUTO_ATTENTION, "cpu": other}
    assert pick == other
    assert edit == ("stra_jax/layers/local_attention.py: AUTO_ATTENTION = {"
                    + ", ".join(f'"{k}": "{v}"' for k, v in expected.items()) + "}")


def test_network_step_tiny_both_modes_with_torch_columns():
    pytest.importorskip("torch")
    out = _run("benchmarks/network_step.py", "--batch", "2", "--iters", "1", "--rounds", "1",
               "--height", "64", "--width", "32", "--mode", "both", "--torch")
    assert "# host CPU:" in out and "avx512f" in out
    assert "# train step" in out and "# eval forward" in out
    headers = [line for line in out.splitlines() if line.startswith("network ")]
    assert len(headers) == 2
    for column in ("ms", "img/s", "vs resnet50", "spread", "compile s", "torch ms", "torch vs rn50", "JAX/torch"):
        assert all(column in h for h in headers), column
    rows = [line.split() for line in out.splitlines() if line.startswith(("resnet50 ", "stra_resnet50 "))]
    assert len(rows) == 4
    for row in rows:  # the name, then 8 numbers (spread in %)
        [float(cell.rstrip("%")) for cell in row[-8:]]
        assert not row[-9].replace(".", "").isdigit(), row
    assert out.count("JAX/torch: stra_resnet50") == 2
