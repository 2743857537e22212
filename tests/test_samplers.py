"""Samplers by config (``config.input.sampler``): the default keeps today's
order bit for bit; a grouped sampler registered from outside sets the epoch
length and keeps its groups whole in every ``accum_steps`` micro-batch."""
from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
import pytest

from configs import reid_synthetic
from stra_jax.data.samplers import SAMPLERS, build_sampler, host_epoch_slice
from stra_jax.tasks import TASKS, Task
from stra_jax.training.loop import train_and_evaluate
from stra_jax.training.step import check_micro_batches, micro_batches


def _no_labels() -> np.ndarray:
    raise AssertionError("the random sampler must not read the labels")


@dataclasses.dataclass(frozen=True)
class PairSampler:
    """Toy grouped sampler: pairs of two images of one identity, the pairs
    shuffled per (seed, epoch); a global batch is whole pairs."""

    num_examples: int
    pairs: np.ndarray  # (num_pairs, 2) example indices, both of one label
    group_size: int = 2

    def steps_per_epoch(self, global_batch: int) -> int:
        return self.pairs.size // global_batch

    def epoch_order(self, global_batch: int, seed: int, epoch: int) -> np.ndarray:
        steps = self.steps_per_epoch(global_batch)
        flat = self.pairs[np.random.default_rng([seed, epoch, 7]).permutation(len(self.pairs))].ravel()
        return flat[: steps * global_batch].reshape(steps, global_batch)


