"""Schedules and optimisers chosen by the config, against torch.optim.lr_scheduler step by step."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from stra_jax.training.optim import check_optimizer_config, make_optimizer, optimizer_from_config
from stra_jax.training.schedules import SCHEDULES, check_schedule_config, make_schedule, step_decay_schedule

BASE, SPE, EPOCHS = 0.2, 4, 10
TOTAL = SPE * EPOCHS


def torch_lrs(make_sched, per_epoch: bool) -> list[float]:
    """The lr torch uses at each of TOTAL optimiser steps, the scheduler stepped
    once per epoch or once per optimiser step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    sched = make_sched(opt)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) on the next scheduler is deprecated
        for t in range(TOTAL):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if not per_epoch or (t + 1) % SPE == 0:
                sched.step()
    return lrs


def ours(config: dict) -> list[float]:
    schedule = jax.jit(make_schedule(config, base_lr=BASE, steps_per_epoch=SPE, total_steps=TOTAL))
    return [float(schedule(jnp.int32(t))) for t in range(TOTAL)]


def warmed(main, warmup_steps: int, factor: float):
    """torch's linear warmup followed by ``main``, both stepped per iteration."""
    return lambda o: tls.SequentialLR(
        o, [tls.LinearLR(o, start_factor=factor, end_factor=1.0, total_iters=warmup_steps), main(o)],
        milestones=[warmup_steps])


@pytest.mark.parametrize("config, reference", [
    (dict(name="step", decay_every=3, gamma=0.5), lambda o: tls.StepLR(o, step_size=3, gamma=0.5)),
    (dict(name="multistep", milestones=(2, 5, 5), gamma=0.3),
     lambda o: tls.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.3)),
], ids=["step", "multistep"])
def test_epoch_schedules_match_torch_stepped_per_epoch(config, reference):
    np.testing.assert_allclose(ours(config), torch_lrs(reference, per_epoch=True), rtol=1e-6)


@pytest.mark.parametrize("end_lr", [0.0, 0.01])
def test_cosine_matches_torch_stepped_per_step(end_lr):
    want = torch_lrs(lambda o: tls.CosineAnnealingLR(o, T_max=TOTAL, eta_min=end_lr), per_epoch=False)
    got = ours(dict(name="cosine", end_lr=end_lr))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    late = make_schedule(dict(name="cosine", end_lr=end_lr), base_lr=BASE, steps_per_epoch=SPE, total_steps=TOTAL)
    assert float(late(TOTAL + 3)) == pytest.approx(end_lr, abs=1e-8)  # held, not climbing again


# warmup in epochs (2 x SPE steps) and in steps (5: not a whole epoch), each main schedule
@pytest.mark.parametrize("warmup, steps", [(dict(warmup_epochs=2), 2 * SPE), (dict(warmup_steps=5), 5)],
                         ids=["epochs", "steps"])
@pytest.mark.parametrize("config, main", [
    (dict(name="step", decay_every=3, gamma=0.5), lambda w: lambda o: tls.StepLR(o, step_size=3 * SPE, gamma=0.5)),
    (dict(name="multistep", milestones=(1, 4), gamma=0.3),
     lambda w: lambda o: tls.MultiStepLR(o, milestones=[1 * SPE, 4 * SPE], gamma=0.3)),
    (dict(name="cosine", end_lr=0.001), lambda w: lambda o: tls.CosineAnnealingLR(o, T_max=TOTAL - w, eta_min=0.001)),
    (dict(name="constant"), lambda w: lambda o: tls.ConstantLR(o, factor=1.0, total_iters=0)),
], ids=["step", "multistep", "cosine", "constant"])
def test_warmup_then_schedule_matches_torch_sequential_lr(warmup, steps, config, main):
    factor = 0.25
    want = torch_lrs(warmed(main(steps), steps, factor), per_epoch=False)
    got = ours(dict(config, warmup_factor=factor, **warmup))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    assert got[0] == pytest.approx(factor * BASE) and got[steps] == pytest.approx(BASE)


def test_default_warmup_factor_and_no_warmup_is_the_old_recipe_bit_for_bit():
    got = ours(dict(name="constant", warmup_steps=4))
    assert got[0] == pytest.approx(0.1 * BASE) and got[4:] == [pytest.approx(BASE)] * (TOTAL - 4)
    old = step_decay_schedule(BASE, SPE, decay_every_epochs=3, gamma=0.5)  # what the loop built before
    new = make_schedule(dict(name="step", decay_every=3, gamma=0.5), base_lr=BASE, steps_per_epoch=SPE,
                        total_steps=TOTAL)
    assert all(np.array_equal(old(jnp.int32(t)), new(jnp.int32(t))) for t in range(TOTAL))


@pytest.mark.parametrize("config, message", [
    (dict(name="exponential"), r"train.schedule.name='exponential': unknown schedule; known schedules: "
                               r"\['constant', 'cosine', 'multistep', 'step'\]"),
    ("step", r"train.schedule='step': train.schedule is a mapping now, dict\(name='step'"),
    (dict(decay_every=3), r"train.schedule has no name"),
    (dict(name="step", decay_every=3, gamma=0.1, decay=2),
     r"train.schedule.decay: unknown key of schedule 'step'; its keys: \['decay_every', 'gamma', 'warmup_epochs'"),
    (dict(name="cosine", gamma=0.1), r"train.schedule.gamma is a key of schedule 'multistep' and 'step', "
                                     r"not of 'cosine' \(its keys: \['end_lr', 'warmup_epochs'"),
    (dict(name="step", gamma=0.1), r"train.schedule.decay_every is required by schedule 'step'"),
    (dict(name="step", decay_every=0, gamma=0.1), r"train.schedule.decay_every=0: expected epochs, an integer >= 1"),
    (dict(name="multistep", milestones=(2, -1), gamma=0.1), r"train.schedule.milestones=-1: expected epochs"),
    (dict(name="multistep", milestones=(2,), gamma=0.0), r"train.schedule.gamma=0.0: expected a number > 0"),
    (dict(name="cosine", warmup_epochs=1, warmup_steps=3), r"warmup_epochs or warmup_steps, not both"),
    (dict(name="cosine", warmup_factor=0.5), r"warmup_factor without warmup_epochs or warmup_steps"),
    (dict(name="cosine", warmup_steps=3, warmup_factor=0.0), r"warmup_factor=0.0: expected a number > 0"),
    (dict(name="cosine", warmup_epochs=EPOCHS), r"the warmup \(40 steps\) must end before the run does \(40 steps"),
])
def test_bad_schedule_configs_name_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(config, base_lr=BASE, steps_per_epoch=SPE, total_steps=TOTAL)


