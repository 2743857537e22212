"""Market-1501 with StRA-ResNet-50 (paper Table 1: mAP 82.6 / rank-1 93.3).

    python train.py --config configs/reid_market.py --workdir runs/market \
        --config.dataset.root=/data/Market-1501-v15.09.15 --config.init_from=resnet50-19c8e357.pth
    python eval.py --config configs/reid_market.py --checkpoint DIR   # a model directory

Variants: ``:paper`` (default, the supplement's recipe), ``:authors`` (the
released scripts: label smoothing, x0.1 decay, 100 epochs, layer4 open while
frozen, L2-normalised squared-Euclidean test; their checkpoint: mAP 84.2 /
rank-1 94.0), ``:smoke`` (tiny run), and the Table 3 ablations ``:local_only``
(77.8 / 90.3), ``:no_interaction`` (80.3 / 91.5), ``:softmax_gate`` (80.1 mAP),
``:k5`` (82.0), ``:k7`` (80.4), ``:g4`` (79.4), ``:g16`` (80.2), ``:g32`` (79.6),
``:baseline`` (ResNet-50, 74.3 / 88.8). Variants combine: ``:authors,k5``.
"""
from __future__ import annotations

from configs.common import reid_config


def get_config(arg: str | None = None):
    return reid_config("market1501", "data/market1501", arg)
