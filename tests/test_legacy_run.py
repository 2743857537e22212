"""A run written by an earlier version still evaluates and resumes.

``tests/data/legacy_reid_smoke`` is the workdir of
``python train.py --config configs/reid_synthetic.py:smoke --workdir W --config.train.epochs=1``
run with the code of commit 9c748a7 (before the registries, config-chosen losses,
samplers and schedules of issue 21), less its regenerable parts (the synthetic
set, the image-check cache, TensorBoard, model_last): its orbax checkpoint of
step 4, its ``model_best`` and its ``final_metrics.json``.
``final_metrics_resumed_to_epoch2.json`` is what that same code printed when the
run was resumed to the config's 2 epochs. ``legacy_face_smoke/model_best`` is the
model directory of ``configs/face_synthetic.py:smoke`` trained 1 epoch by the same
code, and ``legacy_embeddings.npz`` the embeddings both model directories gave
for a fixed random input under that code.
"""
from __future__ import annotations

import importlib
import json
import shutil

import pytest

from stra_jax.models import load_model
from stra_jax.training.loop import train_and_evaluate
from tests.helpers import REPO

LEGACY = REPO / "tests" / "data" / "legacy_reid_smoke"


def _smoke_config():
    return importlib.import_module("configs.reid_synthetic").get_config("smoke")


@pytest.fixture()
def legacy_workdir(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(LEGACY, workdir)
    return workdir


def test_old_model_dir_loads_and_scores_what_it_scored(legacy_workdir):
    model, variables = load_model(legacy_workdir / "model_best")
    assert type(model).__name__ == "ResNet" and "params" in variables and "batch_stats" in variables
    recorded = json.loads((LEGACY / "final_metrics.json").read_text())
    eval_script = importlib.import_module("eval")
    payload = eval_script.run(_smoke_config(), str(legacy_workdir), str(legacy_workdir / "eval.json"))
    for key in ("reid/mAP", "reid/rank1", "reid/mINP"):
        assert payload["metrics"][key] == pytest.approx(recorded[key], abs=1e-6), key


def test_old_checkpoint_resumes_to_the_end(legacy_workdir, capsys):
    final = train_and_evaluate(_smoke_config(), legacy_workdir)
    out = capsys.readouterr().out
    assert "resumed from step 4" in out
    assert json.loads((legacy_workdir / "model_last" / "model.json").read_text())["info"]["step"] == 8
    expected = json.loads((LEGACY / "final_metrics_resumed_to_epoch2.json").read_text())
    # Same code path and data; the tolerance only absorbs float rounding of another
    # CPU's kernels over the 4 resumed Adam steps (identical on the machine that wrote it).
    assert final["reid/mAP"] == pytest.approx(expected["reid/mAP"], abs=0.03)
    assert final["reid/num_queries"] == expected["reid/num_queries"]


@pytest.mark.parametrize("name,model_dir", [("reid", "legacy_reid_smoke/model_best"),
                                            ("face", "legacy_face_smoke/model_best")])
def test_old_model_dirs_give_the_embeddings_they_gave(name, model_dir):
    """The ReID (StRA-ResNet) and face (FaceResNet, margin classifier) model
    directories of the old code: same parameter paths, same forward pass."""
    import jax.numpy as jnp
    import numpy as np

    reference = np.load(LEGACY.parent / "legacy_embeddings.npz")
    model, variables = load_model(LEGACY.parent / model_dir)
    got = model.apply(variables, jnp.asarray(reference[f"{name}_input"]), train=False)["embedding"]
    np.testing.assert_allclose(np.asarray(got), reference[f"{name}_embedding"], rtol=1e-5, atol=1e-5)
