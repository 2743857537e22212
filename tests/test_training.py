"""Training system: multi-device equality, frozen epochs, checkpoints, exact resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from stra_jax.models import create_model, frozen_param_mask, init_variables
from stra_jax.training import checkpoint, record
from stra_jax.training.loop import NonFiniteLoss
from stra_jax.training.progress import LoopClock, flush_metrics
from stra_jax.sharding import host_batch_to_global, make_mesh, replicated
from stra_jax.training.optim import make_optimizer
from stra_jax.training.schedules import step_decay_schedule
from stra_jax.training.state import TrainState
from stra_jax.training.step import make_train_step
from stra_jax.losses import identity_objective
from stra_jax.tools import report, sweep
from tests.helpers import REPO, run_multidevice

NARROW = dict(width=8, stage_sizes=(1, 1, 1, 2), num_classes=5)
FROZEN = ("stem", "layer1", "layer2", "layer3", "layer4")


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"images": rng.standard_normal((n, 64, 32, 3)).astype(np.float32),
            "labels": rng.integers(0, 5, n).astype(np.int32)}


def _setup(frozen_steps=0, optimizer="adam"):
    model = create_model("stra_resnet50", **NARROW)
    variables = init_variables(model, jax.random.key(0))
    schedule = step_decay_schedule(1e-3, 10, decay_every_epochs=5, gamma=0.1)
    mask = frozen_param_mask(model, variables["params"], FROZEN) if frozen_steps else None
    tx = make_optimizer(optimizer, schedule, weight_decay=5e-4, frozen_mask=mask, frozen_steps=frozen_steps)
    return model, variables, schedule, tx


def test_frozen_phase_keeps_pretrained_parameters_and_statistics():
    model, variables, schedule, tx = _setup(frozen_steps=2)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(model, tx, schedule, mesh, identity_objective(), frozen=FROZEN)
    state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
    before = jax.device_get(state)
    state, metrics = step(state, host_batch_to_global(_batch(), mesh))
    after = jax.device_get(state)
    assert np.isfinite(metrics["loss"])
    mask = frozen_param_mask(model, before.params, FROZEN)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.params, after.params)
    for frozen, changed in zip(jax.tree.leaves(mask), jax.tree.leaves(moved)):
        assert changed != frozen  # frozen: unchanged; open (StRA modules, head): updated
    bs_b, bs_a = before.batch_stats, after.batch_stats
    np.testing.assert_array_equal(bs_a["layer2_0"]["bn1"]["mean"], bs_b["layer2_0"]["bn1"]["mean"])
    np.testing.assert_array_equal(bs_a["layer4_0"]["bn2"]["var"], bs_b["layer4_0"]["bn2"]["var"])
    assert not np.array_equal(bs_a["layer4_0"]["stra"]["local"]["logit_bn1"]["mean"],
                              bs_b["layer4_0"]["stra"]["local"]["logit_bn1"]["mean"])
    assert not np.array_equal(bs_a["embed_bn"]["mean"], bs_b["embed_bn"]["mean"])


MULTI = r"""
import jax, numpy as np
from tests.test_training import _setup, _batch
from stra_jax.sharding import host_batch_to_global, make_mesh, replicated
from stra_jax.training.state import TrainState
from stra_jax.training.step import make_train_step
from stra_jax.losses import identity_objective
assert jax.device_count() == 8
# SGD: the update is linear in the gradient, so a different summation order
# (per-device partial sums) can only move parameters by rounding. (Adam's first
# steps are ~lr * sign(g) and flip on near-zero gradients.)
results = []
for devices in (jax.devices()[:1], jax.devices()):
    model, variables, schedule, tx = _setup(optimizer="sgd")
    mesh = make_mesh(devices)
    step = make_train_step(model, tx, schedule, mesh, identity_objective())
    state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
    state, metrics = step(state, host_batch_to_global(_batch(16), mesh))
    results.append(jax.device_get((state.params, state.batch_stats, metrics["loss"])))
