"""Run records (stra_jax.training.record: WORKDIR/run.json) and the report tool
(stra_jax.tools.report) on run folders written by hand; the sweep's own layout
is reported in tests/test_sweep.py."""
from __future__ import annotations

import datetime
import json
import math
import platform
import subprocess
import sys

import jax
import ml_collections
import pytest

from stra_jax.sharding import make_mesh
from stra_jax.tools import report
from stra_jax.training import record
from tests.helpers import REPO, run_multidevice

VERSION_KEYS = {"python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow",
                "tensorflow-datasets", "ml-collections", "stra_jax"}


def _config(seed=0, **train):
    return ml_collections.ConfigDict(dict(seed=seed, task="reid", model=dict(name="resnet50", kwargs=dict(width=8)),
                                          train=dict(best_metric="reid/mAP", lr=0.1, **train)))


def _iso(text):
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.utcoffset() == datetime.timedelta(0)
    return parsed


def test_start_resume_finish_record(tmp_path, monkeypatch):
    monkeypatch.delenv(record.COMMIT_ENV, raising=False)
    config = _config(seed=3)
    record.start_record(tmp_path / "w", config, make_mesh())
    rec = json.loads((tmp_path / "w" / "run.json").read_text())
    assert rec["format"] == "stra-jax-run/1" and rec["final"] is None
    assert rec["config"] == config.to_dict() and rec["seed"] == 3
    assert rec["task"] == "reid" and rec["arch"] == "resnet50"
    (session,) = rec["sessions"]
    assert set(session["versions"]) == VERSION_KEYS
    assert session["versions"]["jax"] == jax.__version__ and session["versions"]["python"] == platform.python_version()
    assert session["versions"]["stra_jax"]  # a checkout without pip install: the package's __version__
    assert session["platform"] == jax.default_backend() == "cpu"
    assert session["device_kind"] == jax.devices()[0].device_kind
    assert session["device_count"] == jax.device_count() and session["local_device_count"] == jax.local_device_count()
    assert session["process_count"] == 1 and session["host"] and session["command"] == sys.argv
    assert session["commit"] is None or session["commit"].startswith(_head(REPO))
    _iso(session["started"])

    # A resume appends a session (the first is kept as it was) and takes the config as resolved now.
    monkeypatch.setenv(record.COMMIT_ENV, "abc123")
    record.start_record(tmp_path / "w", _config(seed=3, epochs=9), make_mesh())
    rec2 = json.loads((tmp_path / "w" / "run.json").read_text())
    assert rec2["sessions"][0] == session and len(rec2["sessions"]) == 2
    assert rec2["sessions"][1]["commit"] == "abc123" and rec2["config"]["train"]["epochs"] == 9

    record.finish_record(tmp_path / "w", {"reid/mAP": 0.5, "reid/rank1": 0.75, "reid/cmc": [0.75, 1.0],
                                          "reid/num_queries": 10, "reid/ok": True}, step=80)
    final = record.read_record(tmp_path / "w")["final"]
    assert final["metrics"] == {"reid/mAP": 0.5, "reid/rank1": 0.75, "reid/num_queries": 10.0}
    assert final["step"] == 80
    _iso(final["finished"])
    assert not [p for p in (tmp_path / "w").iterdir() if p.name != "run.json"]  # atomic: no staging files left


def test_device_counts_are_global_and_a_resume_on_other_devices_is_mixed(tmp_path):
    out = run_multidevice(f"""
        import jax, json, ml_collections
        from stra_jax.sharding import make_mesh
        from stra_jax.training import record
        config = ml_collections.ConfigDict(dict(seed=0, task="reid", model=dict(name="m"), train=dict()))
        record.start_record({str(tmp_path)!r}, config, make_mesh())
        record.start_record({str(tmp_path)!r}, config, make_mesh(jax.devices()[:2]))
        record.finish_record({str(tmp_path)!r}, {{"reid/mAP": 0.5}}, 4)
        sessions = record.read_record({str(tmp_path)!r})["sessions"]
        print(json.dumps([[s["device_count"], s["local_device_count"]] for s in sessions]))
    """, devices=4, timeout=300)
    assert json.loads(out.strip().splitlines()[-1]) == [[4, 4], [2, 2]]
    text, _ = report.report([str(tmp_path)])
    assert "mixed (4x cpu, 2x cpu)" in text


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _head(repo):
    return _git(repo, "rev-parse", "HEAD")


