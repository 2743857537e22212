"""The built-in synthetic ReID set (part-structured pedestrians, Market-1501 layout).

It is generated into ``dataset.root`` when absent. Evaluate a model directory:

    python eval.py --config configs/reid_synthetic.py --checkpoint DIR

(Training on it arrives with the training system.)
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variants, reid_config

VARIANTS = ("smoke",)


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = reid_config("synthetic", "data/synthetic", num_classes=0)
    config.dataset.synthetic = ml_collections.ConfigDict(dict(seed=0, num_ids=40, num_cameras=6,
                                                              images_per_id=12, height=128, width=64))
    config.model.kwargs = dict(width=16, stage_sizes=(1, 1, 2, 3))
    config.eval.image_size = (128, 64)
    config.eval.batch_size = 32
    if "smoke" in variants:
        config.dataset.synthetic.update(num_ids=12, images_per_id=6, height=64, width=32)
        config.eval.image_size = (64, 32)
        config.eval.batch_size = 8
    return config