for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
print("OK")
"""


def test_one_device_and_eight_devices_train_the_same():
    assert "OK" in run_multidevice(MULTI)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    model, variables, _, tx = _setup()
    state = TrainState.create(variables, tx)
    manager = checkpoint.make_manager(tmp_path)
    meta = {"arch": "stra_resnet50", "model_kwargs": NARROW}
    checkpoint.save(manager, state, meta)
    abstract = jax.eval_shape(lambda: state)
    restored, _ = checkpoint.restore_latest(manager, abstract, meta)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), jax.device_get(state.params))
    with pytest.raises(ValueError, match="checkpoint holds arch='stra_resnet50'.*nothing was overwritten"):
        checkpoint.restore_latest(manager, abstract, dict(meta, arch="resnet50"))


def test_a_save_keeps_the_state_of_its_step_while_training_goes_on(tmp_path):
    """After a save the jitted step donates and overwrites the state's buffers
    (with asynchronous saving, before the files are written). The checkpoint
    must hold the values of the step it was saved at."""
    tx = make_optimizer("sgd", step_decay_schedule(0.1, 1, decay_every_epochs=1, gamma=1.0), weight_decay=0.0)
    state = TrainState.create({"params": {"w": jnp.arange(200_000, dtype=jnp.float32)}, "batch_stats": {}}, tx)
    manager = checkpoint.make_manager(tmp_path)
    bump = jax.jit(lambda s: s.replace(step=s.step + 1, params=jax.tree.map(lambda w: w * 0 - 1, s.params)),
                   donate_argnums=0)
    expected = np.arange(200_000, dtype=np.float32)
    checkpoint.save(manager, state, {"arch": "x"})
    for _ in range(3):
        state = bump(state)
    jax.block_until_ready(state)
    restored, _ = checkpoint.restore_latest(manager, jax.eval_shape(lambda: bump(state)), {"arch": "x"})
    assert int(restored.step) == 0
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), expected)


def test_non_finite_loss_names_the_step():
    pending = [(7, {"loss": jnp.float32(1.0), "lr": 1.0}), (8, {"loss": jnp.float32(np.nan), "lr": 1.0})]
    with pytest.raises(NonFiniteLoss, match="non-finite loss nan at step 8"):
        flush_metrics(pending, None, 8, LoopClock(batch_size=8, total_steps=10, start_step=6))


def test_progress_rate_and_eta_leave_out_compilation_and_checkpoints(capsys):
    """A synthetic clock: 30 s compiling, then windows of 4 steps of batch 8 at
    1 s per step (0.5 s of it waiting for input) and a 20 s checkpoint inside
    the second window; the rate is 8 img/s in both windows and the ETA follows
    from it, not from the whole run's wall time."""
    t = [100.0]
    clock = LoopClock(batch_size=8, total_steps=20, start_step=0, now=lambda: t[0])

    def feed():
        for _ in range(8):
            t[0] += 0.5  # input wait
            yield None

    batches = clock.batches(feed())
    step = 0
    for window in range(2):
        for i in range(4):
            next(batches)
            if step == 0:
                with clock.phase("compilation"):
                    t[0] += 30.0
            if window == 1 and i == 2:
                with clock.phase("checkpoint"):
                    t[0] += 20.0
            t[0] += 0.5  # the step itself
            step += 1
            clock.stepped()
        flush_metrics([(step, {"loss": np.float32(1.0), "lr": 0.1})], None, step, clock)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, done in zip(lines, (4, 8)):
        assert "8.0 img/s (input  50%)" in line, line
        eta_min = (20 - done) * 8 / 8.0 / 60
        assert f"ETA {eta_min:5.1f} min" in line, line
    assert clock.summary() == ("loop time over 8 steps: compilation 30.0 s, step 4.0 s, input 4.0 s, "
                               "checkpoint 20.0 s; input wait 50.0% of the steady-state training time")


