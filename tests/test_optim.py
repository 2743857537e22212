"""Optimisers and schedules against torch.optim / torch.optim.lr_scheduler."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from stra_jax.training.optim import freeze_until, make_optimizer
from stra_jax.training.schedules import step_decay_schedule

WD = 5e-4
SHAPES = {
    "backbone": {"conv": {"kernel": (3, 3, 2, 4)}, "bn": {"scale": (4,), "bias": (4,)}},
    "head": {"fc": {"kernel": (4, 6), "bias": (6,)}},
}
FROZEN_MASK = {
    "backbone": {"conv": {"kernel": True}, "bn": {"scale": True, "bias": True}},
    "head": {"fc": {"kernel": False, "bias": False}},
}


def _is_shape(x) -> bool:
    return isinstance(x, tuple)


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.5, s).astype(np.float32), SHAPES, is_leaf=_is_shape)


def make_grads(steps: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda s: rng.normal(0.0, 1.0, s).astype(np.float32), SHAPES, is_leaf=_is_shape)
            for _ in range(steps)]


def run_jax(tx, params, grads, jit: bool = True):
    """Returns the params after every step (list of numpy trees)."""
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    history = []
    for g in grads:
        params, state = step(params, state, g)
        history.append(jax.tree.map(np.asarray, params))
    return history


def run_torch(make_opt, make_sched, params, grads, steps_per_epoch, frozen=None, frozen_steps=0):
    """torch.optim reference; ``frozen`` params get requires_grad=False and no
    .grad for the first ``frozen_steps`` steps (torchreid's fixbase)."""
    leaves, treedef = jax.tree.flatten(params)
    flags = jax.tree.leaves(frozen) if frozen is not None else [False] * len(leaves)
    tensors = [torch.nn.Parameter(torch.tensor(x)) for x in leaves]
    opt = make_opt(tensors)
    sched = make_sched(opt)
    history = []
    for t, g in enumerate(grads):
        for p, gl, is_frozen in zip(tensors, jax.tree.leaves(g), flags):
            if is_frozen and t < frozen_steps:
                p.requires_grad_(False)
                p.grad = None
            else:
                p.requires_grad_(True)
                p.grad = torch.tensor(gl)
        opt.step()
        if (t + 1) % steps_per_epoch == 0:
            sched.step()
        history.append(jax.tree.unflatten(treedef, [p.detach().numpy().copy() for p in tensors]))
    return history


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


SCHEDULES = {
    # (jax kwargs, torch scheduler factory); steps_per_epoch = 4, 30 steps = 7.5 epochs
    "step": (dict(decay_every_epochs=2), lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1)),
    "multistep": (dict(milestones_epochs=[3, 5]),
                  lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 5], gamma=0.1)),
}
OPTIMIZERS = {
    "adam": (dict(name="adam", b1=0.9, b2=0.99, eps=1e-8), 3e-3,
             lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=WD)),
    "sgd": (dict(name="sgd", momentum=0.9), 0.05,
            lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=WD)),
    "sgd_nesterov": (dict(name="sgd", momentum=0.9, nesterov=True), 0.05,
                     lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=WD, nesterov=True)),
}


@pytest.mark.parametrize("sched_name", sorted(SCHEDULES))
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_matches_torch(opt_name, sched_name):
    spe, steps = 4, 30
    sched_kw, torch_sched = SCHEDULES[sched_name]
    opt_kw, lr, torch_opt = OPTIMIZERS[opt_name]
    params, grads = make_params(), make_grads(steps)
    tx = make_optimizer(schedule=step_decay_schedule(lr, spe, gamma=0.1, **sched_kw), weight_decay=WD, **opt_kw)
    ours = run_jax(tx, params, grads)
    ref = run_torch(lambda ps: torch_opt(ps, lr), torch_sched, params, grads, spe)
    for t in range(steps):
        assert_trees_close(ours[t], ref[t])
    # The test can fail: the params moved, and the decay did matter.
    assert np.abs(ours[-1]["head"]["fc"]["bias"] - params["head"]["fc"]["bias"]).max() > 1e-3
    no_decay = run_jax(make_optimizer(schedule=lr, weight_decay=WD, **opt_kw), params, grads)
    assert not np.allclose(no_decay[-1]["head"]["fc"]["kernel"], ours[-1]["head"]["fc"]["kernel"], rtol=1e-4)


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_fixbase_matches_torch(opt_name):
    # Epoch = 2 steps, decay every 2 epochs: boundaries at steps 4, 8, 12. The
    # frozen group first moves at step 5, so it must use the global lr (0.1 x).
    spe, n_frozen = 2, 5
    opt_kw, lr, torch_opt = OPTIMIZERS[opt_name]
    params, grads = make_params(2), make_grads(3 * n_frozen, seed=3)
    tx = make_optimizer(schedule=step_decay_schedule(lr, spe, decay_every_epochs=2, gamma=0.1),
                        weight_decay=WD, frozen_mask=FROZEN_MASK, frozen_steps=n_frozen, **opt_kw)
    ours = run_jax(tx, params, grads)
    ref = run_torch(lambda ps: torch_opt(ps, lr),
                    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1),
                    params, grads, spe, frozen=FROZEN_MASK, frozen_steps=n_frozen)
    for t in range(3 * n_frozen):
        assert_trees_close(ours[t], ref[t])
    # Frozen phase: backbone bit-identical, head moving.
    for t in range(n_frozen):
        for a, b in zip(jax.tree.leaves(ours[t]["backbone"]), jax.tree.leaves(params["backbone"])):
            assert np.array_equal(a, b)
        assert not np.array_equal(ours[t]["head"]["fc"]["bias"], params["head"]["fc"]["bias"])
    assert not np.array_equal(ours[n_frozen]["backbone"]["bn"]["scale"], params["backbone"]["bn"]["scale"])


