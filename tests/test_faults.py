"""Fault injection: no trained epoch is lost to a bad image, a damaged checkpoint,
a failed or interrupted evaluation, or a signal; every mistake gets one line.

Real processes get real signals and real damaged files; each resumed run must
end bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import reid_synthetic
from stra_jax.evaluation.evaluators import Evaluator
from tests.helpers import REPO, run_multidevice

SMOKE = ["--config", "configs/reid_synthetic.py:smoke", "--config.train.frozen_epochs=0",
         "--config.train.checkpoint_every_steps=2", "--config.train.eval_every_epochs=100",
         "--config.train.log_every=1"]


def _train(workdir, *extra, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *SMOKE, "--workdir", str(workdir), *extra],
                          capture_output=True, text=True, cwd=REPO, **kw)


def _params(workdir):
    manager = ocp.CheckpointManager(Path(workdir) / "checkpoints")
    step = manager.latest_step()
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    return step, state


def _assert_same_final_state(a, b):
    step_a, state_a = _params(a)
    step_b, state_b = _params(b)
    assert step_a == step_b == 8
    flat_a = ocp.tree.to_flat_dict(state_a)
    flat_b = ocp.tree.to_flat_dict(state_b)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))


def _log_rows(workdir):
    rows = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    keys = [(row["step"], any(k.startswith("eval/") for k in row)) for row in rows]
    return rows, keys


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted smoke run: 8 steps, checkpoints every 2, evaluation at the end."""
    workdir = tmp_path_factory.mktemp("faults") / "straight"
    proc = _train(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc.stdout


def test_a_fresh_run_says_where_everything_goes(straight):
    workdir, out = straight
    for line in (f"checkpoints    {workdir}/checkpoints", f"{workdir}/model_best", f"{workdir}/metrics.jsonl",
                 f"{workdir}/final_metrics.json", "checked 80 images"):
        assert line in out, line
    _, keys = _log_rows(workdir)
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("damage", ["missing array file", "missing metadata", "truncated file"])
def test_damaged_checkpoint_falls_back_to_the_previous_step(straight, tmp_path, damage):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    step_dir = workdir / "checkpoints" / "8" / "state"
    data_files = sorted(glob.glob(str(step_dir / "d" / "*")), key=os.path.getsize)
    assert data_files, sorted(os.listdir(step_dir))
    if damage == "missing array file":
        os.unlink(data_files[-1])
    elif damage == "missing metadata":
        os.unlink(step_dir / "_METADATA")
    else:
        data = Path(data_files[-1]).read_bytes()
        Path(data_files[-1]).write_bytes(data[: len(data) // 2])
    before = {p: Path(p).read_bytes() for p in glob.glob(str(workdir / "checkpoints" / "6" / "**"), recursive=True)
              if Path(p).is_file()}

    proc = _train(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"checkpoint {workdir}/checkpoints/8 is damaged" in proc.stdout, proc.stdout[-3000:]
    assert f"moved to {workdir}/checkpoints_damaged/8" in proc.stdout
    assert "resumed from step 6" in proc.stdout
    assert (workdir / "checkpoints_damaged" / "8" / "state").is_dir()  # kept, not deleted
    for path, data in before.items():  # the good checkpoint it resumed from is untouched
        assert Path(path).read_bytes() == data, path
    _assert_same_final_state(straight[0], workdir)
    _, keys = _log_rows(workdir)
    assert len(keys) == len(set(keys))


def test_new_model_options_on_the_command_line_and_resume_across_formulations(straight, tmp_path):
    """``--config.model.kwargs.<option>`` may add an option the config does not list;
    a computation-only one (how local attention runs) does not block resuming."""
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    proc = _train(workdir, "--config.model.kwargs.attention_implementation=shift",
                  "--config.model.kwargs.attention_grouped_conv=conv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 8" in proc.stdout
    saved = json.loads((workdir / "config.json").read_text())["model"]["kwargs"]
    assert saved["attention_implementation"] == "shift" and saved["attention_grouped_conv"] == "conv"
    again = json.loads((workdir / "final_metrics.json").read_text())
    before = json.loads((straight[0] / "final_metrics.json").read_text())
    for key in ("reid/mAP", "reid/rank1", "reid/mINP"):  # the same model, re-evaluated
        assert again[key] == pytest.approx(before[key], abs=1e-6), key


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_the_rerun_resumes_exactly(straight, tmp_path, signum):
    workdir = tmp_path / "run"
    cmd = [sys.executable, "train.py", *SMOKE, "--workdir", str(workdir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in proc.stdout:
        if line.startswith("[     1/8]"):
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(signum).name} at step ") and \
        "rerun the same command to resume" in last, last
    saved = int(last.split(" at step ")[1].split(":")[0])
    assert 1 <= saved < 8 and (workdir / "checkpoints" / str(saved)).is_dir()

    resumed = _train(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {saved}" in resumed.stdout
    _assert_same_final_state(straight[0], workdir)
    _, keys = _log_rows(workdir)
    assert len(keys) == len(set(keys)) and keys[-1] == (8, True)


# ---- evaluation failures (in-process, the toy task of test_plugins) ----

class _Flaky(Evaluator):
    """Wraps the toy evaluator: the first run fails (an exception or SIGTERM)."""

    calls = 0
    mode = "raise"

    def __init__(self, name, settings, context):
        from tests.test_plugins import ToyAccuracy

        self.inner = ToyAccuracy(name, settings, context)
        self.name = name

    def check(self, mesh):
        pass

    def run(self, model, variables, mesh=None):
        type(self).calls += 1
        if type(self).calls == 1:
            if self.mode == "raise":
                raise RuntimeError("evaluation crashed")
            os.kill(os.getpid(), signal.SIGTERM)
        return self.inner.run(model, variables, mesh)

    def table(self, metrics):
        return self.inner.table(metrics)


@pytest.mark.parametrize("mode", ["raise", "sigterm"])
def test_failed_or_interrupted_evaluation_keeps_the_epoch(tmp_path, capsys, monkeypatch, mode):
    from stra_jax import tasks
    from stra_jax.evaluation import evaluators
    from stra_jax.evaluation.evaluators import register_evaluator
    from stra_jax.models import registry

    # The toys registered here must not leak into other test modules' registries.
    for reg in (registry.MODELS, tasks.TASKS, evaluators.EVALUATORS):
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
    from stra_jax.training.loop import Interrupted, train_and_evaluate
    from tests import test_plugins

    test_plugins.register_toys()
    register_evaluator("flaky", _Flaky, overwrite=True)
    _Flaky.calls, _Flaky.mode = 0, mode
    config = test_plugins._toy_config(epochs=2)
    config.evals = {"toy": {"type": "flaky"}}
    expected = (Interrupted, "interrupted by SIGTERM during the evaluation of step 6") if mode == "sigterm" \
        else (RuntimeError, "evaluation crashed")
    with pytest.raises(expected[0], match=expected[1]):
        train_and_evaluate(config, tmp_path)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [6], steps  # the epoch trained before the failure is kept
    assert (tmp_path / "model_last" / "model.json").is_file()
    capsys.readouterr()

    final = train_and_evaluate(config, tmp_path)
    out = capsys.readouterr().out
    assert "resumed from step 6" in out and "step 6: its evaluation did not finish; running it first" in out
    assert 0.0 <= final["toy/accuracy"] <= 1.0
    _, keys = _log_rows(tmp_path)
    assert len(keys) == len(set(keys)) and (6, True) in keys and (12, True) in keys


def test_eval_batch_is_checked_before_training(tmp_path):
    script = f"""
import pytest
from configs import reid_synthetic
from stra_jax.training.loop import train_and_evaluate
config = reid_synthetic.get_config("smoke")
config.evals.reid.batch_size = 12
with pytest.raises(ValueError, match="config.evals.reid.batch_size=12 is not divisible by the 8 devices"):
    train_and_evaluate(config, {str(tmp_path / 'run')!r})
print("OK")
"""
    assert "OK" in run_multidevice(script)
    assert not (tmp_path / "run").exists()


# ---- bad images ----

@pytest.fixture()
def smoke_data(tmp_path):
    from stra_jax.data.reid import prepare_dataset

    config = reid_synthetic.get_config("smoke")
    root = tmp_path / "data"
    return prepare_dataset("synthetic", root, config.dataset.synthetic.to_dict())


def test_corrupt_train_and_gallery_images_stop_the_run_before_training(smoke_data, tmp_path):
    bad_train, bad_gallery = Path(smoke_data.train[3].path), Path(smoke_data.gallery[2].path)
    bad_train.write_bytes(b"")
    bad_gallery.write_bytes(bad_gallery.read_bytes()[:200])  # a truncated JPEG
    proc = _train(tmp_path / "run", f"--config.dataset.root={smoke_data.root}")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {bad_train}: corrupt or unreadable image") and f"also {bad_gallery} (" in last, last
    assert not (tmp_path / "run").exists()  # nothing created


def test_skip_corrupt_skips_and_counts_and_the_check_is_cached(smoke_data, tmp_path):
    from stra_jax.tasks import make_task

    bad = Path(smoke_data.query[0].path)
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    config = reid_synthetic.get_config("smoke")
    config.dataset.root = smoke_data.root
    with pytest.raises(ValueError, match=f"{bad}: corrupt or unreadable image"):
        make_task(config, tmp_path / "run").load()
    config.dataset.skip_corrupt = True
    task = make_task(config, tmp_path / "run")
    summary = task.load()
    assert f"skipped 1 corrupt (dataset.skip_corrupt): {bad}" in summary
    assert len(task.dataset.query) == len(smoke_data.query) - 1
    cache = json.loads((tmp_path / "run" / "cache" / "images_ok_synthetic.json").read_text())
    assert str(bad) not in cache["good"] and smoke_data.train[0].path in cache["good"]

    # A cached-good file that changes afterwards is checked again, not trusted.
    changed = Path(smoke_data.train[0].path)
    changed.write_bytes(b"")
    config.dataset.skip_corrupt = False
    with pytest.raises(ValueError, match=f"{changed}: corrupt or unreadable image"):
        make_task(config, tmp_path / "run").load()


def test_a_file_broken_after_the_check_is_named_mid_run(smoke_data):
    from stra_jax.data.reid.pipeline import numpy_batches, train_dataset

    records = list(smoke_data.train)
    ds = train_dataset(records, global_batch=4, image_size=(32, 16))
    Path(records[5].path).write_bytes(b"")
    with pytest.raises(ValueError, match=f"{records[5].path}: corrupt or unreadable image"):
        list(numpy_batches(ds, [r.path for r in records]))


def test_many_corrupt_images_are_all_listed(tmp_path):
    """Five are named in the message; the rest are counted and every one is in a listing."""
    from stra_jax.data.image_check import check_images
    from stra_jax.data.reid.common import Record

    paths = [tmp_path / f"{i}.jpg" for i in range(7)]
    for p in paths:
        p.write_bytes(b"not an image")
    with pytest.raises(ValueError) as err:
        check_images([Record(str(p), 0, 0) for p in paths])
    message = str(err.value)
    assert message.startswith(f"{paths[0]}: corrupt or unreadable image (")
    assert all(f"{p} (" in message for p in paths[1:5]) and str(paths[5]) not in message
    listing = Path(message.split("are listed in ")[1].split(";")[0])
    assert "and 2 more: all 7 are listed in" in message and "fix or remove them" in message
    assert [line.split("\t")[0] for line in listing.read_text().splitlines()] == [str(p) for p in paths]
    listing.unlink()


def test_malformed_market_file_name_is_named(tmp_path):
    from stra_jax.data.reid import read_market1501

    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / split).mkdir()
    (tmp_path / "bounding_box_train" / "00-1_c1s1_001000_01.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"00-1_c1s1_001000_01.jpg: file name does not follow market1501's "
                                         r"PPPP_cC... convention \(person id '00-1' is not an integer\)"):
        read_market1501(tmp_path)


# ---- one line for every mistake ----

@pytest.mark.parametrize("args, message", [
    (["--config.train.schedule.decay_evry=3"],
     'config.train.schedule has no key \'decay_evry\'. Did you mean "decay_every"?'),
    (["--config.train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    (["--config.model.kwargs.atention_implementation=shift"],
     "stra_resnet50 has no option 'atention_implementation'. Did you mean \"attention_implementation\"?"),
    (["--config.train.log_every=0"], "train.log_every=0: expected an integer >= 1"),
    (["--config.train.schedule.name=cosne"], "cosne"),
])
def test_train_cli_mistakes_get_one_line(tmp_path, args, message):
    """Every config mistake, caught by the flag parser or by the run's checks,
    exits with status 2 (a data or file problem exits with 1)."""
    proc = _train(tmp_path / "run", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config, message", [
    ("configs/reid_synthetic.py:foo", "--config configs/reid_synthetic.py:foo: unknown config variant(s) ['foo']; "
                                      "known variants: ['baseline', 'bot', 'center', 'g16', 'g32', 'g4', 'k5', 'k7', 'local_only', "
                                      "'mnetv2', 'mnetv2_x1_4', 'no_interaction', 'nonlocal', 'paper', 'sasa', 'se', "
                                      "'smoke', 'softmax_gate', 'stra_mnetv2', 'stra_mnetv2_x1_4']"),
    ("configs/nope.py", "--config configs/nope.py: no such file 'configs/nope.py'"),
])
def test_bad_config_argument_gets_one_line(tmp_path, config, message):
    proc = subprocess.run([sys.executable, "train.py", "--config", config, "--workdir", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value, message", [
    ("epochs", -1, "train.epochs=-1: expected an integer >= 1"),
    ("batch_size", 0, "train.batch_size=0: expected an integer >= 1"),
    ("lr", 0.0, "train.lr=0.0: expected a number > 0"),
    ("frozen_epochs", 5, "train.frozen_epochs=5 > train.epochs=2"),
])
def test_bad_train_values_fail_before_anything_is_created(tmp_path, key, value, message):
    from stra_jax.training.loop import train_and_evaluate

    config = reid_synthetic.get_config("smoke")
    config.train[key] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_read_only_workdir_gets_one_line(tmp_path):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.geteuid() == 0:
            pytest.skip("needs unshare (root) or a non-root user to make a read-only directory")
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
        cmd = [sys.executable, "train.py", *SMOKE, "--workdir", str(readonly / "run")]
    else:  # root ignores permission bits: a read-only bind mount in a private mount namespace
        readonly = tmp_path / "ro"
        readonly.mkdir()
        inner = " ".join([sys.executable, "train.py", *SMOKE, "--workdir", str(readonly / "run")])
        cmd = ["unshare", "-m", "sh", "-c",
               f"mount --bind {readonly} {readonly} && mount -o remount,bind,ro {readonly} && exec {inner}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: workdir {readonly}/run: {readonly} is not writable"), last
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_help_exits_zero(script):
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "--config" in proc.stdout, proc.stderr[-2000:]


def test_tool_mistakes_get_one_line(tmp_path):
    not_torch = tmp_path / "weights.pth"
    not_torch.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint \xff\xfe")
    proc = subprocess.run([sys.executable, "-m", "stra_jax.convert", str(not_torch), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {not_torch}: not a readable PyTorch checkpoint")
    assert not (tmp_path / "out").exists()

    proc = subprocess.run([sys.executable, "-m", "stra_jax.tools.extract_features", "--checkpoint", str(tmp_path),
                           "--images", str(tmp_path), "--out", str(tmp_path / "f.npy"), "--batch-size", "0"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "--batch-size 0: expected a positive integer" in proc.stderr
    assert not (tmp_path / "f.npy").exists()
