"""``config.train.losses``: registered terms weighted into the objective, against
NumPy formulas (the oracles of test_losses / test_margin_losses); every refusal
of a bad setting; a term registered from outside the package."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import face_synthetic, reid_synthetic
from stra_jax.losses import LOSSES, LossContext, build_objective, loss_term, train_objective
from stra_jax.tasks import make_task
from tests.test_losses import torchreid_ce
from tests.test_margin_losses import np_ce, np_logits

RNG = np.random.default_rng
B, C, D = 12, 7, 6


def batch(seed: int):
    """Logits (B, C), embeddings (B, D), class weights (D, C + 1: one padded
    column), labels (B,) and two blocks' sown L_d (B,)."""
    rng = RNG(seed)
    blocks = [rng.uniform(0.0, 2.0, B).astype(np.float32) for _ in range(2)]
    collections = {"losses": {f"block{i}": {"diversity": (jnp.asarray(d),)} for i, d in enumerate(blocks)}}
    return dict(logits=(3.0 * rng.standard_normal((B, C))).astype(np.float32),
                embedding=rng.standard_normal((B, D)).astype(np.float32),
                class_weights=rng.standard_normal((D, C + 1)).astype(np.float32),
                labels=rng.integers(0, C, B).astype(np.int32), ld=blocks[0] + blocks[1], collections=collections)


def run(objective, b, **outputs):
    return jax.jit(objective)({k: jnp.asarray(b[k]) for k in outputs}, {"labels": jnp.asarray(b["labels"])},
                              b["collections"])


@pytest.mark.parametrize("eps,w", [(0.0, 1.0), (0.1, 0.25)])
def test_reid_objective_matches_numpy(eps, w):
    b = batch(0)
    config = {"ce": {"weight": 1.0, "label_smoothing": eps}, "diversity": {"weight": w}}
    total, metrics = run(build_objective(config, LossContext(num_classes=C)), b, logits=True)
    ce = torchreid_ce(b["logits"], b["labels"], eps).mean()
    assert set(metrics) == {"loss", "ce", "diversity", "accuracy"}
    assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())
    np.testing.assert_allclose(float(metrics["ce"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["diversity"]), b["ld"].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(total), ce + w * b["ld"].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["accuracy"]), (b["logits"].argmax(1) == b["labels"]).mean())
    assert float(metrics["loss"]) == float(total)


@pytest.mark.parametrize("name,m,s", [("arcface", 0.15, 20.0), ("cosface", 0.2, 20.0), ("softmax", 0.0, 1.0)])
def test_face_config_objective_matches_numpy(name, m, s):
    b = batch(1)
    config = face_synthetic.get_config(name)
    total, metrics = run(train_objective(config.train, LossContext(num_classes=C)), b, embedding=True,
                         class_weights=True)
    ce, correct = np_ce(np_logits(name, b["embedding"], b["class_weights"], b["labels"], m, s), b["labels"], C)
    assert set(metrics) == {"loss", "ce", "diversity", "accuracy"}
    np.testing.assert_allclose(float(metrics["ce"]), ce.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(total), ce.mean() + 0.1 * b["ld"].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["accuracy"]), correct.mean())


def test_a_bare_number_is_the_weight_and_a_term_may_stand_alone():
    b = batch(2)
    total, metrics = run(build_objective({"diversity": 2}, LossContext()), b)
    assert set(metrics) == {"loss", "diversity"}
    np.testing.assert_allclose(float(total), 2 * b["ld"].mean(), rtol=1e-6)
    _, metrics = run(build_objective(ml_collections.ConfigDict({"ce": 0.5}), LossContext()), b, logits=True)
    assert set(metrics) == {"loss", "ce", "accuracy"}


REID = {"ce": {"weight": 1.0}, "diversity": {"weight": 1.0}}


@pytest.mark.parametrize("losses,message", [
    ({}, r"train\.losses is empty: name at least one loss term.*known loss terms: \['arcface', 'ce'"),
    ("ce", r"train\.losses='ce': expected a mapping of loss term names"),
    ({"quadruplet": 1.0}, r"train\.losses='quadruplet': unknown loss term; known loss terms: \['arcface', 'ce', "
                          r"'center', 'circle', 'cosface', 'diversity', 'softmax', 'triplet'"),
    ({"ce": {"label_smoothing": 0.1}}, r"train\.losses\.ce\.weight: missing"),
    ({"ce": {"weight": -1.0}}, r"train\.losses\.ce\.weight=-1\.0: expected a number >= 0"),
    ({"ce": {"weight": "1"}}, r"train\.losses\.ce\.weight='1': expected a number >= 0"),
    ({"ce": {"weight": True}}, r"train\.losses\.ce\.weight=True: expected a number >= 0"),
    ({"ce": {"weight": float("nan")}}, r"train\.losses\.ce\.weight=nan"),
    ({"ce": "heavy"}, r"train\.losses\.ce='heavy': expected a weight"),
    ({"ce": {"weight": 1.0, "smoothing": 0.1}}, r"train\.losses\.ce: unknown option\(s\) \['smoothing'\] for the "
                                                r"loss term 'ce'; valid options: \['label_smoothing', 'weight'\]"),
    ({"softmax": {"weight": 1.0, "margin": 0.1}}, r"train\.losses\.softmax: unknown option\(s\) \['margin'\].*"
                                                  r"valid options: \['weight'\]"),
    ({"ce": {"weight": 1.0, "label_smoothing": 1.5}}, r"train\.losses\.ce\.label_smoothing=1\.5: expected a number "
                                                      r"in \[0, 1\]"),
    ({"arcface": {"weight": 1.0, "margin": 2.5}}, r"train\.losses\.arcface\.margin=2\.5: expected a number in "
                                                  r"\[0, 1\) rad for arcface"),
    ({"cosface": {"weight": 1.0, "scale": 0.0}}, r"train\.losses\.cosface\.scale=0\.0: expected a number in "
                                                 r"\(0, 128\] for cosface"),
    ({"arcface": {"weight": 1.0, "straight_through": 1}}, r"train\.losses\.arcface\.straight_through=1: expected "
                                                          r"True or False"),
    ({"ce": 1.0, "arcface": 1.0}, r"train\.losses: the loss terms 'ce' and 'arcface' both report the metric "
                                  r"'ce'; keep one of them"),
])
def test_bad_losses_are_refused_naming_the_key(losses, message):
    with pytest.raises(ValueError, match=message):
        build_objective(losses, LossContext(num_classes=C))


