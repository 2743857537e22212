"""Shared config pieces and the ``:variant`` argument parser (big_vision style).

``--config configs/reid_market.py:smoke`` calls ``get_config("smoke")``;
several variants combine with commas (``:authors,smoke``).
"""
from __future__ import annotations

import ml_collections


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """'a,b' -> {'a', 'b'}; an unknown variant fails with the list of known ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = sorted(variants - set(known))
    if unknown:
        raise ValueError(f"unknown config variant(s) {unknown}; known variants: {sorted(known)}")
    return variants


def reid_eval_config() -> ml_collections.ConfigDict:
    """Test-time settings of the ReID protocol the field reports with."""
    return ml_collections.ConfigDict(dict(
        image_size=(256, 128),
        batch_size=128,        # must divide over the devices
        output="embedding",    # model output used as the feature
        metric="euclidean",    # euclidean | sqeuclidean | cosine
        normalize=False,       # L2-normalise features first
        flip=False,            # average the features of the image and its mirror
        rerank=False,          # k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)
        max_rank=50,
        skip_corrupt=False,
    ))


def reid_config(dataset: str, root: str, num_classes: int) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = ml_collections.ConfigDict(dict(name=dataset, root=root))
    config.model = ml_collections.ConfigDict(dict(name="stra_resnet50", kwargs=dict(num_classes=num_classes)))
    config.eval = reid_eval_config()
    return config
