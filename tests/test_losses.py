"""Losses against torch.nn.functional and NumPy formulas written here."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stra_jax.losses import arcface_logits, cosface_logits, cross_entropy, identity_loss

RNG = np.random.default_rng


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def torchreid_ce(logits: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """torchreid CrossEntropyLoss(label_smooth=True), per sample."""
    num_classes = logits.shape[1]
    targets = (1 - eps) * np.eye(num_classes)[labels] + eps / num_classes
    return (-targets * np_log_softmax(logits)).sum(axis=1)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cross_entropy_matches_torch_and_torchreid(eps):
    rng = RNG(0)
    logits = (3.0 * rng.standard_normal((16, 11))).astype(np.float32)
    labels = rng.integers(0, 11, 16)
    ours = np.asarray(jax.jit(cross_entropy, static_argnums=2)(jnp.asarray(logits), jnp.asarray(labels), eps))
    ref_torch = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), reduction="none", label_smoothing=eps)
    ref_formula = torchreid_ce(logits, labels, eps)
    assert ours.shape == (16,) and ours.dtype == np.float32
    # torch's label_smoothing is torchreid's formula (eps/C on every class, target included).
    np.testing.assert_allclose(ref_torch.numpy(), ref_formula, rtol=1e-5)
    np.testing.assert_allclose(ours, ref_formula, rtol=1e-5, atol=1e-6)
    if eps:  # smoothing actually changes the loss
        assert not np.allclose(ours, torchreid_ce(logits, labels, 0.0), rtol=1e-3)


def test_cross_entropy_bf16_logits_computed_in_float32():
    rng = RNG(1)
    logits = jnp.asarray(8.0 * rng.standard_normal((32, 500)), jnp.bfloat16)
    labels = rng.integers(0, 500, 32)
    ours = cross_entropy(logits, jnp.asarray(labels), 0.1)
    assert ours.dtype == jnp.float32
    ref = torchreid_ce(np.asarray(logits.astype(jnp.float32)), labels, 0.1)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5)


def test_cross_entropy_bad_inputs():
    logits = jnp.zeros((4, 5))
    with pytest.raises(ValueError, match="labels must have shape"):
        cross_entropy(logits, jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(ValueError, match="labels must have shape"):
        cross_entropy(logits, jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(logits, jnp.zeros((4,), jnp.float32))
    with pytest.raises(ValueError, match="num_classes"):
        cross_entropy(jnp.zeros((5,)), jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, jnp.zeros((4,), jnp.int32), 1.5)
    # Out-of-range labels are flagged with NaN (checked under jit, where values are unknown).
    out = jax.jit(cross_entropy)(logits, jnp.array([0, 5, -1, 4]))
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2]) and np.isfinite(out[3])


def test_identity_loss_weighting_and_metrics():
    rng = RNG(2)
    logits = rng.standard_normal((8, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 8)
    labels[:3] = logits[:3].argmax(1)  # at least 3 correct
    labels[3:5] = (logits[3:5].argmax(1) + 1) % 6  # at least 2 wrong
    diversity = rng.uniform(0.0, 2.0, 8).astype(np.float32)
    fn = jax.jit(identity_loss, static_argnames=("label_smoothing", "diversity_weight"))
    total, m = fn(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(diversity),
                  label_smoothing=0.1, diversity_weight=0.25)
    ce = torchreid_ce(logits, labels, 0.1).mean()
    np.testing.assert_allclose(float(m["ce"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(m["diversity"]), diversity.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(total), ce + 0.25 * diversity.mean(), rtol=1e-5)
    assert float(m["loss"]) == float(total)
    np.testing.assert_allclose(float(m["accuracy"]), (logits.argmax(1) == labels).mean())
    assert set(m) == {"loss", "ce", "diversity", "accuracy"}
    # A model that sows no diversity passes a scalar 0.
    total0, m0 = identity_loss(jnp.asarray(logits), jnp.asarray(labels), 0.0, label_smoothing=0.1,
                               diversity_weight=0.25)
    np.testing.assert_allclose(float(total0), ce, rtol=1e-5)
    assert float(m0["diversity"]) == 0.0
    with pytest.raises(ValueError, match="diversity"):
        identity_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.zeros((4,)), label_smoothing=0.0,
                      diversity_weight=1.0)


def np_cosines(emb: np.ndarray, w: np.ndarray) -> np.ndarray:
    e = emb.astype(np.float64) / np.linalg.norm(emb, axis=1, keepdims=True)
    wn = w.astype(np.float64) / np.linalg.norm(w, axis=0, keepdims=True)
    return np.clip(e @ wn, -1.0, 1.0)


def np_arcface(emb, w, labels, s, m):
    """Target: cos(theta + m) if theta + m < pi, else cos(theta) - m sin(m) (insightface)."""
    cos = np_cosines(emb, w)
    out = cos.copy()
    for i, y in enumerate(labels):
        theta = math.acos(cos[i, y])
        out[i, y] = math.cos(theta + m) if theta + m < math.pi else cos[i, y] - m * math.sin(m)
    return s * out


def face_batch(seed: int, m: float):
    """Random embeddings plus rows at chosen angles to their class weight,
    covering both sides of the theta + m = pi switch and |cos| = 1."""
    rng = RNG(seed)
    d, c = 16, 10
    w = rng.standard_normal((d, c)).astype(np.float64)
    emb = [rng.standard_normal(d) for _ in range(6)]
    labels = list(rng.integers(0, c, 6))
    for k, angle in enumerate([0.0, 0.5, math.pi - m - 0.05, math.pi - m + 0.05, math.pi]):
        y = k % c
        w_hat = w[:, y] / np.linalg.norm(w[:, y])
        u = rng.standard_normal(d)
        u -= (u @ w_hat) * w_hat
        u /= np.linalg.norm(u)
        emb.append(3.0 * (math.cos(angle) * w_hat + math.sin(angle) * u))
        labels.append(y)
    return np.asarray(emb, np.float32), w.astype(np.float32), np.asarray(labels)


@pytest.mark.parametrize("s,m", [(20.0, 0.15), (30.0, 0.5)])
def test_arcface_matches_formula(s, m):
    emb, w, labels = face_batch(3, m)
    ours = np.asarray(jax.jit(arcface_logits, static_argnums=(3, 4))(emb, w, labels, s, m))
    ref = np_arcface(emb, w, labels, s, m)
    assert ours.shape == (len(labels), w.shape[1]) and ours.dtype == np.float32
    aligned = 6  # theta = 0: float32 cos ~ 1 - 1e-7 makes sin(theta) ~ 4e-4, an inherent error
    rest = np.arange(len(labels)) != aligned
    np.testing.assert_allclose(ours[rest], ref[rest], rtol=1e-5, atol=1e-6 * s)
    np.testing.assert_allclose(ours[aligned], ref[aligned], rtol=1e-5, atol=2e-4 * s)
    # Both branches were exercised.
    thetas = np.arccos(np_cosines(emb, w)[np.arange(len(labels)), labels])
    assert (thetas + m < math.pi).any() and (thetas + m > math.pi).any()


def test_arcface_gradient_finite_at_aligned_and_opposite_vectors():
    emb, w, labels = face_batch(4, 0.15)

    def loss(e):
        return jnp.mean(cross_entropy(arcface_logits(e, jnp.asarray(w), jnp.asarray(labels)), jnp.asarray(labels)))

    g = jax.grad(loss)(jnp.asarray(emb))
    assert np.isfinite(np.asarray(g)).all()
    # Exactly aligned with its class weight too.
    e_exact = jnp.asarray(w[:, :2].T.copy())
    g2 = jax.grad(lambda e: jnp.sum(arcface_logits(e, jnp.asarray(w), jnp.array([0, 1]))))(e_exact)
    assert np.isfinite(np.asarray(g2)).all()


@pytest.mark.parametrize("s,m", [(20.0, 0.2), (64.0, 0.35)])
def test_cosface_matches_formula(s, m):
    emb, w, labels = face_batch(5, m)
    ours = np.asarray(cosface_logits(emb, w, labels, s, m))
    ref = s * (np_cosines(emb, w) - m * np.eye(w.shape[1])[labels])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * s)
    # Margin is applied only on the target class.
    plain = np.asarray(cosface_logits(emb, w, labels, s, 0.0))
    diff = plain - ours
    np.testing.assert_allclose(diff[np.arange(len(labels)), labels], s * m, rtol=1e-5)
    diff[np.arange(len(labels)), labels] = 0.0
    assert np.abs(diff).max() == 0.0


def test_margin_bad_shapes():
    emb, w, labels = face_batch(6, 0.2)
    with pytest.raises(ValueError, match="weights"):
        cosface_logits(emb, w.T, labels)
    with pytest.raises(ValueError, match="labels"):
        arcface_logits(emb, w, labels[:, None])