MARGIN_HOME = r"train\.losses\.<arcface\|cosface>\."


@pytest.mark.parametrize("old,new", [
    ("label_smoothing", r"train\.losses\.ce\.label_smoothing"),
    ("diversity_weight", r"train\.losses\.diversity\.weight"),
    ("loss", r"train\.losses\.<name> \(the loss term's name, e\.g\. train\.losses\.arcface\)"),
    ("margin", MARGIN_HOME + "margin"), ("scale", MARGIN_HOME + "scale"),
    ("straight_through", MARGIN_HOME + "straight_through")])
def test_a_key_of_before_train_losses_names_its_new_home(old, new):
    train = reid_synthetic.get_config("smoke").train
    train[old] = 0.1
    with pytest.raises(ValueError, match=rf"train\.{old} has moved: write it as {new}"):
        train_objective(train, LossContext())


def test_tasks_refuse_bad_losses_before_reading_data(tmp_path):
    config = reid_synthetic.get_config("smoke")
    config.train.losses.ce.label_smoothing = 1.5
    with pytest.raises(ValueError, match=r"train\.losses\.ce\.label_smoothing=1\.5"):
        make_task(config, tmp_path / "run")
    del config.train["losses"]
    with pytest.raises(ValueError, match=r"train\.losses: missing; expected weighted loss terms"):
        make_task(config, tmp_path / "run")
    face = face_synthetic.get_config("smoke")
    face.train.losses.arcface.scale = 500.0
    with pytest.raises(ValueError, match=r"train\.losses\.arcface\.scale=500\.0"):
        make_task(face, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------- a term from outside
@loss_term(metrics=("embedding_norm",), options={"target": 1.0})
def norm_term(options, context):
    """A toy term: mean squared distance of the embeddings' norms to ``target``."""
    target = options["target"]
    if not target > 0:
        raise ValueError(f"{context.key}.target={target!r}: expected a number > 0")

    def term(outputs, batch, collections):
        norm = jnp.linalg.norm(outputs["embedding"], axis=1)
        value = jnp.mean((norm - target) ** 2)
        return value, {"embedding_norm": jnp.mean(norm)}

    return term


def undeclared_term(options, context):
    """A toy term that declares nothing: its options pass as given, and a
    clash of its metric names shows at the first trace."""
    return lambda outputs, batch, collections: (jnp.float32(options["value"]), {"ce": jnp.float32(0.0)})


@pytest.fixture
def toys():
    LOSSES.register("embedding_norm", norm_term)
    LOSSES.register("undeclared", undeclared_term)
    yield
    LOSSES.unregister("embedding_norm")
    LOSSES.unregister("undeclared")


def test_a_term_registered_from_outside(toys):
    b = batch(3)
    config = {"ce": {"weight": 1.0}, "embedding_norm": {"weight": 0.5, "target": 2.0}}
    total, metrics = run(build_objective(config, LossContext(num_classes=C)), b, logits=True, embedding=True)
    norm = np.linalg.norm(b["embedding"].astype(np.float64), axis=1)
    ce = torchreid_ce(b["logits"], b["labels"], 0.0).mean()
    assert set(metrics) == {"loss", "ce", "accuracy", "embedding_norm"}
    np.testing.assert_allclose(float(metrics["embedding_norm"]), norm.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(total), ce + 0.5 * np.mean((norm - 2.0) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match=r"train\.losses\.embedding_norm\.target=-1"):
        build_objective({"embedding_norm": {"weight": 1.0, "target": -1}}, LossContext())
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['targte'\].*\['target', 'weight'\]"):
        build_objective({"embedding_norm": {"weight": 1.0, "targte": 1.0}}, LossContext())

    objective = build_objective({"undeclared": {"weight": 1.0, "value": 3.0}}, LossContext())
    total, metrics = run(objective, b)
    assert float(total) == 3.0 and set(metrics) == {"loss", "ce"}
    clash = build_objective({"ce": 1.0, "undeclared": {"weight": 1.0, "value": 3.0}}, LossContext())
    with pytest.raises(ValueError, match=r"the loss terms 'ce' and 'undeclared' both report the metric 'ce'"):
        run(clash, b, logits=True)
