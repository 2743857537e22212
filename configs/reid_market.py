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

``:bot``: the ReID bag of tricks (``configs/common.py`` ``apply_bot``: P x K 16 x 4,
CE with label smoothing + batch-hard triplet 0.3 on a BNNeck, last stride 1,
random erasing, 10 warmup epochs, x0.1 at 40 and 70 of 120), for StRA-ResNet-50
and, with ``:baseline``, reid-strong-baseline's own ResNet-50. Published Market-1501
numbers of that recipe (ResNet-50, ImageNet-pretrained): rank-1 94.1 / mAP 85.7,
94.5 / 85.9 with center loss (``:bot,center``) (reid-strong-baseline README,
"Results", the BNNeck and center-loss rows); fast-reid's BoT(R50) 94.4 / 86.1,
mINP 59.4 (fast-reid MODEL_ZOO.md; its recipe differs: warmup 2000 iterations
from 0.1 x lr, decay at 40 and 90).
"""
from __future__ import annotations

from configs.common import reid_config


def get_config(arg: str | None = None):
    return reid_config("market1501", "data/market1501", arg)