def test_fixbase_jit_and_eager_agree_and_mask_none_is_unfrozen():
    params, grads = make_params(), make_grads(6)
    kw = dict(schedule=1e-3, weight_decay=WD)
    eager = run_jax(make_optimizer("adam", frozen_mask=FROZEN_MASK, frozen_steps=2, **kw), params, grads, jit=False)
    jitted = run_jax(make_optimizer("adam", frozen_mask=FROZEN_MASK, frozen_steps=2, **kw), params, grads)
    assert_trees_close(eager[-1], jitted[-1])
    # frozen_steps=0 with a mask == no mask at all.
    plain = run_jax(make_optimizer("adam", **kw), params, grads)
    zero = run_jax(make_optimizer("adam", frozen_mask=FROZEN_MASK, frozen_steps=0, **kw), params, grads)
    assert_trees_close(plain[-1], zero[-1], rtol=0, atol=0)


def test_freeze_until_fresh_inner_state():
    inner = optax.scale_by_adam()
    tx = freeze_until(inner, 3)
    p = {"w": jnp.arange(3.0)}
    state = tx.init(p)
    init_inner = inner.init(p)
    g = {"w": jnp.array([1.0, -2.0, 0.5])}
    update = jax.jit(tx.update)
    for _ in range(3):
        u, state = update(g, state, p)
        assert np.array_equal(u["w"], np.zeros(3))
        for a, b in zip(jax.tree.leaves(state.inner), jax.tree.leaves(init_inner)):
            assert np.array_equal(a, b)
    g2 = {"w": jnp.array([0.3, 0.1, -4.0])}
    u, state = update(g2, state, p)
    expected, fresh_state = inner.update(g2, init_inner, p)
    np.testing.assert_array_equal(u["w"], expected["w"])
    assert int(state.inner.count) == 1 == int(fresh_state.count)


def test_jit_with_donation_and_array_only_state():
    tx = make_optimizer("adam", step_decay_schedule(1e-3, 3, milestones_epochs=[1], gamma=0.1),
                        weight_decay=WD, frozen_mask=FROZEN_MASK, frozen_steps=2)
    params = jax.tree.map(jnp.asarray, make_params())
    state = tx.init(params)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))

    @jax.jit
    def ref_step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    donated = jax.jit(step.__wrapped__, donate_argnums=(0, 1))
    ref_p, ref_s = params, tx.init(params)
    p, s = jax.tree.map(jnp.copy, params), tx.init(params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
        for g in make_grads(5):
            ref_p, ref_s = ref_step(ref_p, ref_s, g)
            p, s = donated(p, s, g)
    assert_trees_close(jax.tree.map(np.asarray, p), jax.tree.map(np.asarray, ref_p), rtol=0, atol=0)
    assert jax.tree.structure(s) == jax.tree.structure(ref_s)


@pytest.mark.parametrize("kind", ["step", "multistep", "repeated"])
def test_schedule_matches_torch(kind):
    spe, epochs, base = 3, 12, 0.2
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    if kind == "step":
        sched = step_decay_schedule(base, spe, decay_every_epochs=4, gamma=0.5)
        ref = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    else:
        ms = [2, 7] if kind == "multistep" else [2, 7, 7]
        sched = step_decay_schedule(base, spe, milestones_epochs=ms, gamma=0.3)
        ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=0.3)
    sched = jax.jit(sched)
    for epoch in range(epochs):
        want = ref.get_last_lr()[0]
        for step in range(epoch * spe, (epoch + 1) * spe):
            np.testing.assert_allclose(float(sched(step)), want, rtol=1e-6)
        opt.step()
        ref.step()


def test_bad_inputs():
    with pytest.raises(ValueError, match="adam.*sgd"):
        make_optimizer("adamw", 1e-3, weight_decay=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam", -1e-3, weight_decay=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer("sgd", 1e-3, weight_decay=-1e-4)
    with pytest.raises(ValueError, match="base_lr"):
        step_decay_schedule(-0.1, 10, decay_every_epochs=2, gamma=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        step_decay_schedule(0.1, 10, decay_every_epochs=2, milestones_epochs=[3], gamma=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        step_decay_schedule(0.1, 10, gamma=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer("sgd", 0.1, weight_decay=0.0, momentum=0.0, nesterov=True)
    bad_mask = {"backbone": FROZEN_MASK["backbone"], "head": {"fc": {"kernel": False}}}
    tx = make_optimizer("adam", 1e-3, weight_decay=0.0, frozen_mask=bad_mask, frozen_steps=2)
    with pytest.raises(ValueError, match=r"frozen_mask does not match.*bias"):
        tx.init(make_params())
    with pytest.raises(ValueError, match="bool"):
        make_optimizer("adam", 1e-3, weight_decay=0.0, frozen_mask={"a": "yes"}, frozen_steps=2)