def test_commit_of_a_git_checkout_dirty_override_and_none(tmp_path, monkeypatch):
    monkeypatch.delenv(record.COMMIT_ENV, raising=False)
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "pkg/code.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _head(repo)
    assert len(head) == 40
    assert record.code_commit(repo / "pkg") == head
    (repo / "pkg" / "untracked.py").write_text("")  # not a change to the code that ran
    assert record.code_commit(repo / "pkg") == head
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    assert record.code_commit(repo / "pkg") == head + "-dirty"
    monkeypatch.setenv(record.COMMIT_ENV, "v1.2-release")
    assert record.code_commit(repo / "pkg") == "v1.2-release"
    monkeypatch.delenv(record.COMMIT_ENV)
    assert record.code_commit(tmp_path / "elsewhere") is None  # not a checkout (and not even a folder)
    (repo / "venv").mkdir()  # inside the repository but untracked: not the checkout's code
    assert record.code_commit(repo / "venv") is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # git not installed: no commit, no error
    assert record.code_commit(repo / "pkg") is None


def _write_run(folder, config, metrics=None, step=100, devices=((8, "TPU v4"),), commit="a" * 40):
    """A run.json as start_record / finish_record write it, made by hand."""
    folder.mkdir(parents=True)
    sessions = [dict(started="2025-01-01T00:00:00+00:00", versions={}, platform="tpu", device_kind=kind,
                     device_count=count, local_device_count=count, process_count=1, host="h", commit=commit,
                     command=["train.py"]) for count, kind in devices]
    final = None if metrics is None else dict(metrics=metrics, step=step, finished="2025-01-02T00:00:00+00:00")
    (folder / "run.json").write_text(json.dumps(dict(format="stra-jax-run/1", config=config, seed=config["seed"],
                                                     task="reid", arch=config["model"]["name"], sessions=sessions,
                                                     final=final)))
    (folder / "config.json").write_text(json.dumps(config))


def _mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


MAPS = {"plain": [0.50, 0.55, 0.62], "triplet": [0.71, 0.66, 0.70]}
RANK1 = {"plain": [0.70, 0.74, 0.79], "triplet": [0.85, 0.83, 0.88]}


@pytest.fixture()
def two_configs(tmp_path):
    for name in MAPS:
        for seed in range(3):
            config = _config(seed).to_dict()
            if name == "triplet":
                config["train"]["losses"] = {"triplet": {"weight": 1.0, "margin": 0.3}}
            _write_run(tmp_path / "runs" / name / f"seed{seed}", config,
                       {"reid/mAP": MAPS[name][seed], "reid/rank1": RANK1[name][seed], "reid/num_queries": 10})
    return tmp_path / "runs"


