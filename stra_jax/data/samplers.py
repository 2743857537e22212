"""Samplers: how an epoch's global batches are drawn (``config.input.sampler``).

A sampler decides which training examples form each *global* batch of an
epoch. It sees the whole global batch, so what it builds (e.g. P identities x
K images) is the same on any device or host count; each host then loads its
contiguous slice of every global batch (:func:`host_epoch_slice`).

A sampler is registered in :data:`SAMPLERS` as a factory::

    @SAMPLERS.register("my_sampler")
    def my_sampler(num_examples: int, labels: Callable[[], np.ndarray], **options) -> Sampler: ...

``labels()`` returns the (num_examples,) int identity of every training
example; call it only when the sampler needs it (a face set may hold millions
of records, read one by one). ``options`` are ``config.input.sampler_options``.
The sampler it returns offers (see :class:`Sampler`):

* ``steps_per_epoch(global_batch) -> int``: global batches per epoch (the
  trainer's epoch length);
* ``epoch_order(global_batch, seed, epoch) -> (steps, global_batch) int``:
  example indices, a function of ``(seed, epoch)`` only (exact resume);
* ``group_size``: examples per group that must stay together in one
  micro-batch (``train.accum_steps`` splits a global batch into micro-batches
  of whole groups: groups are ``group_size`` consecutive positions of a global
  batch); 1 when any split will do.

``"random"`` (the default) is the per-epoch permutation of torchreid's
shuffled loader with the remainder dropped.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from stra_jax.registry import Registry

__all__ = ["SAMPLERS", "RandomSampler", "Sampler", "build_sampler", "check_sampler_config", "host_epoch_slice",
           "sampler_for"]


class Sampler(Protocol):
    """What the input pipelines and the trainer ask of a sampler."""

    #: training examples it draws from (indices 0 .. num_examples - 1)
    num_examples: int
    #: examples per group kept whole in one micro-batch (1: no grouping)
    group_size: int

    def steps_per_epoch(self, global_batch: int) -> int:
        """Global batches in one epoch."""

    def epoch_order(self, global_batch: int, seed: int, epoch: int) -> np.ndarray:
        """(steps_per_epoch, global_batch) example indices; depends on (seed, epoch) only."""


SamplerFactory = Callable[..., Sampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@dataclasses.dataclass(frozen=True)
class RandomSampler:
    """A fresh permutation of all examples each epoch, cut into global batches;
    the last partial batch is dropped (as torchreid does)."""

    num_examples: int
    group_size: int = dataclasses.field(default=1, init=False)

    def steps_per_epoch(self, global_batch: int) -> int:
        return self.num_examples // global_batch

    def epoch_order(self, global_batch: int, seed: int, epoch: int) -> np.ndarray:
        steps = self.steps_per_epoch(global_batch)
        order = np.random.default_rng([seed, epoch]).permutation(self.num_examples)
        return order[: steps * global_batch].reshape(steps, global_batch)


@SAMPLERS.register("random")
def random_sampler(num_examples: int, labels: Callable[[], np.ndarray]) -> RandomSampler:
    """The default: shuffled order, no grouping (``labels`` unused: never read)."""
    del labels
    return RandomSampler(num_examples)


def build_sampler(input_config: Mapping[str, Any] | None, num_examples: int,
                  labels: Callable[[], np.ndarray]) -> Sampler:
    """The sampler ``input_config.sampler`` (default ``"random"``) built with
    ``input_config.sampler_options`` (default none) over ``num_examples``
    examples; ``labels()`` is called only if that sampler needs the labels.

    An unknown name fails listing the known samplers; an option the sampler
    does not take fails naming the key."""
    name, factory, options = check_sampler_config(input_config)
    sampler = factory(int(num_examples), labels, **options)
    group = getattr(sampler, "group_size", None)
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 1:
        raise ValueError(f"config.input.sampler={name!r}: its group_size={group!r} is not a positive integer")
    return sampler


def check_sampler_config(input_config: Mapping[str, Any] | None) -> tuple[str, SamplerFactory, dict[str, Any]]:
    """``(name, factory, options)`` of ``config.input.sampler`` / ``sampler_options``,
    checked without data: an unknown name or option fails before anything is read."""
    input_config = input_config if input_config is not None else {}
    name = input_config.get("sampler", "random") or "random"
    if not isinstance(name, str):
        raise ValueError(f"config.input.sampler={name!r}: expected a sampler name, one of {SAMPLERS.names()}")
    factory = SAMPLERS.get(name, key="config.input.sampler")
    options = input_config.get("sampler_options") or {}
    options = dict(options.to_dict() if hasattr(options, "to_dict") else options)
    _check_options(name, factory, options)
    return name, factory, options


def _check_options(name: str, factory: SamplerFactory, options: dict[str, Any]) -> None:
    """Name the first key of ``options`` that ``factory`` does not take."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the factory checks its own options
    known = [p for p in list(params)[2:]  # after (num_examples, labels)
             if params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in options:
        if key not in known:
            raise ValueError(f"config.input.sampler_options.{key}: not an option of sampler {name!r}; "
                             f"its options: {known}")


def sampler_for(sampler: Sampler | None, num_examples: int) -> Sampler:
    """``sampler`` after checking that it draws from ``num_examples`` examples
    (the training set a pipeline reads); None -> the ``"random"`` sampler."""
    if sampler is None:
        return RandomSampler(num_examples)
    if sampler.num_examples != num_examples:
        raise ValueError(f"the sampler draws from {sampler.num_examples} examples but the training set has "
                         f"{num_examples}")
    return sampler


def host_epoch_slice(sampler: Sampler, global_batch: int, seed: int, epoch: int, start_step: int,
                     process_index: int, process_count: int) -> tuple[np.ndarray, np.ndarray]:
    """This host's part of an epoch from ``start_step`` on: ``(indices (n,),
    per-example seeds (n, 2))``, n = remaining steps * global_batch /
    process_count. Host p takes the p-th contiguous slice of each global batch
    of ``sampler.epoch_order``; an example's seed is (seed, epoch, its position
    in the epoch), so it gets the same augmentation whichever host, thread or
    restart loads it."""
    if global_batch % process_count:
        raise ValueError(f"global_batch={global_batch} is not divisible by process_count={process_count}")
    if sampler.steps_per_epoch(global_batch) < 1:
        raise ValueError(f"{sampler.num_examples} training images are fewer than one global batch of "
                         f"{global_batch}")
    local = global_batch // process_count
    order = sampler.epoch_order(global_batch, seed, epoch)
    positions = np.arange(order.size).reshape(order.shape)
    host = slice(process_index * local, (process_index + 1) * local)
    order, positions = order[start_step:, host].ravel(), positions[start_step:, host].ravel()
    seeds = np.stack([np.full_like(positions, seed * 1_000_003 + epoch), positions], axis=1).astype(np.int64)
    return order, seeds