def _train(**overrides) -> ml_collections.ConfigDict:
    train = dict(epochs=3, lr=0.1, weight_decay=5e-4, optimizer=dict(name="sgd", momentum=0.9, nesterov=False),
                 schedule=dict(name="multistep", milestones=(1, 2), gamma=0.1))
    return ml_collections.ConfigDict(dict(train, **overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(optimizer=dict(name="sgd", momentum=0.9, b2=0.99)),
     r"train.optimizer.b2 is a key of optimizer 'adam', not of 'sgd' \(its keys: \['momentum', 'nesterov'\]\)"),
    (dict(optimizer=dict(name="adam", betas=(0.9, 0.99))),
     r"train.optimizer.betas: unknown key of optimizer 'adam'; its keys: \['b1', 'b2', 'eps'\]"),
    (dict(optimizer=dict(name="adamw")), r"train.optimizer.name='adamw': unknown optimizer; known optimizers: "
                                         r"\['adam', 'sgd'\]"),
    (dict(optimizer="sgd"), r"train.optimizer='sgd': train.optimizer is a mapping now, dict\(name='sgd'"),
    (dict(optimizer=dict(name="sgd", momentum=1.0)), r"train.optimizer.momentum=1.0: expected a number in \[0, 1\)"),
    (dict(optimizer=dict(name="adam", b2=1.5)), r"train.optimizer.b2=1.5: expected a number in \[0, 1\)"),
    (dict(optimizer=dict(name="sgd", momentum=0.0, nesterov=True)), r"train.optimizer.nesterov=True requires momentum"),
    (dict(momentum=0.9), r"train.momentum has moved: write it as train.optimizer.momentum \(optimizer 'sgd'\)"),
    (dict(b2=0.99), r"train.b2 has moved: write it as train.optimizer.b2 \(optimizer 'adam'\)"),
])
def test_bad_optimizer_configs_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_optimizer_config(_train(**overrides))


@pytest.mark.parametrize("old, message", [
    (dict(lr_decay_every=20), r"train.lr_decay_every has moved: write it as train.schedule = dict\(name='step'"),
    (dict(lr_milestones=(8, 12)),
     r"train.lr_milestones has moved: write it as train.schedule = dict\(name='multistep'"),
    (dict(lr_gamma=0.1), r"train.lr_gamma has moved: write it as train.schedule.gamma"),
    (dict(schedule=dict(name="step", decay_every=1, gamma=0.1, warmup_epochs=3)), r"the warmup \(\d+ steps\) must end"),
])
def test_schedule_config_checks_before_the_data_is_read(old, message):
    with pytest.raises(ValueError, match=message):
        check_schedule_config(_train(**old))
    check_schedule_config(_train(schedule=dict(name="cosine", warmup_steps=10_000)))  # epoch length unknown yet


def test_train_config_checks_run_the_schedule_and_optimizer_checks():
    from configs import reid_synthetic
    from stra_jax.training.validate import check_train_config

    config = reid_synthetic.get_config("smoke")
    check_train_config(config)
    config.train.optimizer.momentum = 0.9  # an sgd key in the adam recipe
    with pytest.raises(ValueError, match=r"train.optimizer.momentum is a key of optimizer 'sgd', not of 'adam'"):
        check_train_config(config)


def test_optimizer_from_config_is_make_optimizer():
    params = {"w": jnp.arange(4.0)}
    grads = {"w": jnp.asarray([0.5, -1.0, 2.0, 0.25])}
    for overrides, kwargs in ((dict(), dict(momentum=0.9)),
                              (dict(optimizer=dict(name="adam", b1=0.8, b2=0.99)), dict(b1=0.8, b2=0.99))):
        train = _train(**overrides)
        a, b = optimizer_from_config(train, 0.1), make_optimizer(train.optimizer.name, 0.1, weight_decay=5e-4, **kwargs)
        sa, sb = a.init(params), b.init(params)
        for _ in range(3):
            ua, sa = a.update(grads, sa, params)
            ub, sb = b.update(grads, sb, params)
            np.testing.assert_array_equal(ua["w"], ub["w"])


def test_a_registered_schedule_is_chosen_by_name():
    @SCHEDULES.register("halving")
    def halving(context, *, every: int):
        return lambda step: context.base_lr * 0.5 ** (jnp.asarray(step) // every)

    try:
        got = ours(dict(name="halving", every=10, warmup_steps=2))
        assert got[2] == pytest.approx(BASE) and got[12] == pytest.approx(BASE / 2)
        with pytest.raises(ValueError, match=r"train.schedule.every is a key of schedule 'halving', not of 'step'"):
            make_schedule(dict(name="step", decay_every=1, gamma=0.1, every=3), base_lr=BASE, steps_per_epoch=SPE,
                          total_steps=TOTAL)
    finally:
        SCHEDULES.unregister("halving")
