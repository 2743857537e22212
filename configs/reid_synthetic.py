"""The built-in demo: the synthetic part-structured ReID set, a small StRA net.

    python train.py --config configs/reid_synthetic.py --workdir runs/synthetic

Generates the synthetic set (Market-1501 layout) into WORKDIR/data when absent,
trains a narrow StRA-ResNet from scratch (no pretrained weights exist for it)
and evaluates it (mAP, rank-1). ``:smoke`` is a tiny version for tests.
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variants, reid_config

VARIANTS = ("smoke",)


def get_config(arg: str | None = None):
    config = reid_config("synthetic", "", arg, known=VARIANTS)
    config.dataset.synthetic = ml_collections.ConfigDict(dict(seed=0, num_ids=40, num_cameras=6,
                                                              images_per_id=12, height=128, width=64))
    if "smoke" in parse_variants(arg, VARIANTS):  # reid_config already made the run tiny
        config.dataset.synthetic.update(num_ids=12, images_per_id=6, height=64, width=32)
        return config
    config.model.kwargs = dict(width=16, stage_sizes=(1, 1, 2, 3))
    config.input.image_size = (128, 64)
    config.evals.reid.update(image_size=(128, 64), batch_size=32)
    config.train.update(epochs=60, batch_size=32, lr=1e-3, lr_decay_every=40, lr_gamma=0.1,
                        frozen_epochs=0, log_every=20, eval_every_epochs=20)
    return config