def test_two_configs_three_seeds_two_rows_and_their_differences(two_configs, tmp_path, capsys):
    assert report.main([str(two_configs), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "| run | runs | seeds | reid/mAP (%) | reid/rank1 (%) | step | devices | commit | notes |" in text
    for name in MAPS:
        cells = []
        for values in (MAPS[name], RANK1[name]):
            mean, std = _mean_std([100 * v for v in values])
            cells.append(f"{mean:.1f} +- {std:.1f}")
        assert f"| {name} | 3 | 0,1,2 | {cells[0]} | {cells[1]} | 100 | 8x TPU v4 | aaaaaaaaaa |  |" in text
    differ = text.split("### configs differ in more than the seed")[1]
    assert "| key | plain | triplet |" in differ
    assert "| train.losses.triplet.margin | (absent) | 0.3 |" in differ
    assert "| train.losses.triplet.weight | (absent) | 1.0 |" in differ
    keys = [ln.split(" | ")[0][2:] for ln in differ.splitlines() if ln.startswith("| ")]
    assert keys == ["key", "train.losses.triplet.margin", "train.losses.triplet.weight"]  # not the seed
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["metrics"] == ["reid/mAP", "reid/rank1"]
    plain = data["groups"][0]
    assert plain["label"] == "plain" and [r["seed"] for r in plain["runs"]] == [0, 1, 2]
    assert plain["summary"]["reid/mAP"]["mean"] == pytest.approx(_mean_std([100 * v for v in MAPS["plain"]])[0])
    assert plain["summary"]["reid/mAP"]["std"] == pytest.approx(_mean_std([100 * v for v in MAPS["plain"]])[1])

    # Chosen metrics: a bare name finds its one <evaluator>/name; a count is not a fraction (no percent).
    assert report.main([str(two_configs / "plain"), "--metrics", "mAP,reid/num_queries"]) == 0
    text = capsys.readouterr().out
    assert "| mAP (%) | reid/num_queries |" in text and "| 10 +- 0 |" in text
    assert "configs differ" not in text


def test_labels_are_config_values_when_folders_do_not_tell_groups_apart(two_configs, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in MAPS:  # both configs in one folder, interleaved
        for seed in range(3):
            (two_configs / name / f"seed{seed}").rename(mixed / f"run-{seed}-{name}")
    text, data = report.report([str(mixed)])
    labels = [g["label"] for g in data["groups"]]
    assert labels == ["train.losses.triplet.margin=(absent)", "train.losses.triplet.margin=0.3"]


def test_unfinished_runs_and_other_devices(tmp_path):
    config = _config(0).to_dict()
    _write_run(tmp_path / "a" / "seed0", config, {"reid/mAP": 0.4, "reid/rank1": 0.6},
               devices=((8, "TPU v4"), (1, "cpu")), commit="b" * 40 + "-dirty")
    _write_run(tmp_path / "a" / "seed1", dict(config, seed=1), None, devices=((1, "cpu"),), commit=None)
    text, data = report.report([str(tmp_path / "a")])
    (row,) = [ln for ln in text.splitlines() if ln.startswith(f"| {tmp_path / 'a'} ")]  # one group: its path
    assert row.startswith(f"| {tmp_path / 'a'} | 1 | 0 | 40.0 | 60.0 | 100 | mixed (8x TPU v4, 1x cpu) "
                          "| bbbbbbbbbb-dirty, ? |")
    assert f"unfinished: {tmp_path / 'a' / 'seed1'}" in row
    assert [r["finished"] for r in data["groups"][0]["runs"]] == [True, False]


def test_legacy_workdir_without_run_json(tmp_path):
    legacy = tmp_path / "old"
    legacy.mkdir()
    config = _config(2).to_dict()
    (legacy / "config.json").write_text(json.dumps(config))
    (legacy / "final_metrics.json").write_text(json.dumps({"reid/mAP": 0.25, "reid/rank1": 0.5, "reid/cmc": [0.5]}))
    (legacy / "metrics.jsonl").write_text('{"step": 4, "train/loss": 1.0}\n{"step": 8, "eval/reid/mAP": 0.25}\n')
    rec = record.read_record(legacy)
    assert rec["format"] == "legacy" and rec["config"] == config and rec["seed"] == 2 and rec["sessions"] == []
    assert rec["arch"] == "resnet50" and rec["task"] == "reid"
    assert rec["final"]["metrics"] == {"reid/mAP": 0.25, "reid/rank1": 0.5} and rec["final"]["step"] == 8
    text, _ = report.report([str(legacy)])
    assert f"| {legacy} | 1 | 2 | 25.0 | 50.0 | 8 | ? | ? | 1 of 1 runs without run.json" in text
    (legacy / "final_metrics.json").unlink()
    assert record.read_record(legacy)["final"] is None
    assert "unfinished" in report.report([str(legacy)])[0]


def _fails(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        report.main(list(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    return err


def test_bad_input_one_line_exit_2(two_configs, tmp_path, capsys):
    assert "nope: no such file or directory" in _fails(capsys, str(tmp_path / "nope"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert "empty: not a run (run.json or config.json) and holds no runs" in _fails(capsys, str(tmp_path / "empty"))
    assert "no finished run has it" in _fails(capsys, str(two_configs), "--metrics", "reid/mINP")
    broken = two_configs / "plain" / "seed1" / "run.json"
    broken.write_text('{"format": "stra-jax-run/1", ')
    assert f"{broken}: not valid JSON" in _fails(capsys, str(two_configs))
    with pytest.raises(ValueError, match="run.json: not valid JSON"):
        record.read_record(broken.parent)
    with pytest.raises(ValueError, match="run.json: not valid JSON"):  # a run never overwrites a damaged record
        record.start_record(broken.parent, _config(1))
    # As a command: the same line, no traceback.
    proc = subprocess.run([sys.executable, "-m", "stra_jax.tools.report", str(tmp_path / "nope")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
