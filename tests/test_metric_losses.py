"""The metric-learning terms "triplet", "center", "circle" (stra_jax/losses/metric.py)
against NumPy loops (values; float64 finite differences for gradients) and a
PyTorch statement of the peers' losses (reid-strong-baseline's TripletLoss with
hard mining and CenterLoss, fast-reid's pairwise_circleloss), written here from
their published formulas; hand-mined pairs; global mining under an 8-device
sharded jit; the label checks; option validation; the terms in build_objective."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stra_jax.losses import (LOSSES, LossContext, build_objective, center_loss, circle_loss, hard_example_mining,
                             triplet_loss)
from tests.helpers import run_multidevice
from tests.test_losses import torchreid_ce

RNG = np.random.default_rng
B, D, C = 12, 6, 5


def batch(seed: int, ids=(0, 2, 4), k: int = 4):
    """Features (B, D), P x K labels in shuffled order, centers (C, D)."""
    rng = RNG(seed)
    labels = rng.permutation(np.repeat(np.asarray(ids), k)).astype(np.int32)
    x = rng.standard_normal((labels.size, D)).astype(np.float32)
    centers = rng.standard_normal((C, D)).astype(np.float32)
    return x, labels, centers


# ---- NumPy loops (float64) ---------------------------------------------------------------------------------------

def np_triplet(x, y, margin, normalize=False):
    x = np.asarray(x, np.float64)
    if normalize:
        x = x / (np.sqrt((x * x).sum(1, keepdims=True)) + 1e-12)
    losses, active = [], []
    for i in range(len(y)):
        ap, an = -np.inf, np.inf
        for j in range(len(y)):
            d = np.sqrt(max(np.sum((x[i] - x[j]) ** 2), 1e-12))
            if y[j] == y[i]:
                ap = max(ap, d)
            else:
                an = min(an, d)
        gap = ap - an + (0.0 if margin is None else margin)
        losses.append(np.logaddexp(0.0, gap) if margin is None else max(gap, 0.0))
        active.append(gap > 0)
    return np.mean(losses), np.mean(active)


def np_center(x, y, c):
    x, c = np.asarray(x, np.float64), np.asarray(c, np.float64)
    return np.mean([np.clip(np.sum((x[i] - c[y[i]]) ** 2), 1e-12, 1e12) for i in range(len(y))])


def np_circle(x, y, m=0.25, gamma=128.0):
    x = np.asarray(x, np.float64)
    e = x / np.maximum(np.sqrt((x * x).sum(1, keepdims=True)), 1e-12)
    losses = []
    for i in range(len(y)):
        lp, ln = [], []
        for j in range(len(y)):
            s = float(e[i] @ e[j])
            if y[j] == y[i] and j != i:
                lp.append(-gamma * max(1 + m - s, 0.0) * (s - (1 - m)))
            elif y[j] != y[i]:
                ln.append(gamma * max(s + m, 0.0) * (s - m))
        lse = lambda v: np.max(v) + np.log(np.sum(np.exp(np.asarray(v) - np.max(v))))  # noqa: E731
        losses.append(np.logaddexp(0.0, lse(lp) + lse(ln)) if lp and ln else 0.0)
    return np.mean(losses)


def finite_difference(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = h
        grad[idx] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


# ---- the peers in PyTorch ----------------------------------------------------------------------------------------

def torch_rsb_triplet(x, y, margin, normalize=False):
    """reid-strong-baseline TripletLoss: euclidean_dist, hard mining by boolean
    indexing (equal counts per identity), MarginRankingLoss / SoftMarginLoss."""
    if normalize:
        x = x / (x.norm(2, dim=-1, keepdim=True) + 1e-12)
    n = x.shape[0]
    sq = (x * x).sum(1, keepdim=True)
    dist = (sq + sq.t() - 2 * x @ x.t()).clamp(min=1e-12).sqrt()
    pos = y[:, None] == y[None, :]
    ap = dist[pos].view(n, -1).max(1).values
    an = dist[~pos].view(n, -1).min(1).values
    ones = torch.ones_like(an)
    if margin is None:
        return F.soft_margin_loss(an - ap, ones)
    return F.margin_ranking_loss(an, ap, ones, margin=margin)


def torch_rsb_center(x, y, centers):
    """reid-strong-baseline CenterLoss: expanded (B, C) distances, label mask, clamp, sum / B."""
    dist = (x * x).sum(1, keepdim=True) + (centers * centers).sum(1)[None, :] - 2 * x @ centers.t()
    mask = (y[:, None] == torch.arange(centers.shape[0])[None, :]).float()
    return (dist * mask).clamp(min=1e-12, max=1e12).sum() / x.shape[0]


def torch_fastreid_circle(x, y, m=0.25, gamma=128.0):
    """fast-reid pairwise_circleloss: masked entries pushed to -99999999."""
    e = F.normalize(x, dim=1)
    s = e @ e.t()
    n = s.shape[0]
    is_pos = (y[:, None] == y[None, :]).float() - torch.eye(n)
    is_neg = (y[:, None] != y[None, :]).float()
    s_p, s_n = s * is_pos, s * is_neg
    alpha_p = torch.clamp_min(1 + m - s_p.detach(), 0.0)
    alpha_n = torch.clamp_min(s_n.detach() + m, 0.0)
    logit_p = -gamma * alpha_p * (s_p - (1 - m)) - 99999999.0 * (1 - is_pos)
    logit_n = gamma * alpha_n * (s_n - m) - 99999999.0 * (1 - is_neg)
    return F.softplus(torch.logsumexp(logit_p, 1) + torch.logsumexp(logit_n, 1)).mean()


def torch_value_grads(fn, *arrays, labels):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = fn(tensors[0], torch.tensor(labels, dtype=torch.long), *tensors[1:])
    value.backward()
    return float(value.detach()), [t.grad.numpy() for t in tensors]


def jax_value_grads(fn, *arrays, labels):
    value, grads = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(arrays)))))(
        *map(jnp.asarray, arrays), jnp.asarray(labels))
    return float(value), [np.asarray(g) for g in grads]


# ---- values and gradients ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("margin,normalize", [(0.3, False), (None, False), (0.3, True), (None, True), (0.0, False)])
def test_triplet_matches_numpy_and_reid_strong_baseline(margin, normalize):
    x, y, _ = batch(0)
    loss_fn = lambda f, lab: triplet_loss(f, lab, margin, normalize)[0]  # noqa: E731
    value, (grad,) = jax_value_grads(loss_fn, x, labels=y)
    expected, frac = np_triplet(x, y, margin, normalize)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    _, metrics = jax.jit(lambda f, lab: triplet_loss(f, lab, margin, normalize))(x, y)
    assert set(metrics) == {"triplet", "triplet_frac_active"}
    np.testing.assert_allclose(float(metrics["triplet"]), value, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["triplet_frac_active"]), frac)
    fd = finite_difference(lambda z: np_triplet(z, y, margin, normalize)[0], x)
    np.testing.assert_allclose(grad, fd, atol=2e-5)
    t_value, (t_grad,) = torch_value_grads(lambda f, lab: torch_rsb_triplet(f, lab, margin, normalize), x, labels=y)
    np.testing.assert_allclose(value, t_value, atol=1e-5)
    np.testing.assert_allclose(grad, t_grad, atol=1e-5)


def test_center_matches_numpy_and_reid_strong_baseline():
    x, y, centers = batch(1)
    value, (gx, gc) = jax_value_grads(lambda f, c, lab: center_loss(f, lab, c), x, centers, labels=y)
    np.testing.assert_allclose(value, np_center(x, y, centers), rtol=1e-5)
    np.testing.assert_allclose(gx, finite_difference(lambda z: np_center(z, y, centers), x), atol=2e-5)
    np.testing.assert_allclose(gc, finite_difference(lambda z: np_center(x, y, z), centers), atol=2e-5)
    t_value, (t_gx, t_gc) = torch_value_grads(torch_rsb_center, x, centers, labels=y)
    np.testing.assert_allclose(value, t_value, atol=1e-5)
    np.testing.assert_allclose(gx, t_gx, atol=1e-5)
    np.testing.assert_allclose(gc, t_gc, atol=1e-5)
    bad = y.copy()
    bad[0] = C  # out of range: NaN, as the "ce" term
    assert np.isnan(float(center_loss(jnp.asarray(x), jnp.asarray(bad), jnp.asarray(centers))))


@pytest.mark.parametrize("ids,k", [((0, 2, 4), 4), ((0, 1, 1, 1, 3, 3, 3), 2)])
def test_circle_matches_numpy_and_fastreid(ids, k):
    """The second batch has identities of 2 and 6 images, and a mix handled
    like fast-reid's; singletons are tested below."""
    x, y, _ = batch(2, ids, k)
    x = 0.5 * x + 1.0  # similarities spread over (-1, 1), some alphas clamped
    value, (grad,) = jax_value_grads(lambda f, lab: circle_loss(f, lab, 0.25, 128.0), x, labels=y)
    np.testing.assert_allclose(value, np_circle(x, y), rtol=1e-5)
    t_value, (t_grad,) = torch_value_grads(torch_fastreid_circle, x, labels=y)
    np.testing.assert_allclose(value, t_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-4, atol=1e-5)


