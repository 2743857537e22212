"""Market-1501 with StRA-ResNet-50.

Evaluate a model directory (e.g. the authors' checkpoint converted with
``python -m stra_jax.convert``):

    python eval.py --config configs/reid_market.py --checkpoint runs/stra_market \
        --config.dataset.root=/data/Market-1501-v15.09.15

Expected (paper, single query, Euclidean, no re-ranking): mAP 82.6 / rank-1 93.3;
the authors' released checkpoint: mAP 84.2 / rank-1 94.0 with their protocol
(``:authors``: L2-normalised features, squared Euclidean distance).
"""
from __future__ import annotations

from configs.common import parse_variants, reid_config

VARIANTS = ("paper", "authors")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = reid_config("market1501", "data/market1501", num_classes=751)
    if "authors" in variants:
        config.eval.normalize = True
        config.eval.metric = "sqeuclidean"
    return config
