"""The classification (pretraining) configs follow the ImageNet recipe, their
schedule equals torch's warmup + cosine step for step, and the synthetic
transfer configs size their target as documented."""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from configs import imagenet, pretrain_synthetic, reid_synthetic_transfer
from stra_jax.training.schedules import make_schedule, scaled_lr
from stra_jax.training.validate import check_train_config

CLASSIFICATION = [(imagenet, v) for v in (None,) + imagenet.VARIANTS] + [
    (imagenet, "stra_mnetv2,bf16"), (imagenet, "mnetv2,smoke")] + [
    (pretrain_synthetic, v) for v in (None,) + pretrain_synthetic.VARIANTS]
IDS = [f"{m.__name__.split('.')[-1]}:{v or 'default'}" for m, v in CLASSIFICATION]


@pytest.mark.parametrize("module, variant", CLASSIFICATION, ids=IDS)
def test_classification_configs_have_the_imagenet_recipe(module, variant):
    config = module.get_config(variant)
    check_train_config(config)  # the trainer's own checks, before any data
    t = config.train
    assert config.task == "classification"
    assert (t.optimizer.name, t.optimizer.momentum, t.optimizer.nesterov) == ("sgd", 0.9, True)
    # the linear scaling rule, applied by the trainer: 0.1 x batch / 256
    assert (t.lr, t.lr_reference_batch) == (0.1, 256)
    assert scaled_lr(t.lr, t.batch_size, t.lr_reference_batch) == pytest.approx(0.1 * t.batch_size / 256)
    assert t.schedule.name == "cosine" and t.schedule.warmup_epochs >= 1 and t.schedule.warmup_factor == 0.01
    assert t.schedule.warmup_epochs < t.epochs
    assert t.losses.ce.label_smoothing == 0.1 and t.losses.ce.weight == 1.0
    mobile = "mobilenetv2" in config.model.name
    assert t.weight_decay == (4e-5 if mobile else 1e-4)
    assert ("diversity" in t.losses) == config.model.name.startswith("stra_")
    assert config.model.kwargs.get("dtype") == ("bfloat16" if "bf16" in (variant or "") else None)
    assert config.evals.val.type == "classification" and tuple(config.evals.val.image_size) == tuple(
        config.input.image_size)
    assert config.evals.val.crop_fraction == 0.875 and tuple(config.evals.val.topk) == (1, 5)


def test_variants_pick_what_they_say():
    assert imagenet.get_config().model.name == "resnet50"
    assert imagenet.get_config("stra_resnet50").model.name == "stra_resnet50"
    assert imagenet.get_config("mnetv2").model.name == "mobilenetv2_x1_0"
    assert imagenet.get_config("stra_mnetv2").model.name == "stra_mobilenetv2_x1_0"
    assert (imagenet.get_config().dataset.name, imagenet.get_config().dataset.source) == ("imagenet2012", "tfds")
    assert imagenet.get_config("imagenette").dataset.name == "imagenette"
    folder = imagenet.get_config("folder")
    assert (folder.dataset.name, folder.dataset.source) == ("folder", "folder")
    assert tuple(imagenet.get_config().input.image_size) == (224, 224)
    synthetic = pretrain_synthetic.get_config()
    assert tuple(synthetic.input.image_size) == (96, 48) == (synthetic.dataset.synthetic.height,
                                                             synthetic.dataset.synthetic.width)
    assert synthetic.dataset.synthetic.kind == "generic"
    assert pretrain_synthetic.get_config("people").dataset.synthetic.kind == "people"


def test_bf16_builds_a_bfloat16_model():
    from stra_jax.models import create_model

    config = imagenet.get_config("bf16,smoke")
    model = create_model(config.model.name, **dict(config.model.kwargs), num_classes=3)
    assert jnp.dtype(model.dtype) == jnp.bfloat16


@pytest.mark.parametrize("module, arg, message", [
    (imagenet, "resnet18", r"unknown config variant\(s\) \['resnet18'\]"),
    (pretrain_synthetic, "bf17", r"unknown config variant\(s\) \['bf17'\]"),
    (imagenet, "resnet50,mnetv2", r"pick one network"),
    (imagenet, "stra_resnet50,stra_mnetv2", r"pick one network"),
])
def test_bad_variants_fail(module, arg, message):
    with pytest.raises(ValueError, match=message):
        module.get_config(arg)