def test_circle_anchor_without_positive_or_negative_like_fastreid_without_nan():
    x, _, _ = batch(3)
    y = np.asarray([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4], np.int32)  # identity 2 has one image
    value, (grad,) = jax_value_grads(lambda f, lab: circle_loss(f, lab), x, labels=y)
    t_value, (t_grad,) = torch_value_grads(torch_fastreid_circle, x, labels=y)
    np.testing.assert_allclose(value, np_circle(x, y), rtol=1e-5)
    np.testing.assert_allclose(value, t_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-4, atol=1e-5)
    value, (grad,) = jax_value_grads(lambda f, lab: circle_loss(f, lab), x, labels=np.zeros(B, np.int32))
    assert value == 0.0 and np.all(grad == 0.0)


def test_triplet_without_negatives_is_zero_without_nan():
    x, _, _ = batch(4)
    for margin in (0.3, None):
        value, (grad,) = jax_value_grads(lambda f, lab: triplet_loss(f, lab, margin)[0], x,
                                         labels=np.zeros(B, np.int32))
        assert value == 0.0 and np.all(grad == 0.0)


# ---- hard mining by hand -----------------------------------------------------------------------------------------

def test_hard_mining_on_a_line():
    # Points on a line, identities 0, 1, 2 with two images each.
    pos = np.asarray([0.0, 3.0, 8.0, 2.0, 7.0, 9.0], np.float32)
    y = np.asarray([0, 1, 2, 0, 1, 2], np.int32)
    x = np.stack([pos, np.zeros_like(pos)], 1)
    ap, an = jax.jit(lambda f, lab: hard_example_mining(
        jnp.sqrt(jnp.maximum(jnp.sum((f[:, None] - f[None]) ** 2, -1), 1e-12)), lab))(x, y)
    np.testing.assert_allclose(ap, [2, 4, 1, 2, 4, 1], atol=1e-5)
    np.testing.assert_allclose(an, [3, 1, 1, 1, 1, 2], atol=1e-5)
    loss, metrics = triplet_loss(jnp.asarray(x), jnp.asarray(y), 0.3)
    # relu(ap - an + 0.3) = [0, 3.3, 0.3, 1.3, 3.3, 0]
    np.testing.assert_allclose(float(loss), 8.2 / 6, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["triplet_frac_active"]), 4 / 6)


