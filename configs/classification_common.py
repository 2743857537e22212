"""Shared pieces of the classification (pretraining) configs, big_vision style.

The standard ImageNet recipe of flax examples/imagenet, big_vision's
``bit_i1k``/``vit_i1k`` ResNet baselines and torchvision's reference scripts:
SGD with Nesterov momentum 0.9, lr 0.1 x global_batch / 256, linear warmup (5
epochs, from 0.01 x lr as torchvision's ``LinearLR``), cosine decay to 0,
label smoothing 0.1, weight decay 1e-4 (coupled L2, as ``torch.optim.SGD``),
Inception crop + flip at 224x224, resize to 256 + central 224 crop at test.
StRA networks add L_d (weight 1.0, the paper's) to the cross-entropy.
"""
from __future__ import annotations

import ml_collections

#: classification variants -> registered network; the ImageNet-style head
#: (GAP -> linear classifier, no embedding layer), last stride 2.
NETWORKS = {"resnet50": "resnet50", "stra_resnet50": "stra_resnet50",
            "mnetv2": "mobilenetv2_x1_0", "stra_mnetv2": "stra_mobilenetv2_x1_0"}


def classification_config(dataset: str, root: str, network: str = "resnet50", *, source: str = "folder",
                          image_size: tuple[int, int] = (224, 224), batch_size: int = 1024,
                          epochs: int = 100) -> ml_collections.ConfigDict:
    """The recipe above for ``network`` (a key of :data:`NETWORKS`) on ``dataset``."""
    config = ml_collections.ConfigDict()
    config.task = "classification"  # stra_jax.tasks: data, loss and evaluators
    config.seed = 0
    config.init_from = ""
    # source "folder": root/train/<class>/*, root/val/<class>/* (or the generated set);
    # "tfds": the TFDS builder `name` in data_dir ('' = ~/tensorflow_datasets; gs:// works).
    config.dataset = ml_collections.ConfigDict(dict(name=dataset, root=root, skip_corrupt=False, source=source,
                                                    data_dir="", train_split="train", eval_split="validation"))
    config.model = ml_collections.ConfigDict(dict(name=NETWORKS[network],
                                                  kwargs=dict(last_stride=2, embedding_dim=None)))
    config.input = ml_collections.ConfigDict(dict(
        image_size=tuple(image_size),
        augment=dict(crop="inception", area=(0.08, 1.0), aspect=(3 / 4, 4 / 3), flip=True),
        sampler="random", sampler_options=dict()))
    losses = dict(ce=dict(weight=1.0, label_smoothing=0.1))
    if network.startswith("stra_"):
        losses["diversity"] = dict(weight=1.0)
    config.train = ml_collections.ConfigDict(dict(
        epochs=epochs,
        batch_size=batch_size,    # global, over all devices and hosts
        accum_steps=1,
        optimizer=dict(name="sgd", momentum=0.9, nesterov=True),
        lr=0.1,                   # at lr_reference_batch: the run uses lr x batch_size / 256
        lr_reference_batch=256,   # the linear scaling rule (training/schedules.py scaled_lr)
        weight_decay=1e-4,
        schedule=dict(name="cosine", warmup_epochs=5, warmup_factor=0.01),
        losses=losses,
        frozen_epochs=0,
        frozen_groups=(),
        log_every=100,
        eval_every_epochs=1,
        checkpoint_every_epochs=1,
        checkpoint_every_steps=0,
        keep_checkpoints=3,
        prefetch=2,
        best_metric="",           # '' = the task's: top-1 of the first classification evaluator
    ))
    if network in ("mnetv2", "stra_mnetv2"):
        config.train.weight_decay = 4e-5  # MobileNetV2's (Sandler et al. 2018; torchvision's recipe)
    config.evals = ml_collections.ConfigDict({"val": dict(type="classification", image_size=tuple(image_size),
                                                          batch_size=256, crop_fraction=0.875, topk=(1, 5))})
    return config


def shrink_for_smoke(config: ml_collections.ConfigDict) -> None:
    """A run of seconds for the tests: a tiny network, 32x32 images, 2 epochs."""
    if config.model.name.startswith(("mobilenetv2", "stra_mobilenetv2")):
        config.model.kwargs = dict(config.model.kwargs, width_mult=0.25, stage_blocks=(1, 1, 1, 1, 1, 1, 1))
    else:
        config.model.kwargs = dict(config.model.kwargs, width=8, stage_sizes=(1, 1, 1, 2))
    config.input.image_size = (32, 32)
    config.evals.val.update(image_size=(32, 32), batch_size=8)
    config.train.update(epochs=2, batch_size=8, log_every=2, eval_every_epochs=1)
    config.train.schedule.warmup_epochs = 1
