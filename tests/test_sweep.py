"""The sweep runner (stra_jax.tools.sweep): every (variant, seed) of the synthetic
config's ``:smoke`` variants, skip / resume / failure handling, and a table whose
numbers are the runs' final_metrics.json.

The runner logic is exercised with a stand-in trainer (same command line as
train.py, writes checkpoints and final_metrics.json, stops on SIGTERM like
train.py), so a killed and resumed run costs seconds. The one real ``:smoke``
run through the real train.py (its command line, its metrics) is the first run
of tests/test_training.py::test_killed_run_resumes_exactly.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stra_jax.tools import report, sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/reid_synthetic.py"

FAKE_TRAINER = r'''
import json, os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
spec = args[args.index("--config") + 1]
workdir = Path(args[args.index("--workdir") + 1])
seed = int(next(a for a in args if a.startswith("--config.seed=")).split("=")[1])
variant = spec.split(":", 1)[1]
calls = Path(os.environ["FAKE_CALLS"])
with open(calls, "a") as f:
    f.write(f"{variant} {seed} {' '.join(args)}\n")
ckpt = workdir / "checkpoints"
resumed = (ckpt / "step").is_file()
print("resumed from checkpoint" if resumed else "fresh start", flush=True)
ckpt.mkdir(parents=True, exist_ok=True)
(ckpt / "step").write_text("1")
if os.environ.get("FAKE_FAIL") == f"{variant}/{seed}":
    print("boom: a bad batch", flush=True)
    sys.exit(1)
if os.environ.get("FAKE_HANG") == f"{variant}/{seed}" and not resumed:
    signal.signal(signal.SIGTERM, lambda *a: (print("checkpoint saved; interrupted", flush=True), sys.exit(143)))
    (workdir / "hanging").write_text("")
    while True:
        time.sleep(0.1)
(workdir / "config.json").write_text(json.dumps(  # as train.py does: the resolved config
    {"seed": seed, "variant": variant, "train": {"best_metric": "reid/mAP"}}))
value = 0.1 * (1 + seed) + (0.3 if "baseline" in variant else 0.0)
(workdir / "final_metrics.json").write_text(json.dumps(
    {"reid/mAP": value, "reid/rank1": value + 0.05, "reid/cmc": [value], "reid/num_queries": 10}))
'''


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.chdir(ROOT)
    return script, calls


def _args(fake_script, workdir, variants="smoke,smoke+baseline", seeds="0,1", extra=()):
    return ["--config", CONFIG, "--variants", variants, "--seeds", seeds, "--workdir", str(workdir),
            "--train-script", str(fake_script), "--set", "train.epochs=1", *extra]


def _calls(path):
    return path.read_text().splitlines() if path.exists() else []


def test_two_variants_two_seeds_table_equals_final_metrics(fake, tmp_path, capsys):
    script, calls = fake
    out = tmp_path / "sweep"
    assert sweep.main(_args(script, out, extra=("--jobs", "2"))) == 0  # two runs at a time
    lines = _calls(calls)
    assert len(lines) == 4
    assert "--config configs/reid_synthetic.py:smoke,baseline" in " ".join(lines)
    assert all("--config.train.epochs=1" in ln for ln in lines)
    result = json.loads((out / "sweep.json").read_text())
    for variant in ("smoke", "smoke+baseline"):
        row = result["variants"][variant]
        maps = [100 * json.loads((out / variant / f"seed{s}" / "final_metrics.json").read_text())["reid/mAP"]
                for s in (0, 1)]
        assert [row["seeds"][str(s)]["mAP"] for s in (0, 1)] == pytest.approx(maps)
        assert row["summary"]["mAP"] == pytest.approx([statistics.mean(maps), statistics.stdev(maps)])
    table = (out / "sweep.md").read_text()
    assert "| smoke+baseline | 2/2 | 45.0 +- 7.1 | 50.0 +- 7.1 |" in table
    assert "| smoke | 2/2 | 15.0 +- 7.1 | 20.0 +- 7.1 |" in table
    from matplotlib.image import imread

    assert imread(out / "sweep.png").ndim == 3
    # Everything finished: a rerun trains nothing and writes the same table.
    assert sweep.main(_args(script, out)) == 0
    assert len(_calls(calls)) == 4
    assert (out / "sweep.md").read_text() == table
    # The report tool finds the same runs in the sweep's folder: one row per variant, the same numbers.
    capsys.readouterr()
    assert report.main([str(out)]) == 0
    reported = capsys.readouterr().out
    assert "| smoke | 2 | 0,1 | 15.0 +- 7.1 | 20.0 +- 7.1 |" in reported
    assert "| smoke+baseline | 2 | 0,1 | 45.0 +- 7.1 | 50.0 +- 7.1 |" in reported
    assert "| variant | smoke | smoke,baseline |" in reported  # the config key that differs


def test_failed_run_listed_with_its_log_and_marked(fake, tmp_path, monkeypatch, capsys):
    script, calls = fake
    out = tmp_path / "sweep"
    monkeypatch.setenv("FAKE_FAIL", "smoke/1")
    assert sweep.main(_args(script, out)) == 1
    err = capsys.readouterr().err
    log = out / "logs" / "smoke-seed1.log"
    assert f"smoke/seed1 (log: {log})" in err
    assert "boom: a bad batch" in log.read_text()
    table = (out / "sweep.md").read_text()
    assert f"| smoke | 1/2 | 10.0 | 15.0 | s0: 10.0/15.0 | FAILED seed 1 (log: {log}) |" in table
    # The fix lands: only the failed run is rerun (and resumes its checkpoint).
    monkeypatch.delenv("FAKE_FAIL")
    assert sweep.main(_args(script, out)) == 0
    assert len(_calls(calls)) == 5 and _calls(calls)[-1].startswith("smoke 1 ")
    assert "resumed from checkpoint" in log.read_text()
    assert "FAILED" not in (out / "sweep.md").read_text()


def test_killed_sweep_resumes(fake, tmp_path):
    script, calls = fake
    out = tmp_path / "sweep"
    env = dict(os.environ, FAKE_HANG="smoke/1")
    cmd = [sys.executable, "-m", "stra_jax.tools.sweep", *_args(script, out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = out / "smoke" / "seed1" / "hanging"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "rerun the same command to resume" in output
    status = json.loads((out / "sweep_status.json").read_text())
    assert status["smoke/seed1"]["state"] == "interrupted"
    assert "checkpoint saved; interrupted" in (out / "logs" / "smoke-seed1.log").read_text()
    # Seed-major order: seed 0 of both variants finished, seed 1 of the second never started.
    assert "| smoke+baseline | 1/2 |" in (out / "sweep.md").read_text()
    done = len(_calls(calls))
    assert sweep.main(_args(script, out)) == 0
    rerun = _calls(calls)[done:]
    assert sorted(ln.split()[0] + ln.split()[1] for ln in rerun) == ["smoke,baseline1", "smoke1"]
    assert "resumed from checkpoint" in (out / "logs" / "smoke-seed1.log").read_text()
    assert "| smoke | 2/2 |" in (out / "sweep.md").read_text()


def test_unknown_variant_lists_known_ones_and_print_commands(fake, tmp_path, capsys):
    script, calls = fake
    with pytest.raises(SystemExit) as exc:
        sweep.main(_args(script, tmp_path / "s", variants="smoke,no_such"))
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "unknown config variant(s) ['no_such']" in err and "'local_only'" in err and "'paper'" in err
    with pytest.raises(SystemExit):
        sweep.main(_args(script, tmp_path / "s", extra=("--set", "train.epoch=2")))
    assert "has no key 'epoch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a variant on the config: the error shows the a+b form
        sweep.main(["--config", "configs/reid_synthetic.py:smoke", "--variants", "baseline,paper", "--seeds", "0",
                    "--workdir", str(tmp_path / "s")])
    assert "--config configs/reid_synthetic.py --variants smoke+baseline,smoke+paper" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not calls.exists()
    assert sweep.main(_args(script, tmp_path / "s", extra=("--print-commands",))) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 4 and all("--config.seed=" in ln and ">> " in ln for ln in printed)
    assert not calls.exists()