def _torch_lrs(base: float, warmup_steps: int, total_steps: int) -> list[float]:
    """torch's lr at each optimiser step: SequentialLR(LinearLR(0.01), CosineAnnealingLR)
    stepped once per iteration (as tests/test_schedules.py)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base, momentum=0.9, nesterov=True)
    sched = tls.SequentialLR(opt, [tls.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup_steps),
                                   tls.CosineAnnealingLR(opt, T_max=total_steps - warmup_steps)],
                             milestones=[warmup_steps])
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) on the next scheduler is deprecated
        for _ in range(total_steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return lrs


@pytest.mark.parametrize("module, variant, steps_per_epoch", [
    (imagenet, None, 3), (imagenet, "smoke", 4), (pretrain_synthetic, None, 5), (pretrain_synthetic, "smoke", 2)])
def test_recipe_schedule_matches_torch_warmup_then_cosine(module, variant, steps_per_epoch):
    t = module.get_config(variant).train
    total = steps_per_epoch * t.epochs  # as training/loop.py
    lr = 0.1 * t.batch_size / 256  # what the trainer's scaling rule makes of train.lr
    schedule = make_schedule(t.schedule, base_lr=scaled_lr(t.lr, t.batch_size, t.lr_reference_batch),
                             steps_per_epoch=steps_per_epoch, total_steps=total)
    got = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(total, dtype=jnp.int32)))
    warmup = t.schedule.warmup_epochs * steps_per_epoch
    want = _torch_lrs(lr, warmup, total)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 * lr)
    assert got[0] == pytest.approx(0.01 * lr) and got[warmup] == pytest.approx(lr)
    span = total - warmup  # the cosine's length; its last step is span - 1
    assert got[-1] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * (span - 1) / span)), abs=1e-7 * lr)


# ---- configs/reid_synthetic_transfer.py ----

TRANSFER = [None] + list(reid_synthetic_transfer.VARIANTS)


def _train_images(config) -> int:
    from stra_jax.data.reid.synthetic import SyntheticSpec

    spec = SyntheticSpec(**config.dataset.synthetic.to_dict())
    assert not spec.problems(), spec.problems()
    return len(spec.train_pids) * spec.images_per_id


@pytest.mark.parametrize("variant", TRANSFER, ids=[v or "default" for v in TRANSFER])
def test_transfer_variants_build_at_96x48(variant):
    config = reid_synthetic_transfer.get_config(variant)
    check_train_config(config)
    syn = config.dataset.synthetic
    if variant == "smoke":
        assert tuple(config.input.image_size) != (96, 48)
        return
    assert tuple(config.input.image_size) == (96, 48) == tuple(config.evals.reid.image_size) == (syn.height,
                                                                                                 syn.width)
    assert config.train.epochs == 20
    if "bot" in (variant or "").split(","):  # the bag of tricks' schedule at 20 epochs (configs/common.py bot_schedule)
        assert dict(config.train.schedule) == dict(name="multistep", milestones=(5, 10), gamma=0.1,
                                                   warmup_epochs=2, warmup_factor=0.01)
    else:
        assert config.train.schedule.decay_every == 13


def test_transfer_target_sizes():
    default = reid_synthetic_transfer.get_config()
    syn = default.dataset.synthetic
    assert (syn.num_ids, syn.images_per_id) == (80, 12) and _train_images(default) == 480
    for name, n in (("n240", 240), ("n960", 960), ("n1920", 1920), ("n3840", 3840)):
        config = reid_synthetic_transfer.get_config(name)
        assert config.dataset.synthetic.num_ids == 2 * n // 12 and _train_images(config) == n, name
    with pytest.raises(ValueError, match="pick one target size"):
        reid_synthetic_transfer.get_config("n240,n960")


def test_transfer_freezing_and_diversity_weight():
    default = reid_synthetic_transfer.get_config()
    assert default.model.name == "stra_resnet50" and default.train.frozen_epochs == 2
    assert tuple(default.train.frozen_groups) == ("stem", "layer1", "layer2", "layer3", "layer4")  # the paper's
    assert default.train.losses.diversity.weight == 1.0
    assert reid_synthetic_transfer.get_config("scratch").train.frozen_epochs == 0
    assert reid_synthetic_transfer.get_config("scratch,paper").train.frozen_epochs == 0
    assert reid_synthetic_transfer.get_config("ld0").train.losses.diversity.weight == 0.0
    assert reid_synthetic_transfer.get_config("ld01,local_only").train.losses.diversity.weight == 0.1


@pytest.mark.parametrize("variant", ["ld0,baseline", "ld01,baseline", "ld0,se"])
def test_diversity_weight_on_a_network_without_stra_fails(variant):
    with pytest.raises(ValueError, match="no StRA modules"):
        reid_synthetic_transfer.get_config(variant)
