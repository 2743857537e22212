"""CUHK03 (new 767/700 protocol) with StRA-ResNet-50 (paper Table 1: mAP 58.5 / rank-1 58.9).

    python train.py --config configs/reid_cuhk03.py:detected --workdir runs/cuhk03 \
        --config.dataset.root=/data/cuhk03 --config.init_from=resnet50-19c8e357.pth

``:detected`` (default) or ``:labeled`` boxes; the other variants as in
``configs/reid_market.py`` (e.g. ``:labeled,authors``). ``:bot`` (the ReID bag of
tricks): neither reid-strong-baseline nor fast-reid publishes CUHK03 numbers; the
ReID-Survey README (github.com/mangye16/ReID-Survey, "CUHK03 dataset", the BNNeck
row: reid-strong-baseline's recipe) gives rank-1 58.0 / mAP 56.6 / mINP 43.8 on
the new protocol without naming the split.
"""
from __future__ import annotations

from configs.common import ABLATIONS, NETWORKS, REID_VARIANTS, parse_variants, reid_config

SUBSETS = ("detected", "labeled")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, REID_VARIANTS + ABLATIONS + tuple(NETWORKS) + SUBSETS)
    subset = "labeled" if "labeled" in variants else "detected"
    config = reid_config(f"cuhk03_{subset}", "data/cuhk03", ",".join(sorted(variants - set(SUBSETS))))
    return config
