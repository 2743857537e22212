"""Your own ReID data with StRA-ResNet-50: a folder per identity, or a CSV.

    python train.py --config configs/reid_custom.py --workdir runs/mine \
        --config.dataset.root=/data/mine --config.init_from=resnet50-19c8e357.pth
    python train.py --config configs/reid_custom.py:csv --workdir runs/mine --config.dataset.root=/data/mine

``:folder`` (default): ``ROOT/{train,query,gallery}/<identity>/*.jpg``, the camera
from the file name (``--config.dataset.options.camera_pattern='_c(\\d+)'``, the
default, or ``''`` for data without cameras). ``:csv``: ``ROOT/dataset.csv``
with the columns path,pid,camid,split (``--config.dataset.options.csv_file``).
See ``stra_jax/data/reid/custom.py``. Everything else is the Market-1501 config
(the paper's recipe and evaluation); its variants combine: ``:csv,authors``,
``:folder,bot`` (the ReID bag of tricks, see ``configs/reid_market.py``; its
published numbers are Market-1501's, rank-1 94.1 / mAP 85.7 for reid-strong-baseline).
"""
from __future__ import annotations

import ml_collections

from configs.common import ABLATIONS, NETWORKS, REID_VARIANTS, parse_variants, reid_config

VARIANTS = ("folder", "csv") + REID_VARIANTS + ABLATIONS + tuple(NETWORKS)


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    if {"folder", "csv"} <= variants:
        raise ValueError("config variants: pick one of 'folder' and 'csv'")
    config = reid_config("folder", "", ",".join(sorted(variants - {"folder", "csv"})))
    if "csv" in variants:
        config.dataset.name = "csv"
        config.dataset.options = ml_collections.ConfigDict(dict(csv_file="dataset.csv"))
    else:
        config.dataset.options = ml_collections.ConfigDict(dict(camera_pattern=r"_c(\d+)"))
    return config
