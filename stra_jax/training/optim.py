"""Optimisers chosen by the config that reproduce torchreid's PyTorch recipes exactly.

* ``OPTIMIZERS``: the registry of update directions, ``"adam"``
  (``torch.optim.Adam``: b1, b2, eps) and ``"sgd"`` (``torch.optim.SGD``:
  momentum, nesterov), each with *coupled* L2 weight decay (``grad += wd *
  param``) on every parameter. ``config.train.optimizer = dict(name="adam",
  b1=0.9, b2=0.999)`` names one and gives only its own keys; a key of another
  optimiser (``b2`` under ``sgd``) is refused naming that optimiser.
* ``make_optimizer`` / ``optimizer_from_config``: the direction, torchreid's
  "fixbase" phase (pretrained layers frozen for the first steps) and the
  learning-rate schedule (``training/schedules.py``).
* ``freeze_until``: the reusable wrapper behind "fixbase".

A new optimiser is one function whose keyword-only parameters are its config
keys (``training/options.py``) and which returns the update direction without
the learning rate (it is applied once, after the partition, see below)::

    @OPTIMIZERS.register("rmsprop")
    def rmsprop(weight_decay: float, key: str, *, decay: float = 0.99, eps: float = 1e-8): ...

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

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from stra_jax.registry import Registry
from stra_jax.training.options import check_keys, split_config
from stra_jax.utils import check_moved_keys
from stra_jax.training.schedules import Schedule

OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer")
OPEN, FROZEN = "open", "frozen"
# Keys of config.train before optimisers were chosen by name -> where they live now.
MOVED_KEYS = {
    "b1": "train.optimizer.b1 (optimizer 'adam')",
    "b2": "train.optimizer.b2 (optimizer 'adam')",
    "eps": "train.optimizer.eps (optimizer 'adam')",
    "momentum": "train.optimizer.momentum (optimizer 'sgd')",
    "nesterov": "train.optimizer.nesterov (optimizer 'sgd')",
}


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
            raise ValueError(f"{name}={value!r}: expected a number >= 0")


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


def _in_unit(key: str, value: Any) -> float:
    """A decay rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{key}={value!r}: expected a number in [0, 1)")
    return float(value)


@OPTIMIZERS.register("adam")
def adam(weight_decay: float, key: str, *, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    """``torch.optim.Adam``'s direction: eps added to ``sqrt(v_hat)``, coupled decay."""
    b1, b2 = _in_unit(f"{key}.b1", b1), _in_unit(f"{key}.b2", b2)
    _check_nonneg(**{f"{key}.eps": eps})
    # Decay first: PyTorch adds wd * param to the gradient before the moments.
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0))


@OPTIMIZERS.register("sgd")
def sgd(weight_decay: float, key: str, *, momentum: float = 0.9,
        nesterov: bool = False) -> optax.GradientTransformation:
    """``torch.optim.SGD``'s direction (dampening 0; the buffer starts at the
    first gradient, which optax's zero-initialised trace reproduces). The
    default momentum is the recipes' 0.9 (PyTorch's own default is 0)."""
    momentum = _in_unit(f"{key}.momentum", momentum)
    if not isinstance(nesterov, bool):
        raise ValueError(f"{key}.nesterov={nesterov!r}: expected True or False")
    if nesterov and momentum <= 0:
        raise ValueError(f"{key}.nesterov=True requires momentum > 0 (as in PyTorch), got momentum={momentum}")
    decay = optax.add_decayed_weights(weight_decay)
    if momentum == 0:
        return decay  # PyTorch keeps no buffer either: update = -lr * grad
    return optax.chain(decay, optax.trace(decay=momentum, nesterov=nesterov))


def make_optimizer(
    name: str,
    schedule: float | Schedule,
    *,
    weight_decay: float,
    frozen_mask: Any = None,
    frozen_steps: int = 0,
    config_key: str | None = None,
    **options: Any,
) -> optax.GradientTransformation:
    """PyTorch-exact optimiser ``name`` with coupled L2 decay and optional "fixbase".

    Args:
        name: a registered optimiser, "adam" (``torch.optim.Adam``) or "sgd"
            (``torch.optim.SGD``).
        schedule: constant learning rate or ``schedule(global_step)``, e.g. from
            ``training.schedules.make_schedule``; update number t (0-based) uses
            ``schedule(t)``.
        weight_decay: coupled L2 coefficient, ``grad += weight_decay * param``,
            on every parameter (biases and norm scales included, torchreid's default).
        frozen_mask: optional pytree of bools with the params' structure; True
            marks a parameter kept frozen (no update, no decay, no state
            change) for the first ``frozen_steps`` updates.
        frozen_steps: length of the frozen phase in optimiser steps.
        config_key: the config key of the options (``"train.optimizer"``), for messages.
        **options: the optimiser's own keys: adam's b1, b2, eps; sgd's momentum, nesterov.

    Returns:
        A GradientTransformation whose ``update`` needs ``params``; its state is
        a pytree of arrays only.
    """
    direction_fn = OPTIMIZERS.get(name, key=f"{config_key}.name" if config_key else None)
    check_keys(OPTIMIZERS, name, options, config_key)
    lr0 = schedule if not callable(schedule) else float(schedule(jnp.zeros([], jnp.int32)))
    _check_nonneg(learning_rate=lr0, weight_decay=weight_decay, frozen_steps=frozen_steps)

    def direction() -> optax.GradientTransformation:
        return direction_fn(weight_decay, config_key or name, **options)

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


def _options(train: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    check_moved_keys(train, MOVED_KEYS)
    return split_config(train.get("optimizer"), OPTIMIZERS, "train.optimizer")


def optimizer_from_config(train_config: Mapping[str, Any], schedule: float | Schedule, *,
                          frozen_mask: Any = None, frozen_steps: int = 0) -> optax.GradientTransformation:
    """:func:`make_optimizer` from ``config.train``: ``optimizer = dict(name=...,
    **its keys)`` and ``weight_decay``."""
    name, options = _options(train_config)
    return make_optimizer(name, schedule, weight_decay=train_config["weight_decay"], frozen_mask=frozen_mask,
                          frozen_steps=frozen_steps, config_key="train.optimizer", **options)


def check_optimizer_config(train: Mapping[str, Any]) -> None:
    """Check ``config.train``'s optimiser before anything is built: moved flat
    keys, the name, its keys and their values (ValueError naming the key)."""
    name, options = _options(train)
    # Builds only Python closures (no arrays, no step): the checks of the real call.
    make_optimizer(name, 1.0, weight_decay=train.get("weight_decay", 0.0), config_key="train.optimizer", **options)
