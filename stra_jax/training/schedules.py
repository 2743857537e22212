"""Learning-rate schedules chosen by the config, equal to ``torch.optim.lr_scheduler``.

``config.train.schedule`` names a registered schedule and gives its own keys;
the peak learning rate stays ``config.train.lr``::

    dict(name="step", decay_every=20, gamma=0.2)        # StepLR, stepped per epoch
    dict(name="multistep", milestones=(8, 12), gamma=0.1)  # MultiStepLR, per epoch
    dict(name="cosine", end_lr=0.0)                     # CosineAnnealingLR per step
    dict(name="constant")

Any of them takes an optional linear warmup, ``warmup_epochs=E`` or
``warmup_steps=S`` (not both) and ``warmup_factor`` (default 0.1, fast-reid's
and the ReID bag-of-tricks recipe's): the rate climbs per optimiser step from
``warmup_factor * lr`` towards ``lr`` (``LinearLR(start_factor, total_iters)``),
then the main schedule starts from its own step 0, as ``SequentialLR`` does: the
epochs of ``decay_every`` / ``milestones`` and the cosine's length count from the
end of the warmup.

A schedule is ``schedule(step: int32 scalar) -> float32 scalar``, jit-friendly:
update number t (0-based) uses ``schedule(t)``. A new shape is one function::

    @SCHEDULES.register("exponential")
    def exponential(context: ScheduleContext, *, gamma: float) -> Schedule: ...

whose keyword-only parameters are its config keys (``training/options.py``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from stra_jax.registry import Registry
from stra_jax.training.options import check_keys, split_config
from stra_jax.utils import check_moved_keys

Schedule = Callable[[jax.Array], jax.Array]
SCHEDULES: Registry[Callable[..., Schedule]] = Registry("schedule")

WARMUP_KEYS = ("warmup_epochs", "warmup_steps", "warmup_factor")
WARMUP_FACTOR = 0.1
# Keys of config.train before schedules were chosen by name -> where they live now.
MOVED_KEYS = {
    "lr_decay_every": "train.schedule = dict(name='step', decay_every=..., gamma=...)",
    "lr_milestones": "train.schedule = dict(name='multistep', milestones=..., gamma=...)",
    "lr_gamma": "train.schedule.gamma (schedules 'step' and 'multistep')",
}


@dataclasses.dataclass(frozen=True)
class ScheduleContext:
    """What a schedule is built for.

    Attributes:
        base_lr: the peak learning rate (``config.train.lr``).
        steps_per_epoch: optimiser steps per epoch (> 0).
        total_steps: optimiser steps this schedule runs (the run minus any warmup).
        key: the config key of the schedule mapping, for messages.
    """

    base_lr: float
    steps_per_epoch: int
    total_steps: int
    key: str


def _positive_int(key: str, value: Any, lowest: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{key}={value!r}: expected {what}, an integer >= {lowest}")
    return value


def _number(key: str, value: Any, lowest: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            (value <= lowest if strict else value < lowest):
        raise ValueError(f"{key}={value!r}: expected a number {'>' if strict else '>='} {lowest}")
    return float(value)


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


@SCHEDULES.register("step")
def step(context: ScheduleContext, *, decay_every: int, gamma: float) -> Schedule:
    """``StepLR(step_size=decay_every, gamma)`` stepped once per epoch."""
    return step_decay_schedule(
        context.base_lr, context.steps_per_epoch, gamma=_number(f"{context.key}.gamma", gamma, 0.0, True),
        decay_every_epochs=_positive_int(f"{context.key}.decay_every", decay_every, 1, "epochs"))


@SCHEDULES.register("multistep")
def multistep(context: ScheduleContext, *, milestones: Sequence[int], gamma: float) -> Schedule:
    """``MultiStepLR(milestones, gamma)`` stepped once per epoch (milestones in epochs)."""
    key = f"{context.key}.milestones"
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise ValueError(f"{key}={milestones!r}: expected a sequence of epochs, integers >= 0")
    for m in milestones:
        _positive_int(key, m, 0, "epochs")
    return step_decay_schedule(context.base_lr, context.steps_per_epoch, milestones_epochs=tuple(milestones),
                               gamma=_number(f"{context.key}.gamma", gamma, 0.0, True))


@SCHEDULES.register("cosine")
def cosine(context: ScheduleContext, *, end_lr: float = 0.0) -> Schedule:
    """``CosineAnnealingLR(T_max=total_steps, eta_min=end_lr)`` stepped per
    optimiser step: ``end_lr + (lr - end_lr) * (1 + cos(pi * t / T_max)) / 2``,
    held at ``end_lr`` after ``T_max`` (PyTorch would climb again)."""
    end = _number(f"{context.key}.end_lr", end_lr, 0.0, False)
    base, span = context.base_lr, context.total_steps

    def schedule(step: jax.Array) -> jax.Array:
        t = jnp.minimum(jnp.asarray(step, jnp.int32), span).astype(jnp.float32)
        return jnp.float32(end) + jnp.float32(base - end) * 0.5 * (1.0 + jnp.cos(jnp.float32(math.pi) * t / span))

    return schedule


@SCHEDULES.register("constant")
def constant(context: ScheduleContext) -> Schedule:
    """``config.train.lr`` throughout."""
    def schedule(step: jax.Array) -> jax.Array:
        return jnp.full([], context.base_lr, jnp.float32)

    return schedule


def linear_warmup(main: Schedule, base_lr: float, warmup_steps: int, factor: float) -> Schedule:
    """``LinearLR(start_factor=factor, total_iters=warmup_steps)`` for the first
    ``warmup_steps`` steps, then ``main(step - warmup_steps)`` (``SequentialLR``)."""
    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.int32)
        ramp = jnp.float32(factor) + jnp.float32(1.0 - factor) * step.astype(jnp.float32) / warmup_steps
        return jnp.where(step < warmup_steps, jnp.float32(base_lr) * ramp,
                         main(jnp.maximum(step - warmup_steps, 0)))

    return schedule


def _warmup(options: dict[str, Any], steps_per_epoch: int, key: str) -> tuple[int, float]:
    """Pop the warmup keys from ``options`` -> ``(warmup_steps, factor)``."""
    epochs, steps = options.pop("warmup_epochs", None), options.pop("warmup_steps", None)
    factor = options.pop("warmup_factor", None)
    if epochs is not None and steps is not None:
        raise ValueError(f"{key}: give warmup_epochs or warmup_steps, not both")
    length = 0
    if epochs is not None:
        length = _positive_int(f"{key}.warmup_epochs", epochs, 0, "epochs") * steps_per_epoch
    elif steps is not None:
        length = _positive_int(f"{key}.warmup_steps", steps, 0, "optimiser steps")
    if factor is not None and epochs is None and steps is None:
        raise ValueError(f"{key}.warmup_factor without warmup_epochs or warmup_steps: give the warmup's length")
    factor = WARMUP_FACTOR if factor is None else _number(f"{key}.warmup_factor", factor, 0.0, True)
    if factor > 1.0:  # PyTorch's LinearLR takes a start_factor in (0, 1]
        raise ValueError(f"{key}.warmup_factor={factor!r}: expected a number in (0, 1]")
    return length, factor


def scaled_lr(lr: float, batch_size: int, reference_batch: int = 0) -> float:
    """The peak learning rate a run uses: ``lr * batch_size / reference_batch``
    (the linear scaling rule, Goyal et al. 2017, "Accurate, Large Minibatch SGD",
    Sec. 2.1) when ``config.train.lr_reference_batch`` is set (> 0), so that a
    run on more devices with a larger global batch keeps the recipe's lr per
    example; ``reference_batch`` 0: ``lr`` as it is (the default)."""
    return float(lr) * batch_size / reference_batch if reference_batch else float(lr)


def make_schedule(schedule_config: Mapping[str, Any] | Any, *, base_lr: float, steps_per_epoch: int,
                  total_steps: int, key: str = "train.schedule") -> Schedule:
    """The schedule named by ``schedule_config`` (``dict(name=..., **its keys)``).

    Args:
        schedule_config: e.g. ``config.train.schedule``; see the module docstring.
        base_lr: the peak learning rate (``config.train.lr``).
        steps_per_epoch: optimiser steps per epoch.
        total_steps: optimiser steps of the whole run (warmup included).
        key: the config key of the mapping, for messages.

    Returns:
        ``schedule(step: int32 scalar) -> float32 scalar``. Without warmup this
        is exactly the registered schedule (bit-identical to the old recipes).
    """
    name, options = split_config(schedule_config, SCHEDULES, key)
    check_keys(SCHEDULES, name, options, key, common=WARMUP_KEYS)
    _number("base_lr", base_lr, 0.0, False)
    _positive_int("steps_per_epoch", steps_per_epoch, 1, "optimiser steps")
    warmup_steps, factor = _warmup(options, steps_per_epoch, key)
    if warmup_steps >= total_steps:
        raise ValueError(f"{key}: the warmup ({warmup_steps} steps) must end before the run does "
                         f"({total_steps} steps = {total_steps // steps_per_epoch} epochs of {steps_per_epoch})")
    context = ScheduleContext(base_lr=float(base_lr), steps_per_epoch=steps_per_epoch,
                              total_steps=total_steps - warmup_steps, key=key)
    main = SCHEDULES.get(name)(context, **options)
    return linear_warmup(main, base_lr, warmup_steps, factor) if warmup_steps else main


def check_schedule_config(train: Mapping[str, Any]) -> None:
    """Check ``config.train``'s schedule before the data is read: moved flat
    keys, the name, its keys and their values (ValueError naming the key)."""
    check_moved_keys(train, MOVED_KEYS)
    options = train.get("schedule")
    warmup_steps = options.get("warmup_steps") if hasattr(options, "get") else None
    # The epoch length is known only once the data is read: stand in one long
    # enough for any warmup_steps (make_schedule checks again with the real one).
    per_epoch = warmup_steps + 1 if isinstance(warmup_steps, int) and warmup_steps > 0 else 1
    epochs = train.get("epochs", 1)
    make_schedule(options, base_lr=train.get("lr", 0.0), steps_per_epoch=per_epoch,
                  total_steps=per_epoch * max(int(epochs), 1))