def test_unknown_config_key_is_named():
    proc = subprocess.run([sys.executable, "train.py", "--config", "configs/reid_synthetic.py:smoke",
                           "--workdir", "/tmp/unused", "--config.train.lrr=0.1"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "Did you mean \"lr\"" in proc.stderr, proc.stderr


def _train_cmd(workdir, *extra, checkpoint_every_steps=2):
    return [sys.executable, "train.py", "--config", "configs/reid_synthetic.py:smoke", "--workdir", str(workdir),
            "--config.train.frozen_epochs=0", f"--config.train.checkpoint_every_steps={checkpoint_every_steps}",
            "--config.train.eval_every_epochs=100", *extra]


def _final_params(workdir):
    manager = checkpoint.make_manager(workdir)
    step = manager.latest_step()
    return step, manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    data = tmp_path / "data"
    common = [f"--config.dataset.root={data}"]
    # The uninterrupted run generates its data in WORKDIR/data, as the demo does. It
    # is launched by the sweep runner (one seed of ``:smoke``): the one real train.py
    # run behind tests/test_sweep.py's stand-in trainer (its command line, its metrics).
    sweep_dir = tmp_path / "sweep"
    rc = sweep.main(["--config", "configs/reid_synthetic.py", "--variants", "smoke", "--seeds", "0",
                     "--workdir", str(sweep_dir), "--set", "train.frozen_epochs=0",
                     "--set", "train.checkpoint_every_steps=2", "--set", "train.eval_every_epochs=100"])
    log = (sweep_dir / "logs" / "smoke-seed0.log").read_text()
    assert rc == 0, log[-3000:]
    assert "final (step 8):" in log and "mAP" in log
    (sweep_dir / "smoke" / "seed0").rename(tmp_path / "straight")
    final = json.loads((tmp_path / "straight" / "final_metrics.json").read_text())
    assert final["reid/mAP"] > 0
    tabulated = json.loads((sweep_dir / "sweep.json").read_text())["variants"]["smoke"]["seeds"]["0"]
    assert tabulated == {"mAP": 100 * final["reid/mAP"], "rank1": 100 * final["reid/rank1"]}
    # the run's record (run.json) and the report tool on it
    rec = record.read_record(tmp_path / "straight")
    assert rec["format"] == "stra-jax-run/1" and len(rec["sessions"]) == 1 and rec["final"]["step"] == 8
    assert rec["final"]["metrics"]["reid/mAP"] == final["reid/mAP"] and rec["seed"] == 0
    assert rec["sessions"][0]["device_count"] == jax.device_count() and rec["sessions"][0]["process_count"] == 1
    assert f"{100 * final['reid/mAP']:.1f} |" in report.report([str(tmp_path / "straight")])[0]

    # eval.py on the workdir alone: its config.json, model_best and WORKDIR/data give the numbers the run logged.
    evaluated = subprocess.run([sys.executable, "eval.py", "--checkpoint", str(tmp_path / "straight")],
                               capture_output=True, text=True, cwd=REPO)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "differs" not in evaluated.stdout and "(step 8)" in evaluated.stdout
    assert f"config: {tmp_path / 'straight' / 'config.json'}" in evaluated.stdout
    # The full config (not :smoke) disagrees with the run: refused naming the keys, nothing written.
    refused = subprocess.run([sys.executable, "eval.py", "--config", "configs/reid_synthetic.py", "--checkpoint",
                              str(tmp_path / "straight"), "--output", str(tmp_path / "refused.json")],
                             capture_output=True, text=True, cwd=REPO)
    line = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert line.startswith("error: --config differs from the run's config") and "--override_config" in line, line
    for key in ("input.image_size: [128, 64] vs [64, 32]", "model.kwargs.width: 16 vs 8", "dataset.synthetic.num_ids"):
        assert key in line, (key, line)
    assert not (tmp_path / "refused.json").exists()
    metrics = json.loads((tmp_path / "straight" / "model_best" / "eval_synthetic.json").read_text())["metrics"]
    for key in ("reid/mAP", "reid/mINP", "reid/rank1", "reid/rank5", "reid/cmc"):
        assert metrics[key] == final[key], key

    # Start the same run, kill it (SIGKILL: no clean-up) once a mid-run checkpoint exists.
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(workdir, *common), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (workdir / "checkpoints" / "2").is_dir():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] < 8, steps
    # Killed before its first evaluation (at step 8): eval.py says how to resume instead of "no model.json".
    early = subprocess.run([sys.executable, "eval.py", "--checkpoint", str(workdir)], capture_output=True, text=True,
                           cwd=REPO)
    line = early.stderr.strip().splitlines()[-1]
    assert early.returncode == 1 and "stopped before its first evaluation" in line, early.stderr[-2000:]
    assert f"rerun its training command to resume it: python train.py --config configs/reid_synthetic.py:smoke " \
           f"--workdir {workdir}" in line, line
    resumed = subprocess.run(_train_cmd(workdir, *common), capture_output=True, text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {steps[-1]}" in resumed.stdout
    assert len(record.read_record(workdir)["sessions"]) == 2  # the killed start and the resume

    step_a, a = _final_params(tmp_path / "straight")
    step_b, b = _final_params(workdir)
    assert step_a == step_b == 8
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_gradient_accumulation_equals_the_full_batch_gradient():
    """Two identical micro-batches (the 8 images twice, interleaved) must give the
    gradient of one 8-image batch; with SGD the parameters then match exactly."""
    model, variables, schedule, tx = _setup(optimizer="sgd")
    variables = jax.device_get(variables)  # host copy: each run's device state is donated
    mesh = make_mesh(jax.devices()[:1])
    half = _batch(8)
    doubled = {k: np.repeat(v, 2, axis=0) for k, v in half.items()}  # rows 2i and 2i+1 equal
    results = []
    for accum, batch in ((1, half), (2, doubled)):
        step = make_train_step(model, tx, schedule, mesh, identity_objective(), accum_steps=accum)
        state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
        state, _ = step(state, host_batch_to_global(batch, mesh))
        results.append(jax.device_get(state.params))
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_the_run_keeping_the_last_good_checkpoint(tmp_path):
    # lr 1e38: the first Adam step sends weights to ~1e38, the next forward overflows.
    cmd = _train_cmd(tmp_path / "nan", f"--config.dataset.root={tmp_path / 'data'}", "--config.train.lr=1e38",
                     checkpoint_every_steps=1)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "non-finite loss" in proc.stderr and "at step 2" in proc.stderr, proc.stderr[-2000:]
    saved = sorted(int(p.name) for p in (tmp_path / "nan" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [1]


def test_manager_keeps_the_last_n_and_the_best_by_map(tmp_path):
    tx = make_optimizer("sgd", step_decay_schedule(0.1, 1, decay_every_epochs=1, gamma=1.0), weight_decay=0.0)
    state = TrainState.create({"params": {"w": jnp.ones(3)}, "batch_stats": {}}, tx)
    manager = checkpoint.make_manager(tmp_path, keep_last=2, best_metric="reid/mAP")
    for step, m_ap in zip(range(1, 6), (0.5, 0.9, 0.3, 0.4, 0.2)):
        state = state.replace(step=jnp.asarray(step, jnp.int32))
        checkpoint.save(manager, state, {"arch": "x", "model_kwargs": {}}, metrics={"mAP": m_ap})
    checkpoint.finish(manager)  # saves may be asynchronous
    assert sorted(manager.all_steps()) == [2, 4, 5]  # the best (mAP 0.9) and the last two
