"""The P x K identity sampler (``config.input.sampler = "pk"``): every global
batch is P identities x K images, drawn from the global batch alone (the same
on any device or host count), a function of (seed, epoch) only (exact resume),
identities with fewer than K images drawn with replacement; settings the
dataset cannot satisfy fail with the numbers."""
from __future__ import annotations

import numpy as np
import pytest

from stra_jax.data.samplers import PKSampler, build_sampler, host_epoch_slice
from stra_jax.training.step import check_micro_batches, micro_batches

# 9 identities: sizes 1, 2, 3, 5, 6, 7, 8, 9, 12 (53 images), in scrambled order
SIZES = (1, 2, 3, 5, 6, 7, 8, 9, 12)
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(SIZES)), SIZES))


def pk(k: int = 4, **options) -> PKSampler:
    return build_sampler({"sampler": "pk", "sampler_options": dict(num_instances=k, **options)},
                         len(LABELS), lambda: LABELS)


def test_every_batch_is_p_identities_times_k_images():
    sampler = pk(4)
    assert sampler.group_size == 4
    assert sampler.steps_per_epoch(12) == 53 // 12  # fast-reid: images // global batch
    for seed, epoch in ((0, 0), (1, 3), (7, 11)):
        order = sampler.epoch_order(12, seed, epoch)
        assert order.shape == (4, 12) and order.dtype == np.int64
        for batch in order:
            groups = LABELS[batch].reshape(3, 4)  # P = 3 groups of K = 4 consecutive positions
            assert (groups == groups[:, :1]).all(), groups
            assert len(set(groups[:, 0])) == 3  # P distinct identities
            for group in batch.reshape(3, 4):
                if SIZES[LABELS[group[0]]] >= 4:  # enough images: K distinct ones
                    assert len(set(group)) == 4, group


def test_small_identities_are_drawn_with_replacement():
    # identity 0 has one image: wherever it appears its group is that image four times
    sampler = pk(4)
    seen = 0
    for epoch in range(30):
        for batch in sampler.epoch_order(12, 0, epoch):
            for group in batch.reshape(3, 4):
                if LABELS[group[0]] == 0:
                    seen += 1
                    assert len(set(group)) == 1
    assert seen > 0


def test_the_order_is_a_function_of_seed_and_epoch():
    a, b = pk(4), pk(4)
    np.testing.assert_array_equal(a.epoch_order(12, 5, 2), b.epoch_order(12, 5, 2))
    assert not np.array_equal(a.epoch_order(12, 5, 2), a.epoch_order(12, 5, 3))
    assert not np.array_equal(a.epoch_order(12, 5, 2), a.epoch_order(12, 6, 2))


def test_an_epoch_longer_than_one_pass_continues_with_the_next_pass():
    # K = 2, P = 2: one pass has at most 25 chunks (12 batches); the epoch of 53 // 4 = 13 batches needs two
    sampler = pk(2)
    order = sampler.epoch_order(4, 0, 0)
    assert order.shape == (13, 4)
    for batch in order:
        groups = LABELS[batch].reshape(2, 2)
        assert (groups[:, 0] == groups[:, 1]).all() and groups[0, 0] != groups[1, 0]


def test_hosts_and_resume_see_the_same_global_batches():
    sampler = pk(4)
    order = sampler.epoch_order(12, 2, 1)
    # two hosts: host p loads the p-th half of every global batch, from step 1 on (a resume)
    halves = [host_epoch_slice(sampler, 12, 2, 1, 1, p, 2)[0].reshape(-1, 6) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves, axis=1), order[1:])
    # one host resuming at step 2 gets exactly the rest of the epoch
    np.testing.assert_array_equal(host_epoch_slice(sampler, 12, 2, 1, 2, 0, 1)[0], order[2:].ravel())


def test_micro_batches_keep_whole_identities_and_splitting_them_is_refused():
    sampler = pk(4)
    batch = sampler.epoch_order(12, 0, 0)[0]
    check_micro_batches(12, 3, sampler.group_size)
    for micro in np.asarray(micro_batches(LABELS[batch], 3, 4)):
        assert (micro == micro[0]).all()
    with pytest.raises(ValueError, match=r"train.batch_size=12 is not train.accum_steps=2 micro-batches of whole "
                                         r"groups of 4 examples"):
        check_micro_batches(12, 2, sampler.group_size)


def test_settings_the_dataset_cannot_satisfy_name_the_numbers():
    with pytest.raises(ValueError, match=r"needs P=10 identities per batch \(train.batch_size=40 / num_instances=4\) "
                                         r"but the training set has 9 identities: lower train.batch_size to at "
                                         r"most 36"):
        pk(4).steps_per_epoch(40)
    with pytest.raises(ValueError, match=r"train.batch_size=10 is not P identities x K=4 images .*a multiple of 4"):
        pk(4).epoch_order(10, 0, 0)
    with pytest.raises(ValueError, match=r"num_identities=4 x num_instances=4 = 16, but train.batch_size=12"):
        pk(4, num_identities=4).steps_per_epoch(12)
    assert pk(4, num_identities=3).steps_per_epoch(12) == 4
    with pytest.raises(ValueError, match=r"replacement=False: 3 of 9 identities have fewer than num_instances=4 "
                                         r"images \(the fewest: 1\)"):
        pk(4, replacement=False)
    assert pk(1, replacement=False).group_size == 1
    for options, key in ((dict(num_instances=0), "num_instances=0"), (dict(num_instances=2.5), "num_instances=2.5"),
                         (dict(num_instances=4, num_identities=-1), "num_identities=-1"),
                         (dict(num_instances=4, replacement="yes"), "replacement='yes'")):
        with pytest.raises(ValueError, match=f"config.input.sampler_options.{key}"):
            build_sampler({"sampler": "pk", "sampler_options": options}, len(LABELS), lambda: LABELS)
    with pytest.raises(ValueError, match=r"sampler_options.p: not an option of sampler 'pk'"):
        build_sampler({"sampler": "pk", "sampler_options": {"p": 4}}, len(LABELS), lambda: LABELS)