def test_hard_mining_gradient_reaches_the_chosen_pair_only():
    # Anchor 0 has two equally far positives (1 and 2) and two equally near negatives (3 and 4).
    dist = np.asarray([[0, 2, 2, 5, 5],
                       [2, 0, 4, 3, 7],
                       [2, 4, 0, 7, 1],
                       [5, 3, 7, 0, 6],
                       [5, 7, 1, 6, 0]], np.float32)
    y = np.asarray([0, 0, 0, 1, 2], np.int32)
    ap, an = hard_example_mining(jnp.asarray(dist), jnp.asarray(y))
    np.testing.assert_array_equal(ap, [2, 4, 4, 0, 0])
    np.testing.assert_array_equal(an, [5, 3, 1, 3, 1])
    g_ap = jax.grad(lambda d: jnp.sum(hard_example_mining(d, jnp.asarray(y))[0]))(jnp.asarray(dist))
    g_an = jax.grad(lambda d: jnp.sum(hard_example_mining(d, jnp.asarray(y))[1]))(jnp.asarray(dist))
    expected_ap, expected_an = np.zeros_like(dist), np.zeros_like(dist)
    for i, j in enumerate([1, 2, 1, 3, 4]):  # the first of a tie, as torch.max(dim)
        expected_ap[i, j] = 1
    for i, j in enumerate([3, 3, 4, 1, 2]):
        expected_an[i, j] = 1
    np.testing.assert_array_equal(g_ap, expected_ap)
    np.testing.assert_array_equal(g_an, expected_an)


