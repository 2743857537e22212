"""MSMT17 with StRA-ResNet-50 (not in the paper; train with the Market recipe).

    python train.py --config configs/reid_msmt17.py --workdir runs/msmt17 \
        --config.dataset.root=/data/MSMT17 --config.init_from=resnet50-19c8e357.pth

Variants as in ``configs/reid_market.py``. ``:bot`` (the ReID bag of tricks;
``:bot,baseline`` is reid-strong-baseline's ResNet-50): fast-reid's BoT(R50) on
MSMT17, rank-1 74.1 / mAP 50.2 / mINP 10.4 (fast-reid MODEL_ZOO.md).
"""
from __future__ import annotations

from configs.common import reid_config


def get_config(arg: str | None = None):
    return reid_config("msmt17", "data/msmt17", arg)