def pair_sampler(num_examples, labels, *, min_pairs: int = 1) -> PairSampler:
    labels = labels()
    pairs = [idx[: len(idx) // 2 * 2].reshape(-1, 2) for idx in
             (np.flatnonzero(labels == c) for c in np.unique(labels))]
    pairs = np.concatenate(pairs)
    if len(pairs) < min_pairs:
        raise ValueError(f"config.input.sampler_options.min_pairs={min_pairs}: only {len(pairs)} pairs")
    return PairSampler(num_examples, pairs)


@pytest.fixture
def toy_pairs():
    SAMPLERS.register("toy_pairs", pair_sampler)
    yield "toy_pairs"
    SAMPLERS.unregister("toy_pairs")


# 22 examples: labels 0-4 four images each (2 pairs each), labels 5 and 6 one image (no pair) -> 10 pairs
LABELS = np.array([0, 1, 2, 3, 4] * 4 + [5, 6])


def test_random_is_the_permutation_of_seed_and_epoch_without_reading_labels():
    for config in (None, {}, {"sampler": "random"}, ml_collections.ConfigDict({"sampler": "random",
                                                                                "sampler_options": {}})):
        sampler = build_sampler(config, 103, _no_labels)
        assert sampler.group_size == 1 and sampler.steps_per_epoch(16) == 6
        for seed, epoch in ((0, 0), (3, 5)):
            expected = np.random.default_rng([seed, epoch]).permutation(103)[:96].reshape(6, 16)
            np.testing.assert_array_equal(sampler.epoch_order(16, seed, epoch), expected)


def test_host_slices_are_the_global_batches_and_keep_the_augmentation_seeds():
    sampler = build_sampler({}, 50, _no_labels)
    order = sampler.epoch_order(8, 1, 2)
    hosts = [host_epoch_slice(sampler, 8, 1, 2, 1, p, 2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([h[0].reshape(-1, 4) for h in hosts], 1), order[1:])
    positions = np.arange(8, 48).reshape(5, 8)
    np.testing.assert_array_equal(hosts[1][1], np.stack([np.full(20, 1_000_003 + 2), positions[:, 4:].ravel()], 1))


def test_a_grouped_sampler_keeps_its_groups_whole_in_every_micro_batch(toy_pairs):
    sampler = build_sampler({"sampler": toy_pairs}, len(LABELS), lambda: LABELS)
    assert sampler.group_size == 2 and sampler.steps_per_epoch(8) == 2  # 20 paired of 22 examples
    order = sampler.epoch_order(8, 0, 0)
    for batch in order:
        labels = LABELS[batch]
        grouped = np.asarray(micro_batches(labels, accum_steps=2, group_size=2))
        assert grouped.shape == (2, 4)
        assert all((mb[0::2] == mb[1::2]).all() for mb in grouped), grouped  # pairs stay whole
        # every example once, in order within each micro-batch: groups j, j+2 of the batch
        np.testing.assert_array_equal(np.asarray(micro_batches(batch, 2, 2)),
                                      [batch[[0, 1, 4, 5]], batch[[2, 3, 6, 7]]])
    # the split of group size 1 (today's: examples j, j+k, ...) would separate the pairs
    assert not all((mb[0::2] == mb[1::2]).all() for mb in np.asarray(micro_batches(LABELS[order[0]], 2)))


def test_group_size_one_is_the_old_interleaved_split():
    x = np.arange(24).reshape(12, 2)
    np.testing.assert_array_equal(np.asarray(micro_batches(x, 3)), np.swapaxes(x.reshape(4, 3, 2), 0, 1))


def test_accum_steps_that_would_split_groups_is_refused_with_the_numbers():
    check_micro_batches(8, 2, 2)
    check_micro_batches(12, 3, 1)
    check_micro_batches(12, 4, 3)
    with pytest.raises(ValueError, match=r"train.batch_size=12 is not train.accum_steps=3 micro-batches of whole "
                                         r"groups of 3 examples .*a multiple of 3 groups"):
        check_micro_batches(12, 3, 3)
    with pytest.raises(ValueError, match=r"train.batch_size=10 is not a whole number of groups of 4 examples"):
        check_micro_batches(10, 1, 4)


def test_unknown_sampler_and_option_are_named(toy_pairs):
    with pytest.raises(ValueError, match=r"config.input.sampler='pxk': unknown sampler; known samplers: "
                                         r"\['pk', 'random', 'toy_pairs'\]"):
        build_sampler({"sampler": "pxk"}, 10, _no_labels)
    with pytest.raises(ValueError, match=r"config.input.sampler_options.shuffle: not an option of sampler "
                                         r"'random'; its options: \[\]"):
        build_sampler({"sampler_options": {"shuffle": False}}, 10, _no_labels)
    with pytest.raises(ValueError, match=r"config.input.sampler_options.p: not an option of sampler "
                                         r"'toy_pairs'; its options: \['min_pairs'\]"):
        build_sampler({"sampler": toy_pairs, "sampler_options": {"p": 4}}, len(LABELS), lambda: LABELS)
    with pytest.raises(ValueError, match=r"min_pairs=99: only 10 pairs"):
        build_sampler({"sampler": toy_pairs, "sampler_options": {"min_pairs": 99}}, len(LABELS), lambda: LABELS)


class LabelledTask(Task):
    """Just enough of a task for the sampler and the loop's first checks."""

    def load(self) -> str:
        return "labelled: 22 examples"

    @property
    def num_classes(self) -> int:
        return 7

    @property
    def num_train_examples(self) -> int:
        return len(LABELS)

    def train_labels(self) -> np.ndarray:
        self.labels_read = True
        return LABELS

    def train_batches(self, **kwargs):
        raise AssertionError("the run must be refused before training")

    def loss(self, outputs, batch, collections):
        raise AssertionError("the run must be refused before training")


def _config(sampler: str, batch_size: int, accum_steps: int = 1) -> ml_collections.ConfigDict:
    """The demo's smoke config (every key the trainer checks) on the labelled toy task."""
    config = reid_synthetic.get_config("smoke")
    config.task, config.evals = "labelled", ml_collections.ConfigDict()
    config.input.sampler = sampler
    config.train.update(batch_size=batch_size, accum_steps=accum_steps, frozen_epochs=0)
    return config


def test_the_epoch_length_is_the_samplers(toy_pairs):
    task = LabelledTask(_config("random", 8))
    assert task.steps_per_epoch(8) == 2 and not hasattr(task, "labels_read")  # 22 // 8, labels unread
    task = LabelledTask(_config(toy_pairs, 8))
    assert task.steps_per_epoch(6) == 3 and task.labels_read  # 20 paired examples // 6
    assert task.sampler is task.sampler  # built once


def test_the_loop_takes_the_epoch_length_and_groups_from_the_sampler(toy_pairs, tmp_path):
    TASKS.register("labelled", LabelledTask)
    try:
        with pytest.raises(ValueError, match=r"train.batch_size=6 is not train.accum_steps=2 micro-batches of "
                                             r"whole groups of 2 examples"):
            train_and_evaluate(_config(toy_pairs, 6, accum_steps=2), tmp_path / "a")
        with pytest.raises(ValueError, match=r"train.batch_size=21 is not a whole number of groups of 2 examples"):
            train_and_evaluate(_config(toy_pairs, 21), tmp_path / "b")
        # 22 examples fill a batch of 22, but the sampler's 20 paired ones do not: no whole step
        with pytest.raises(ValueError, match=r"22 training examples < one batch of train.batch_size=22"):
            train_and_evaluate(_config(toy_pairs, 22), tmp_path / "c")
    finally:
        TASKS.unregister("labelled")


def test_an_unknown_sampler_fails_before_any_data_is_read(tmp_path):
    config = reid_synthetic.get_config("smoke")
    config.dataset.root = str(tmp_path / "data")  # the synthetic set would be generated here
    config.input.sampler = "pxk"
    with pytest.raises(ValueError, match=r"config.input.sampler='pxk': unknown sampler; known samplers: \["):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()
