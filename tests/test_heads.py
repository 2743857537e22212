"""Heads: the ReID heads keep their parameter names; the face head and the margin
classifier follow the model contract."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stra_jax.losses import arcface_logits, cross_entropy
from stra_jax.models import create_model, init_variables

TINY = dict(width=8, stage_sizes=(1, 1, 1, 1))


def test_reid_heads_keep_top_level_names():
    params = init_variables(create_model("stra_resnet50", num_classes=7, **TINY), jax.random.key(0))["params"]
    assert {"embed_conv", "embed_bn", "classifier"} <= set(params)
    assert params["classifier"]["kernel"].shape == (512, 7)
    gap = init_variables(create_model("resnet50", num_classes=7, **TINY), jax.random.key(0))["params"]
    assert "embed_conv" not in gap and gap["classifier"]["kernel"].shape == (256, 7)


def test_face_head_with_margin_classifier():
    # The face head is the face family's (FaceResNet); ResNetBase has no head="face" any more.
    model = create_model("stra_resnet50_face", num_classes=5, classifier="margin", embedding_dim=64,
                         head_dropout=0.5, input_size=(32, 32), **TINY)
    images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    variables = model.init(jax.random.key(0), images, train=False)
    params = variables["params"]
    assert params["classifier"]["kernel"].shape == (64, 5) and "logits" not in model.apply(variables, images,
                                                                                          train=False)
    # BN on the (B, 2, 2, 256) map (32 / 16: stride 2 in every stage) -> flatten -> Dense(64) -> BN.
    assert params["face_fc"]["kernel"].shape == (2 * 2 * 256, 64)
    out = model.apply(variables, images, train=False)
    assert out["embedding"].shape == (4, 64) and out["class_weights"].shape == (64, 5)

    def train_out(key):
        return model.apply(variables, images, train=True, mutable=["batch_stats", "losses"],
                           rngs={"dropout": key})[0]

    a, b = train_out(jax.random.key(2)), train_out(jax.random.key(3))
    assert not np.allclose(a["embedding"], b["embedding"])  # dropout is live in training
    np.testing.assert_array_equal(out["embedding"], model.apply(variables, images, train=False)["embedding"])
    labels = jnp.array([0, 1, 2, 3])
    loss = jnp.mean(cross_entropy(arcface_logits(a["embedding"], a["class_weights"], labels), labels))
    assert np.isfinite(float(loss))


def test_bad_head_options_are_named():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['head'\] for the ResNet family"):
        create_model("stra_resnet50", head="arc", **TINY)  # one head per family: no head option
    with pytest.raises(ValueError, match=r"classifier='cos': expected one of \('linear', 'margin'\)"):
        create_model("stra_resnet50", classifier="cos", **TINY)
    with pytest.raises(ValueError, match=r"embedding_dim=None: expected a positive integer \(the FC's width\)"):
        create_model("resnet50_face", embedding_dim=None, **TINY)
