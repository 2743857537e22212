"""The face verification evaluator: embeddings in pair order, flip fusion
(concat / sum / none), the classifier left out, the table and the ROC PNGs."""
from __future__ import annotations

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stra_jax.data.face import write_verification_bin
from stra_jax.evaluation.evaluators import build_evaluators, run_evaluators
from stra_jax.evaluation.face import evaluate
from stra_jax.evaluation.face_verification import fuse


class ToyFaceNet(nn.Module):
    """embedding = W . flattened image (a fixed, asymmetric linear map), plus a
    classifier the evaluator must not need."""

    num_classes: int = 0

    @nn.compact
    def __call__(self, images, *, train, frozen=()):
        flat = images.reshape(images.shape[0], -1)
        embedding = nn.Dense(6, use_bias=False, name="embed")(flat)
        out = {"features": embedding, "embedding": embedding}
        if self.num_classes:
            out["class_weights"] = self.param("classifier", nn.initializers.normal(0.01), (6, self.num_classes))
        return out


def _image(rng) -> tuple[bytes, np.ndarray]:
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue(), pixels


@pytest.fixture(scope="module")
def pair_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bins")
    rng = np.random.default_rng(0)
    sets = {}
    for name, pairs in (("lfw", 20), ("cfp_fp", 13)):
        encoded, pixels = zip(*[_image(rng) for _ in range(2 * pairs)])
        issame = rng.random(pairs) < 0.5
        write_verification_bin(root / f"{name}.bin", encoded, issame)
        sets[name] = (root / f"{name}.bin", np.stack(pixels), issame)
    return sets


def _oracle(kernel, pixels, issame, flip):
    """The same numbers by hand: normalise, embed, flip, fuse, then the protocol."""
    x = (pixels.astype(np.float64) - 127.5) / 128
    e = x.reshape(len(x), -1) @ kernel
    e_flip = x[:, :, ::-1].reshape(len(x), -1) @ kernel
    feats = {"concat": np.concatenate([e, e_flip], 1), "sum": e + e_flip, "none": e}[flip]
    return evaluate(feats, issame, nrof_folds=5)


@pytest.mark.parametrize("flip", ["concat", "sum", "none"])
def test_metrics_equal_a_hand_computed_run(pair_sets, flip, tmp_path):
    model = ToyFaceNet(num_classes=7)
    variables = model.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)), train=False)
    context = {"face_verification_sets": {n: p for n, (p, _, _) in pair_sets.items()}}
    evals = {"face": dict(type="face_verification", image_size=(8, 8), batch_size=8, flip=flip, nrof_folds=5)}
    (evaluator,) = build_evaluators(evals, context)
    metrics = run_evaluators([evaluator], model, variables)
    kernel = np.asarray(variables["params"]["embed"]["kernel"], np.float64)
    for name, (_, pixels, issame) in pair_sets.items():
        want = _oracle(kernel, pixels, issame, flip)
        for key in ("accuracy", "accuracy_std", "threshold", "val", "far"):
            assert metrics[f"face/{name}/{key}"] == pytest.approx(want[key], abs=1e-6), (name, key)
        assert metrics[f"face/{name}/pairs"] == issame.size
    assert metrics["face/mean_accuracy"] == pytest.approx(
        np.mean([metrics["face/lfw/accuracy"], metrics["face/cfp_fp/accuracy"]]))
    table = evaluator.table({k[len("face/"):]: v for k, v in metrics.items()})
    assert "lfw" in table and "cfp_fp" in table and "+-" in table and "mean" in table
    written = evaluator.write_artifacts({k[len("face/"):]: v for k, v in metrics.items()}, tmp_path)
    assert [p.name for p in written] == ["roc_cfp_fp.png", "roc_lfw.png"]
    with Image.open(written[0]) as im:
        assert im.size == (500, 450)


def test_fuse_shapes():
    e, f = np.ones((4, 3)), 2 * np.ones((4, 3))
    assert fuse(e, f, "concat").shape == (4, 6) and fuse(e, f, "sum")[0, 0] == 3 and fuse(e, None, "none") is e


def test_bad_settings_and_sets(pair_sets):
    context = {"face_verification_sets": {n: p for n, (p, _, _) in pair_sets.items()}}
    with pytest.raises(ValueError, match=r"config.evals.face.flip='mean': expected one of \('concat', 'sum', 'none'\)"):
        build_evaluators({"face": dict(type="face_verification", flip="mean")}, context)
    with pytest.raises(ValueError, match=r"config.evals.face.sets: \['agedb_30'\] not found; available sets: "):
        build_evaluators({"face": dict(type="face_verification", sets=("agedb_30",))}, context)
    with pytest.raises(ValueError, match="needs .bin verification sets"):
        build_evaluators({"face": dict(type="face_verification")}, {})


def test_undecodable_bin_image_is_named(tmp_path):
    good, _ = _image(np.random.default_rng(0))
    write_verification_bin(tmp_path / "lfw.bin", [good, b"garbage", good, good], [True, False])
    (evaluator,) = build_evaluators({"face": dict(type="face_verification")},
                                    {"face_verification_sets": {"lfw": tmp_path / "lfw.bin"}})
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
    with pytest.raises(ValueError, match=r"lfw.bin: image 1 \(pair 0\) is undecodable"):
        evaluator.check(mesh)
