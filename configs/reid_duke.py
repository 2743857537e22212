"""DukeMTMC-reID with StRA-ResNet-50 (paper Table 1: mAP 67.5 / rank-1 83.6).

    python train.py --config configs/reid_duke.py --workdir runs/duke \
        --config.dataset.root=/data/DukeMTMC-reID --config.init_from=resnet50-19c8e357.pth

Variants as in ``configs/reid_market.py``; ``:authors`` freezes for 10 epochs on
Duke, as the released scripts do.
"""
from __future__ import annotations

from configs.common import ABLATIONS, NETWORKS, REID_VARIANTS, apply_authors_recipe, parse_variants, reid_config


def get_config(arg: str | None = None):
    config = reid_config("dukemtmcreid", "data/dukemtmc-reid", arg)
    if "authors" in parse_variants(arg, REID_VARIANTS + ABLATIONS + tuple(NETWORKS)):
        apply_authors_recipe(config, frozen_epochs=10)
    return config