# ---- global mining under sharding --------------------------------------------------------------------------------

def test_global_mining_sharded_over_8_devices_equals_one_device():
    script = """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from stra_jax.losses import LossContext, build_objective
    from stra_jax.sharding import batch_sharding, make_mesh, replicated

    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(4), 4)).astype(np.int32)   # 16 = 4 ids x 4, spread over devices
    feats = rng.standard_normal((16, 8)).astype(np.float32)
    centers = rng.standard_normal((5, 8)).astype(np.float32)
    objective = build_objective({"triplet": 1.0, "circle": 0.5, "center": 0.01}, LossContext(num_classes=5))

    def loss(f, c, lab):
        return objective({"embedding": f, "centers": c}, {"labels": lab}, {})[0]

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    one = jax.devices()[0]
    single = step(*(jax.device_put(a, one) for a in (feats, centers, labels)))
    mesh = make_mesh()
    args = (jax.device_put(feats, batch_sharding(mesh)), jax.device_put(centers, replicated(mesh)),
            jax.device_put(labels, batch_sharding(mesh)))
    assert len(args[0].sharding.device_set) == 8
    sharded = step(*args)
    out = {name: [float(r[0]), np.asarray(r[1][0]).tolist(), np.asarray(r[1][1]).tolist()]
           for name, r in (("single", single), ("sharded", sharded))}
    print(json.dumps(out))
    """
    out = json.loads(run_multidevice(script, devices=8).strip().splitlines()[-1])
    for a, b in zip(out["single"], out["sharded"]):  # equal up to float32 summation order
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    assert out["single"][0] > 0


# ---- the terms: label checks, options, the objective -------------------------------------------------------------

def make_term(name, **options):
    factory = LOSSES.get(name)
    return factory({**factory.options, **options}, LossContext(num_classes=C, key=f"train.losses.{name}"))


@pytest.mark.parametrize("name,what", [("triplet", "batch-hard triplet"), ("circle", "circle")])
def test_check_labels_refuses_batches_without_pairs(name, what):
    check = make_term(name).check_labels
    with pytest.raises(ValueError, match=rf"train\.losses\.{name}: a training batch holds 32 images of 32 "
                       rf"identities \(1 image each for 32 of them\); .*{what}.*>= 2 images per identity: "
                       r"use config\.input\.sampler='pk' \(sampler_options\.num_instances=4\)"):
        check(np.arange(32))
    with pytest.raises(ValueError, match=r"32 images of 3 identities \(1 image each for 1 of them\)"):
        check(np.asarray([0] * 16 + [1] * 15 + [2]))
    with pytest.raises(ValueError, match=rf"train\.losses\.{name}: a training batch holds 8 images of 1 identity; "
                       r".*>= 2 identities per batch \(negatives\): use config\.input\.sampler='pk'"):
        check(np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="integer identities"):
        check(np.zeros(8, np.float32))
    check(np.repeat(np.arange(8), 4))


def test_center_check_labels_needs_no_pairs():
    check = make_term("center").check_labels
    check(np.arange(32))
    check(np.zeros(8, np.int32))
    with pytest.raises(ValueError, match=r"train\.losses\.center: labels must be a 1-D array of integer"):
        check(np.zeros((2, 4), np.int32))


