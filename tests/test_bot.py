"""The ReID bag of tricks end to end (``:bot,center,smoke``), its refusals, the
learning-rate scaling rule, and a train step that does not depend on the device
count (global BatchNorm, global hard mining, the global P x K batch)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from configs import reid_synthetic
from stra_jax.models.io import read_model_spec
from stra_jax.tools import report
from stra_jax.training import record
from stra_jax.training.loop import train_and_evaluate
from tests.helpers import run_multidevice


def test_bot_with_center_loss_trains_and_records_itself(tmp_path):
    config = reid_synthetic.get_config("bot,center,smoke")
    config.train.lr_reference_batch = 4  # the scaling rule: peak lr = 3e-4 x 8 / 4
    workdir = tmp_path / "run"
    final = train_and_evaluate(config, workdir)
    assert 0 < final["reid/mAP"] <= 1
    spec = read_model_spec(workdir / "model_last")
    assert spec["kwargs"]["bnneck"] is True and spec["kwargs"]["centers"] is True  # the task added the centers
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in logged if "train/triplet" in m]
    assert train and all(np.isfinite(m["train/triplet"]) and np.isfinite(m["train/center"]) for m in train)
    assert max(m["train/lr"] for m in train) == pytest.approx(6e-4)
    rec = record.read_record(workdir)
    assert rec["config"]["input"]["sampler"] == "pk" and rec["final"]["metrics"]["reid/mAP"] == final["reid/mAP"]
    table, _ = report.report([str(workdir)])
    assert f"{100 * final['reid/mAP']:.1f}" in table


def _refused(config, tmp_path, match):
    workdir = tmp_path / "refused"
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, workdir)
    assert not workdir.exists()  # nothing half-written


def test_what_the_dataset_cannot_satisfy_is_refused_with_the_numbers(tmp_path):
    data = str(tmp_path / "data")  # the smoke set: 12 identities, 6 training ids x ... images
    config = reid_synthetic.get_config("bot,smoke")
    config.dataset.root = data
    config.train.batch_size = 64  # P = 16 > the training identities
    _refused(config, tmp_path, r"needs P=16 identities per batch \(train.batch_size=64 / num_instances=4\) but the "
                               r"training set has \d+ identities")
    config = reid_synthetic.get_config("bot,smoke")
    config.dataset.root = data
    config.train.accum_steps = 4  # 2 groups of 4 cannot make 4 micro-batches
    _refused(config, tmp_path, r"train.batch_size=8 .*accum_steps=4 .*whole groups of 4 examples")
    config = reid_synthetic.get_config("bot,smoke")
    config.dataset.root = data
    config.input.sampler, config.input.sampler_options = "random", {}
    _refused(config, tmp_path, r"train.losses.triplet: a training batch holds 8 images of \d+ identities .*needs "
                               r">= 2 images per identity: use config.input.sampler='pk'")


def test_a_bot_train_step_does_not_depend_on_the_device_count():
    out = run_multidevice("""
        import jax, numpy as np
        from stra_jax.losses import build_objective, LossContext
        from stra_jax.models import create_model, init_variables
        from stra_jax.sharding import host_batch_to_global, make_mesh, replicated
        from stra_jax.training.optim import make_optimizer
        from stra_jax.training.schedules import step_decay_schedule
        from stra_jax.training.state import TrainState
        from stra_jax.training.step import make_train_step
        model = create_model("stra_resnet50", num_classes=4, width=8, stage_sizes=(1, 1, 1, 1), bnneck=True,
                             centers=True, last_stride=1)
        variables = jax.device_get(init_variables(model, jax.random.key(0)))  # host copy: the step donates
        objective = build_objective({"ce": {"weight": 1.0, "label_smoothing": 0.1}, "triplet": {"weight": 1.0},
                                     "center": {"weight": 0.0005}, "diversity": {"weight": 1.0}}, LossContext(4))
        rng = np.random.default_rng(0)
        batch = {"images": rng.standard_normal((16, 64, 32, 3)).astype(np.float32),
                 "labels": np.repeat(np.arange(4), 4).astype(np.int32)}  # P x K = 4 x 4
        results = []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = make_mesh(devices)
            schedule = step_decay_schedule(1e-3, 10, decay_every_epochs=5, gamma=0.1)
            tx = make_optimizer("sgd", schedule, weight_decay=5e-4)
            step = make_train_step(model, tx, schedule, mesh, objective)
            state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
            state, metrics = step(state, host_batch_to_global(batch, mesh))
            results.append((jax.device_get(metrics), jax.device_get(state)))
        (m1, s1), (m8, s8) = results
        for key in ("loss", "ce", "triplet", "center", "diversity"):
            np.testing.assert_allclose(m8[key], m1[key], rtol=2e-5, err_msg=key)
        for a, b in zip(jax.tree.leaves((s1.params, s1.batch_stats)), jax.tree.leaves((s8.params, s8.batch_stats))):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
        print("devices", len(jax.devices()), "triplet", float(m8["triplet"]))
    """)
    assert "devices 8" in out
