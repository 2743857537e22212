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
shuffled loader with the remainder dropped. ``"pk"`` draws P identities x K
images per global batch (:class:`PKSampler`, torchreid's
``RandomIdentitySampler``), what batch-hard triplet and the other metric losses
need.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from stra_jax.registry import Registry

__all__ = ["SAMPLERS", "PKSampler", "RandomSampler", "Sampler", "build_sampler", "check_sampler_config", "host_epoch_slice",
           "host_run_slices", "sampler_for"]


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


@dataclasses.dataclass(frozen=True)
class PKSampler:
    """P identities x K images per global batch (torchreid's
    ``RandomIdentitySampler``, fast-reid's identity samplers).

    One *pass* over the training set (torchreid's epoch): each identity's
    images are shuffled (an identity with fewer than K images is first drawn
    K times with replacement, as torchreid does) and cut into chunks of K, the
    remainder dropped; then, while at least P identities have chunks left, P
    of them are chosen uniformly without replacement and each gives its next
    chunk: one global batch, P groups of K consecutive positions. The epoch
    is ``num_examples // global_batch`` batches (fast-reid's iterations per
    epoch; torchreid's pass is about as long), taken from as many passes as
    it needs, pass r drawn from the stream (seed, epoch, r).

    The whole global batch is drawn here, so the sequence does not depend on
    how many devices or hosts share it; it is a function of (seed, epoch)
    only, so a resumed run gets the same batches. ``group_size`` is K: a
    micro-batch of ``train.accum_steps`` holds whole identities' groups.

    Attributes:
        num_examples: training examples (indices 0 .. num_examples - 1).
        labels: (num_examples,) int identity of each example.
        num_instances: K, images per identity in a batch.
        num_identities: P, identities per batch; 0: global batch / K.
        replacement: draw an identity with fewer than K images with
            replacement (True, torchreid) or refuse the dataset (False).
    """

    num_examples: int
    labels: np.ndarray
    num_instances: int = 4
    num_identities: int = 0
    replacement: bool = True

    @property
    def group_size(self) -> int:
        return self.num_instances

    @functools.cached_property
    def identities(self) -> list[np.ndarray]:
        """Each identity's example indices, identities in sorted label order
        (computed once: every epoch and every check reads it)."""
        order = np.argsort(self.labels, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(self.labels[order]) != 0])
        return np.split(order, starts[1:])

    def per_batch(self, global_batch: int) -> int:
        """P for ``global_batch`` (the checks of a P x K setting, with the numbers)."""
        k = self.num_instances
        key = "config.input.sampler_options"
        if global_batch % k:
            raise ValueError(f"train.batch_size={global_batch} is not P identities x K={k} images "
                             f"({key}.num_instances): use a multiple of {k}")
        p = global_batch // k
        if self.num_identities and self.num_identities != p:
            raise ValueError(f"{key}.num_identities={self.num_identities} x num_instances={k} = "
                             f"{self.num_identities * k}, but train.batch_size={global_batch}: P x K must be the "
                             f"global batch (set train.batch_size={self.num_identities * k})")
        count = len(self.identities)
        if p > count:
            raise ValueError(f"the P x K sampler needs P={p} identities per batch (train.batch_size={global_batch} / "
                             f"num_instances={k}) but the training set has {count} identities: lower "
                             f"train.batch_size to at most {count * k} or raise {key}.num_instances")
        return p

    def steps_per_epoch(self, global_batch: int) -> int:
        self.per_batch(global_batch)
        return self.num_examples // global_batch

    def epoch_order(self, global_batch: int, seed: int, epoch: int) -> np.ndarray:
        p, k = self.per_batch(global_batch), self.num_instances
        steps = self.steps_per_epoch(global_batch)
        groups = self.identities
        batches: list[np.ndarray] = []
        for r in range(steps + 1):  # every pass yields at least one batch (P <= identities)
            if len(batches) >= steps:
                break
            batches += _one_pass(groups, p, k, np.random.default_rng([seed, epoch, r, 0x504B]), steps - len(batches))
        return np.stack(batches).astype(np.int64)


def _one_pass(groups: list[np.ndarray], p: int, k: int, rng: np.random.Generator, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` P x K batches (flat (P*K,) indices) of one pass of torchreid's
    ``RandomIdentitySampler`` over ``groups`` (each identity's indices)."""
    chunks = []
    for idx in groups:
        if len(idx) < k:
            idx = rng.choice(idx, size=k, replace=True)
        idx = rng.permutation(idx)
        chunks.append(list(idx[: len(idx) // k * k].reshape(-1, k)))
    available = [i for i, c in enumerate(chunks) if c]
    batches = []
    while len(available) >= p and len(batches) < limit:
        chosen = rng.choice(len(available), size=p, replace=False)
        picked = [available[c] for c in chosen]
        batches.append(np.concatenate([chunks[i].pop(0) for i in picked]))
        available = [i for i in available if chunks[i]]
    return batches


@SAMPLERS.register("pk")
def pk_sampler(num_examples: int, labels: Callable[[], np.ndarray], num_instances: int = 4,
               num_identities: int = 0, replacement: bool = True) -> PKSampler:
    """P identities x K images per global batch (:class:`PKSampler`);
    ``config.input.sampler_options``: ``num_instances`` (K), ``num_identities``
    (P, 0: the global batch / K), ``replacement``."""
    key = "config.input.sampler_options"
    for name, value, lowest in (("num_instances", num_instances, 1), ("num_identities", num_identities, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ValueError(f"{key}.{name}={value!r}: expected an integer >= {lowest}")
    if not isinstance(replacement, bool):
        raise ValueError(f"{key}.replacement={replacement!r}: expected true or false")
    values = np.asarray(labels(), np.int64)
    if values.shape != (num_examples,):
        raise ValueError(f"the P x K sampler got {values.shape} labels for {num_examples} training examples")
    sampler = PKSampler(int(num_examples), values, int(num_instances), int(num_identities), replacement)
    if not replacement:
        sizes = np.array([len(g) for g in sampler.identities])
        short = int((sizes < num_instances).sum())
        if short:
            raise ValueError(f"{key}.replacement=False: {short} of {len(sizes)} identities have fewer than "
                             f"num_instances={num_instances} images (the fewest: {sizes.min()}); set "
                             f"replacement=True (draw them with replacement, as torchreid does) or "
                             f"num_instances <= {sizes.min()}")
    return sampler


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


def host_run_slices(sampler: Sampler, global_batch: int, seed: int, epoch: int, start_step: int, epochs: int,
                    process_index: int, process_count: int) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """``slice_of(k)``: :func:`host_epoch_slice` of epoch ``epoch + k`` (k = 0 ..
    epochs - 1), the first from ``start_step`` on: what one input pipeline for
    a whole run reads, an epoch at a time when it reaches it (its epochs are
    the ones separate per-epoch pipelines would give, batch for batch). The
    arguments are checked here, not when a pipeline first asks for a slice."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: expected at least 1")
    host_epoch_slice(sampler, global_batch, seed, epoch, start_step, process_index, process_count)

    def slice_of(k: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= k < epochs:
            raise IndexError(f"slice {k} of a run of {epochs} epochs")
        return host_epoch_slice(sampler, global_batch, seed, epoch + k, start_step if k == 0 else 0,
                                process_index, process_count)

    return slice_of