@pytest.mark.parametrize("name,options,match", [
    ("triplet", {"margin": -0.1}, r"train\.losses\.triplet\.margin=-0\.1: expected a number >= 0"),
    ("triplet", {"margin": "hard"}, r"train\.losses\.triplet\.margin='hard'"),
    ("triplet", {"margin": True}, r"train\.losses\.triplet\.margin=True"),
    ("triplet", {"normalize": "yes"}, r"train\.losses\.triplet\.normalize='yes'"),
    ("triplet", {"feature": 3}, r"train\.losses\.triplet\.feature=3"),
    ("triplet", {"p": 4}, r"unknown option\(s\) \['p'\]"),
    ("circle", {"margin": 1.5}, r"train\.losses\.circle\.margin=1\.5: expected a number in \[0, 1\)"),
    ("circle", {"gamma": 0}, r"train\.losses\.circle\.gamma=0: expected a number > 0"),
    ("center", {"feature": ""}, r"train\.losses\.center\.feature=''"),
])
def test_bad_options_are_refused(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_objective({name: {"weight": 1.0, **options}}, LossContext())


@pytest.mark.parametrize("margin", [None, "soft"])
def test_soft_margin_option(margin):
    x, y, _ = batch(5)
    objective = build_objective({"triplet": {"weight": 1.0, "margin": margin}}, LossContext())
    total, _ = objective({"embedding": jnp.asarray(x)}, {"labels": jnp.asarray(y)}, {})
    np.testing.assert_allclose(float(total), np_triplet(x, y, None)[0], rtol=1e-5)


def test_features_auto_prefers_pre_neck_and_names_outputs():
    x, y, centers = batch(6)
    outputs = {"embedding": jnp.asarray(x), "pre_neck": jnp.asarray(2.0 * x[::-1].copy()),
               "centers": jnp.asarray(centers)}
    labels = {"labels": jnp.asarray(y)}
    run = lambda config, out=outputs: build_objective(config, LossContext())(out, labels, {})[0]  # noqa: E731
    np.testing.assert_allclose(float(run({"triplet": 1.0})), np_triplet(2.0 * x[::-1], y, 0.3)[0], rtol=1e-5)
    np.testing.assert_allclose(float(run({"triplet": {"weight": 1.0, "feature": "embedding"}})),
                               np_triplet(x, y, 0.3)[0], rtol=1e-5)
    np.testing.assert_allclose(float(run({"center": 1.0})), np_center(2.0 * x[::-1], y, centers), rtol=1e-5)
    with pytest.raises(ValueError, match=r"train\.losses\.circle\.feature='neck': not an output of the model; "
                       r"its outputs: \['centers', 'embedding', 'pre_neck'\]"):
        run({"circle": {"weight": 1.0, "feature": "neck"}})
    with pytest.raises(ValueError, match=r"feature='auto': the model returned neither 'pre_neck' nor 'embedding'"):
        run({"triplet": 1.0}, {"logits": jnp.zeros((B, 3))})
    with pytest.raises(ValueError, match=r"train\.losses\.center: the center loss needs a model built with class "
                       r"centers \(outputs\['centers'\] \(C, D\)\); the model returned \['embedding'\]"):
        jax.jit(lambda f: build_objective({"center": 1.0}, LossContext())({"embedding": f}, labels, {}))(x)


def test_terms_in_the_objective_with_weights():
    x, y, centers = batch(7)
    logits = (3.0 * RNG(8).standard_normal((B, C))).astype(np.float32)
    config = {"ce": 1.0, "triplet": 1.0, "center": {"weight": 0.0005}, "circle": {"weight": 0.25, "gamma": 64.0}}
    objective = build_objective(config, LossContext(num_classes=C))
    outputs = {"logits": jnp.asarray(logits), "embedding": jnp.asarray(x), "centers": jnp.asarray(centers)}
    total, metrics = jax.jit(objective)(outputs, {"labels": jnp.asarray(y)}, {})
    assert set(metrics) == {"loss", "ce", "accuracy", "triplet", "triplet_frac_active", "center", "circle"}
    assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())
    ce = torchreid_ce(logits, y, 0.0).mean()
    triplet, center, circle = np_triplet(x, y, 0.3)[0], np_center(x, y, centers), np_circle(x, y, 0.25, 64.0)
    np.testing.assert_allclose(float(metrics["triplet"]), triplet, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["center"]), center, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["circle"]), circle, rtol=1e-5)
    np.testing.assert_allclose(float(total), ce + triplet + 0.0005 * center + 0.25 * circle, rtol=1e-5)
