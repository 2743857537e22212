"""The ReID head's bag-of-tricks options against hand-computed cases: GeM
pooling, BNNeck (pre_neck feature, shift-free BatchNorm, bias-free classifier)
and center loss's class centers."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stra_jax.models import create_model, init_variables
from stra_jax.models.heads import ReIDHead, generalized_mean_pool

TINY = dict(width=8, stage_sizes=(1, 1, 1, 1))


def test_gem_pooling_by_hand():
    # one image, a 2x2 map, two channels; p = 2 and p = 1 (the mean) and a clamped negative
    x = np.array([[[[1.0, -4.0], [2.0, 0.0]], [[3.0, 1.0], [4.0, 2.0]]]], np.float32)  # (1, 2, 2, 2)
    got = np.asarray(generalized_mean_pool(jnp.asarray(x), jnp.array([2.0])))
    want_c0 = np.sqrt((1 + 4 + 9 + 16) / 4)
    want_c1 = np.sqrt((1e-12 + 1e-12 + 1 + 4) / 4)  # max(x, 1e-6)^2 for -4 and 0
    np.testing.assert_allclose(got, [[want_c0, want_c1]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(generalized_mean_pool(jnp.asarray(x), 1.0)), [[2.5, (1e-6 + 1e-6 + 3) / 4]],
                               rtol=1e-6)
    # a large p approaches the max
    np.testing.assert_allclose(np.asarray(generalized_mean_pool(jnp.asarray(x), 60.0))[0, 0], 4.0, rtol=0.03)


def test_gem_head_learns_p():
    head = ReIDHead(num_classes=3, embedding_dim=None, pooling="gem")
    x = jax.random.uniform(jax.random.key(0), (2, 3, 2, 4))
    variables = head.init(jax.random.key(1), x, train=False)
    assert float(variables["params"]["gem_p"][0]) == 3.0
    out = head.apply(variables, x, train=False)
    want = np.mean(np.asarray(x) ** 3, axis=(1, 2)) ** (1 / 3)
    np.testing.assert_allclose(out["features"], want, rtol=1e-5)
    np.testing.assert_allclose(out["embedding"], want, rtol=1e-5)  # no neck: the pooled feature

    def loss(params):
        return jnp.sum(head.apply({"params": params}, x, train=False)["logits"] ** 2)

    assert float(jax.grad(loss)(variables["params"])["gem_p"][0]) != 0.0  # p is trained


@pytest.mark.parametrize("embedding_dim, bn_name", [(None, "neck_bn"), (16, "embed_bn")])
def test_bnneck_by_hand(embedding_dim, bn_name):
    head = ReIDHead(num_classes=5, embedding_dim=embedding_dim, bnneck=True)
    x = jax.random.normal(jax.random.key(0), (6, 2, 2, 8))
    variables = head.init(jax.random.key(1), x, train=False)
    params = variables["params"]
    assert set(params[bn_name]) == {"scale"}  # the neck's shift is fixed at 0 (no bias)
    assert set(params["classifier"]) == {"kernel"}  # bias-free classifier
    assert np.std(np.asarray(params["classifier"]["kernel"])) < 0.003  # normal(0, 0.001)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
    out, _ = head.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                        mutable=["batch_stats"])
    pooled = np.asarray(x).mean(axis=(1, 2))
    np.testing.assert_allclose(out["features"], pooled, rtol=1e-5, atol=1e-6)
    pre = pooled if embedding_dim is None else pooled @ np.asarray(params["embed_conv"]["kernel"])
    np.testing.assert_allclose(out["pre_neck"], pre, rtol=1e-5, atol=1e-5)
    # training BatchNorm: batch mean and biased variance, eps 1e-5, scale, no shift
    normed = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-5) * np.asarray(params[bn_name]["scale"])
    np.testing.assert_allclose(out["embedding"], normed, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], normed @ np.asarray(params["classifier"]["kernel"]), rtol=1e-4,
                               atol=1e-5)


def test_without_bnneck_the_head_is_unchanged():
    for name, extra in (("stra_resnet50", {}), ("resnet50", {"embedding_dim": None})):
        params = init_variables(create_model(name, num_classes=4, **TINY, **extra), jax.random.key(0))["params"]
        assert "bias" in params["classifier"] and "neck_bn" not in params and "gem_p" not in params
        if "embed_bn" in params:
            assert set(params["embed_bn"]) == {"scale", "bias"}


def test_centers_are_parameters_returned_as_an_output():
    model = create_model("resnet50", num_classes=7, centers=True, bnneck=True, **TINY)
    variables = init_variables(model, jax.random.key(0))
    assert variables["params"]["centers"].shape == (7, 256)
    out = model.apply(variables, jnp.zeros((2, 64, 32, 3)), train=False)
    np.testing.assert_array_equal(out["centers"], variables["params"]["centers"])
    assert out["pre_neck"].shape == (2, 256)


def test_bad_head_options_name_the_option():
    with pytest.raises(ValueError, match=r"pooling='max': expected one of \('avg', 'gem'\)"):
        create_model("stra_resnet50", pooling="max", **TINY)
    with pytest.raises(ValueError, match=r"bnneck='yes': expected true or false"):
        create_model("stra_resnet50", bnneck="yes", **TINY)
    with pytest.raises(ValueError, match=r"centers=True needs num_classes > 0"):
        create_model("stra_resnet50", centers=True, **TINY)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bnneck'\]"):
        create_model("resnet50_face", bnneck=True, **TINY)  # the face head has no neck option
    model = create_model("stra_mobilenetv2_x1_0", num_classes=3, bnneck=True, pooling="gem", width_mult=0.25,
                         stage_blocks=(1,) * 7)
    params = init_variables(model, jax.random.key(0))["params"]
    assert "gem_p" in params and set(params["embed_bn"]) == {"scale"}
