"""Every config and variant loads; variants change what they claim to."""
from __future__ import annotations

import importlib

import pytest

from configs.common import ABLATIONS

EXPERIMENTS = ["reid_market", "reid_duke", "reid_cuhk03", "reid_msmt17", "reid_synthetic"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_default_and_smoke_load(name):
    module = importlib.import_module(f"configs.{name}")
    for arg in (None, "smoke"):
        config = module.get_config(arg)
        assert config.train.batch_size > 0 and config.evals.reid.metric in ("euclidean", "sqeuclidean", "cosine")


def test_paper_and_authors_recipes():
    from configs import reid_cuhk03, reid_duke, reid_market

    paper, authors = reid_market.get_config("paper"), reid_market.get_config("authors")
    assert (paper.train.lr_gamma, paper.train.label_smoothing, paper.train.epochs) == (0.2, 0.0, 90)
    assert "layer4" in paper.train.frozen_groups
    assert (authors.train.lr_gamma, authors.train.label_smoothing, authors.train.epochs) == (0.1, 0.1, 100)
    assert "layer4" not in authors.train.frozen_groups and authors.evals.reid.normalize
    assert reid_duke.get_config("authors").train.frozen_epochs == 10
    assert reid_cuhk03.get_config("labeled").dataset.name == "cuhk03_labeled"
    assert reid_cuhk03.get_config(None).dataset.name == "cuhk03_detected"


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablations(ablation):
    from configs import reid_market

    config = reid_market.get_config(ablation)
    if ablation == "baseline":
        assert config.model.name == "resnet50"
    else:
        assert config.model.kwargs != reid_market.get_config().model.kwargs


def test_unknown_variant_lists_known_ones():
    from configs import reid_market

    with pytest.raises(ValueError, match=r"unknown config variant\(s\) \['papr'\]; known variants"):
        reid_market.get_config("papr")
