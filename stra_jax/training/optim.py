"""Optimisers that reproduce torchreid's PyTorch training recipes exactly.

* ``step_decay_schedule``: PyTorch ``StepLR`` / ``MultiStepLR`` stepped once per
  epoch, written as a function of the global optimiser step.
* ``make_optimizer``: ``torch.optim.Adam`` / ``torch.optim.SGD`` with *coupled*
  L2 weight decay (``grad += wd * param``) on every parameter, plus torchreid's
  "fixbase" phase (pretrained layers frozen for the first steps).
* ``freeze_until``: the reusable wrapper behind "fixbase".

Layout of the freezing optimiser (all transforms see the global step through
the single outer learning-rate counter)::

    chain(
      partition({"open":   chain(add_decayed_weights(wd), scale_by_adam()),
                 "frozen": freeze_until(chain(add_decayed_weights(wd),
                                              scale_by_adam()), frozen_steps)},
                labels_from(frozen_mask)),
      scale_by_learning_rate(schedule),   # its count is the GLOBAL step
    )

Adam's and SGD's updates are linear in the learning rate, so applying the
learning rate once, after the partition, is exactly PyTorch's
``p -= lr * m_hat / (sqrt(v_hat) + eps)`` and ``p -= lr * buf``; and because that
last transform counts every step, the frozen group is driven by the global
schedule, as with PyTorch's single shared scheduler. Each group has its own
Adam state (and its own bias-correction count), so the frozen group's state
starts fresh on unfreezing, as PyTorch creates per-parameter state on the first
step a parameter actually has a gradient.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "sgd")
OPEN, FROZEN = "open", "frozen"

Schedule = Callable[[jax.Array], jax.Array]


def step_decay_schedule(
    base_lr: float,
    steps_per_epoch: int,
    *,
    decay_every_epochs: int | None = None,
    milestones_epochs: Sequence[int] | None = None,
    gamma: float,
) -> Schedule:
    """Piecewise-constant learning rate, ``base_lr * gamma ** n_passed_boundaries``.

    ``epoch = step // steps_per_epoch``. With ``decay_every_epochs=k`` the
    boundaries are epochs k, 2k, ... (PyTorch ``StepLR(step_size=k)``); with
    ``milestones_epochs`` they are those epochs (``MultiStepLR``; a repeated
    milestone decays twice, as PyTorch's Counter does). Exactly one of the two
    must be given.

    Returns:
        ``schedule(step: int scalar) -> float32 scalar``, jit-friendly.
    """
    if base_lr < 0:
        raise ValueError(f"base_lr must be >= 0, got {base_lr}")
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if (decay_every_epochs is None) == (milestones_epochs is None):
        raise ValueError("give exactly one of decay_every_epochs and milestones_epochs")

    if decay_every_epochs is not None:
        if decay_every_epochs <= 0:
            raise ValueError(f"decay_every_epochs must be > 0, got {decay_every_epochs}")
        every = int(decay_every_epochs)

        def schedule(step: jax.Array) -> jax.Array:
            epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
            n = (epoch // every).astype(jnp.float32)
            return jnp.float32(base_lr) * jnp.power(jnp.float32(gamma), n)

        return schedule

    milestones = sorted(int(m) for m in milestones_epochs)
    if any(m < 0 for m in milestones):
        raise ValueError(f"milestones_epochs must be >= 0, got {milestones}")
    # Every reachable rate precomputed in float64 (as PyTorch's Python floats),
    # so the table lookup only rounds once, to float32.
    rates = jnp.asarray([base_lr * gamma**i for i in range(len(milestones) + 1)], jnp.float32)
    bounds = jnp.asarray(milestones, jnp.int32)

    def schedule(step: jax.Array) -> jax.Array:
        epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
        n = jnp.sum(epoch >= bounds) if milestones else 0
        return rates[n]

    return schedule


class FreezeState(NamedTuple):
    """State of :func:`freeze_until`: its own step counter and the inner state."""

    count: jax.Array  # int32 scalar, saturates at frozen_steps
    inner: Any


def freeze_until(inner: optax.GradientTransformation, frozen_steps: int) -> optax.GradientTransformation:
    """Zero updates, inner state untouched, for the first ``frozen_steps`` updates.

    From update number ``frozen_steps`` on (0-based) it delegates to ``inner``,
    whose state is then exactly its ``init`` state: an Adam inside starts its
    moments and bias-correction count afresh, like a PyTorch parameter whose
    ``requires_grad`` was False so far. Weight decay placed inside ``inner`` is
    skipped while frozen, again as in PyTorch.

    The switch is a ``jax.lax.cond`` on a traced counter, so one compiled step
    serves both phases.
    """
    if frozen_steps < 0:
        raise ValueError(f"frozen_steps must be >= 0, got {frozen_steps}")

    def init_fn(params: Any) -> FreezeState:
        return FreezeState(count=jnp.zeros([], jnp.int32), inner=inner.init(params))

    def update_fn(updates: Any, state: FreezeState, params: Any = None) -> tuple[Any, FreezeState]:
        def frozen(operands):
            upd, inner_state, _ = operands
            return jax.tree.map(jnp.zeros_like, upd), inner_state

        def thawed(operands):
            upd, inner_state, prm = operands
            return inner.update(upd, inner_state, prm)

        new_updates, new_inner = jax.lax.cond(
            state.count < frozen_steps, frozen, thawed, (updates, state.inner, params)
        )
        # Saturating: the counter only needs to reach frozen_steps, and never overflows.
        count = jnp.minimum(state.count + 1, jnp.int32(frozen_steps)).astype(jnp.int32)
        return new_updates, FreezeState(count=count, inner=new_inner)

    return optax.GradientTransformation(init_fn, update_fn)


def _check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _labels_fn(frozen_mask: Any) -> Callable[[Any], Any]:
    """Map params -> {"open", "frozen"} labels, checking the mask's tree structure."""
    mask_paths = jax.tree_util.tree_flatten_with_path(frozen_mask)[0]
    mask_def = jax.tree.structure(frozen_mask)
    for path, leaf in mask_paths:
        if not isinstance(leaf, bool) and getattr(leaf, "dtype", None) != bool:
            raise ValueError(f"frozen_mask leaf at {jax.tree_util.keystr(path)} is {leaf!r}, expected a bool")
    labels = jax.tree.map(lambda frozen: FROZEN if bool(frozen) else OPEN, frozen_mask)

    def fn(params: Any) -> Any:
        if jax.tree.structure(params) != mask_def:
            have = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
            want = {jax.tree_util.keystr(p) for p, _ in mask_paths}
            raise ValueError(
                "frozen_mask does not match the params tree: "
                f"missing from mask {sorted(have - want)[:10]}, not in params {sorted(want - have)[:10]}"
                + ("" if have != want else f"; same paths, different containers: {mask_def} vs {jax.tree.structure(params)}")
            )
        return labels

    return fn


def make_optimizer(
    name: str,
    schedule: float | Schedule,
    *,
    weight_decay: float,
    frozen_mask: Any = None,
    frozen_steps: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """PyTorch-exact Adam or SGD with coupled L2 decay and optional "fixbase".

    Args:
        name: "adam" (``torch.optim.Adam``) or "sgd" (``torch.optim.SGD``).
        schedule: constant learning rate or ``schedule(global_step)``, e.g.
            :func:`step_decay_schedule`; update number t (0-based) uses ``schedule(t)``.
        weight_decay: coupled L2 coefficient, ``grad += weight_decay * param``,
            on every parameter (biases and norm scales included, torchreid's default).
        frozen_mask: optional pytree of bools with the params' structure; True
            marks a parameter kept frozen (no update, no decay, no state
            change) for the first ``frozen_steps`` updates.
        frozen_steps: length of the frozen phase in optimiser steps.
        b1, b2, eps: Adam's betas and epsilon (added to ``sqrt(v_hat)``).
        momentum, nesterov: SGD's (dampening 0; the buffer starts at the first
            gradient, which optax's zero-initialised trace reproduces).

    Returns:
        A GradientTransformation whose ``update`` needs ``params``; its state is
        a pytree of arrays only.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    lr0 = schedule if not callable(schedule) else float(schedule(jnp.zeros([], jnp.int32)))
    _check_nonneg(learning_rate=lr0, weight_decay=weight_decay, eps=eps, momentum=momentum,
                  frozen_steps=frozen_steps)
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"betas must be in [0, 1), got ({b1}, {b2})")
    if nesterov and momentum <= 0:
        raise ValueError("nesterov momentum requires momentum > 0 (as in PyTorch)")

    def direction() -> optax.GradientTransformation:
        # Decay first: PyTorch adds wd * param to the gradient before the moments.
        decay = optax.add_decayed_weights(weight_decay)
        if name == "adam":
            return optax.chain(decay, optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0))
        if momentum == 0:
            return decay  # PyTorch keeps no buffer either: update = -lr * grad
        return optax.chain(decay, optax.trace(decay=momentum, nesterov=nesterov))

    if frozen_mask is None:
        core = direction()
    else:
        core = optax.partition(
            {OPEN: direction(), FROZEN: freeze_until(direction(), frozen_steps)},
            _labels_fn(frozen_mask),
        )
    # One counter for the whole optimiser = the global step, shared by both
    # groups exactly as PyTorch's one scheduler drives all param groups.
    return optax.chain(core, optax.scale_by_learning_rate(schedule))
