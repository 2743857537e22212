"""DukeMTMC-reID with StRA-ResNet-50 (paper Table 1: mAP 67.5 / rank-1 83.6).

    python train.py --config configs/reid_duke.py --workdir runs/duke \
        --config.dataset.root=/data/DukeMTMC-reID --config.init_from=resnet50-19c8e357.pth

Variants as in ``configs/reid_market.py``; ``:authors`` freezes for 10 epochs on
Duke, as the released scripts do. ``:bot`` (the ReID bag of tricks; ``:bot,baseline``
is reid-strong-baseline's ResNet-50): published DukeMTMC-reID rank-1 / mAP 86.2 /
75.9, 86.4 / 76.4 with center loss (``:bot,center``) (reid-strong-baseline README,
"Results"); fast-reid's BoT(R50) 87.2 / 77.0, mINP 42.1 (fast-reid MODEL_ZOO.md).
"""
from __future__ import annotations

from configs.common import ABLATIONS, NETWORKS, REID_VARIANTS, apply_authors_recipe, parse_variants, reid_config


def get_config(arg: str | None = None):
    config = reid_config("dukemtmcreid", "data/dukemtmc-reid", arg)
    if "authors" in parse_variants(arg, REID_VARIANTS + ABLATIONS + tuple(NETWORKS)):
        apply_authors_recipe(config, frozen_epochs=10)
    return config
