"""Pretraining on the built-in synthetic classification set: ImageNet for the
synthetic ReID targets, in miniature (CPU minutes).

    python train.py --config configs/pretrain_synthetic.py --workdir runs/pretrain

Generates 512 generic classes (object-like compositions of shapes, textures
and colour layouts on clutter; not pedestrians) of 8 training and 2
validation images each, at the transfer target's 96x48, into WORKDIR/data
when absent, and trains the plain narrow ResNet of the synthetic ReID configs
(width 16, blocks (1, 1, 2, 3)) with the standard ImageNet recipe
(``configs/classification_common.py``) scaled to a batch of 64 and 24 epochs.
The run then initialises the ReID networks of ``configs/reid_synthetic_transfer.py``
(``--config.init_from=runs/pretrain``): its trunk is transplanted into the
baseline and into every StRA variant, the StRA modules and the ReID head
start random (the paper's protocol). Measured top-1 and the transfer
results: docs/results.md.

Variants: ``people`` (512 synthetic *people* as classes instead, drawn from
the pretraining set's own random streams, so disjoint from every ReID target:
the same-domain case for comparison); ``smoke`` (seconds, for tests).
"""
from __future__ import annotations

import ml_collections

from configs.classification_common import classification_config, shrink_for_smoke
from configs.common import parse_variants

VARIANTS = ("people", "smoke")
#: the narrow trunk of configs/reid_synthetic.py (and of the transfer configs)
NARROW_RESNET = dict(width=16, stage_sizes=(1, 1, 2, 3))
IMAGE_SIZE = (96, 48)


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = classification_config("synthetic", "", "resnet50", image_size=IMAGE_SIZE, batch_size=64, epochs=24)
    config.dataset.synthetic = ml_collections.ConfigDict(dict(
        seed=0, kind="people" if "people" in variants else "generic", num_classes=512, train_per_class=8,
        val_per_class=2, height=IMAGE_SIZE[0], width=IMAGE_SIZE[1]))
    config.model.kwargs = dict(config.model.kwargs, **NARROW_RESNET)
    config.evals.val.update(batch_size=128)
    config.train.update(log_every=32, eval_every_epochs=4)
    config.train.schedule.warmup_epochs = 2
    if "smoke" in variants:
        shrink_for_smoke(config)
        config.dataset.synthetic.update(num_classes=6, train_per_class=3, val_per_class=2, height=32, width=32)
    return config
