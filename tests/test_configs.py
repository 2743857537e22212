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
    assert (paper.train.schedule.gamma, paper.train.losses.ce.label_smoothing, paper.train.epochs) == (0.2, 0.0, 90)
    assert "layer4" in paper.train.frozen_groups
    assert (authors.train.schedule.gamma, authors.train.losses.ce.label_smoothing, authors.train.epochs) == (
        0.1, 0.1, 100)
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


@pytest.mark.parametrize("name", ["face_casia", "face_ms1m", "face_synthetic"])
def test_face_configs_follow_the_paper_recipe(name):
    module = importlib.import_module(f"configs.{name}")
    config = module.get_config()
    t = config.train
    assert (config.task, config.model.name, config.input.image_size) == ("face", "stra_resnet50_face", (112, 112))
    assert (t.optimizer.name, t.optimizer.momentum, t.weight_decay, t.losses.diversity.weight) == (
        "sgd", 0.9, 5e-4, 0.1)
    assert (sorted(t.losses), t.losses.arcface.margin, t.losses.arcface.scale) == (["arcface", "diversity"], 0.15, 20.0)
    assert config.evals.face.flip == "concat"
    assert t.best_metric == "face/mean_accuracy"
    if name != "face_synthetic":
        assert (t.lr, t.schedule.milestones, t.epochs, t.batch_size) == (0.1, (8, 12), 20, 512)
    cos = module.get_config("cosface")
    assert (sorted(cos.train.losses), cos.train.losses.cosface.margin, cos.train.losses.cosface.scale) == (
        ["cosface", "diversity"], 0.2, 20.0)
    assert sorted(module.get_config("softmax").train.losses) == ["diversity", "softmax"]
    assert module.get_config("baseline,arcface").model.name == "resnet50_face"
    assert module.get_config("smoke").train.epochs == 2
    with pytest.raises(ValueError, match="choose one loss"):
        module.get_config("softmax,cosface")
    with pytest.raises(ValueError, match=r"unknown config variant\(s\) \['k5'\]"):
        module.get_config("k5")


def test_ms1m_shards_the_classifier():
    from configs import face_casia, face_ms1m

    assert face_ms1m.get_config().model.shard_classifier and not face_casia.get_config().model.shard_classifier
