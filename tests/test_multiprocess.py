"""Two real JAX processes (4 simulated CPU devices each, gloo collectives) against
one process: the same train step (with batch-hard triplet mining over the global
batch), the same P x K batches and the same extracted features."""
from __future__ import annotations

import socket
import subprocess
import sys

import jax
import numpy as np
from PIL import Image

from stra_jax.evaluation.features import extract_features
from stra_jax.models import create_model, init_variables
from stra_jax.sharding import host_batch_to_global, make_mesh, replicated
from stra_jax.training.state import TrainState
from stra_jax.training.step import make_train_step
from stra_jax.data.samplers import build_sampler
from stra_jax.losses import LossContext, build_objective
from tests.helpers import REPO, multidevice_env
from tests.test_training import _batch, _setup

WORKER = r"""
import os, sys
pid, port, out, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
OBJECTIVE = {"ce": {"weight": 1.0}, "triplet": {"weight": 1.0, "margin": 0.3}, "diversity": {"weight": 1.0}}
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
import numpy as np
from tests.test_training import _setup, _batch
from stra_jax.evaluation.features import extract_features
from stra_jax.models import create_model, init_variables
from stra_jax.sharding import host_batch_to_global, make_mesh, replicated
from stra_jax.training.state import TrainState
from stra_jax.training.step import make_train_step
from stra_jax.losses import LossContext, build_objective
from stra_jax.data.samplers import build_sampler, host_epoch_slice
assert jax.process_count() == 2 and jax.device_count() == 8
model, variables, schedule, tx = _setup(optimizer="sgd")
mesh = make_mesh()
step = make_train_step(model, tx, schedule, mesh, build_objective(OBJECTIVE, LossContext(5)))
state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
labels = np.repeat(np.arange(9), [2, 3, 4, 5, 6, 7, 8, 9, 10])
sampler = build_sampler({"sampler": "pk", "sampler_options": {"num_instances": 4}}, len(labels), lambda: labels)
pk_slice = host_epoch_slice(sampler, 16, 3, 1, 1, jax.process_index(), jax.process_count())[0]
full = _batch(16)
local = {k: v[pid * 8:(pid + 1) * 8] for k, v in full.items()}  # this host's slice of the global batch
state, _ = step(state, host_batch_to_global(local, mesh))
params = jax.device_get(state.params)
small = create_model("stra_resnet50", width=8, stage_sizes=(1, 1, 1, 1))
feats = extract_features(small, init_variables(small, jax.random.key(0)), paths, batch_size=8,
                         image_size=(64, 32), mesh=mesh)
np.savez(out, feats=feats, pk_slice=pk_slice, *jax.tree.leaves(params))
"""
OBJECTIVE = {"ce": {"weight": 1.0}, "triplet": {"weight": 1.0, "margin": 0.3}, "diversity": {"weight": 1.0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    paths = []
    for i in range(11):  # not a multiple of the batch: padding and truncation are exercised
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    env = multidevice_env(4)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(pid), str(port), str(tmp_path / f"out{pid}.npz"),
                               *paths], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]

    model, variables, schedule, tx = _setup(optimizer="sgd")
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(model, tx, schedule, mesh, build_objective(OBJECTIVE, LossContext(5)))
    state = jax.device_put(TrainState.create(variables, tx), replicated(mesh))
    state, _ = step(state, host_batch_to_global(_batch(16), mesh))
    labels = np.repeat(np.arange(9), [2, 3, 4, 5, 6, 7, 8, 9, 10])
    sampler = build_sampler({"sampler": "pk", "sampler_options": {"num_instances": 4}}, len(labels), lambda: labels)
    order = sampler.epoch_order(16, 3, 1)[1:]  # the global batches from step 1 (a resume) on
    expected = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
    small = create_model("stra_resnet50", width=8, stage_sizes=(1, 1, 1, 1))
    feats = extract_features(small, init_variables(small, jax.random.key(0)), paths, batch_size=8,
                             image_size=(64, 32), mesh=mesh)
    for pid in range(2):
        got = np.load(tmp_path / f"out{pid}.npz")
        np.testing.assert_allclose(got["feats"], feats, rtol=1e-5, atol=1e-5)
        assert got["feats"].shape == (11, 512)
        np.testing.assert_array_equal(got["pk_slice"], order[:, pid * 8:(pid + 1) * 8].ravel())
        for i, want in enumerate(expected):
            np.testing.assert_allclose(got[f"arr_{i}"], want, rtol=1e-5, atol=1e-6)
