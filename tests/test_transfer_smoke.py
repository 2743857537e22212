"""The paper's regime in miniature, end to end in seconds: the ``:smoke`` variants of
``configs/pretrain_synthetic.py`` (classification on the generated set) and of
``configs/reid_synthetic_transfer.py`` (the pretrained run transplanted into a StRA
net, fine-tuned on the synthetic ReID target), as a user runs them; the frozen
stages keep the transplanted trunk while the new StRA modules and the head train."""
from __future__ import annotations

import json

import jax
import numpy as np

import configs.pretrain_synthetic as pretrain
import configs.reid_synthetic_transfer as transfer
from stra_jax.models import create_model, init_variables
from stra_jax.models.io import load_variables, read_model_spec
from stra_jax.training.loop import train_and_evaluate


def _flat(tree, prefix=""):
    """{"params/layer1_0/conv1/kernel": array, ...} by explicit recursion."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        out.update(_flat(value, name) if isinstance(value, dict) else {name: np.asarray(value)})
    return out


def _frozen(name: str) -> bool:
    """The paper's frozen groups (stem, layer1..layer4) without the new StRA modules."""
    parts = name.split("/")[1:]
    return parts[0] in ("conv1", "bn1") or (parts[0].startswith("layer") and "stra" not in parts)


def test_pretrain_then_transplant_into_stra_with_frozen_stages(tmp_path, capsys):
    pre = tmp_path / "pretrain"
    final = train_and_evaluate(pretrain.get_config("smoke"), pre)
    assert 0.0 <= final["val/top1"] <= final["val/top5"] <= 1.0
    spec = read_model_spec(pre / "model_best")
    assert spec["arch"] == "resnet50" and spec["kwargs"]["embedding_dim"] is None
    assert spec["info"]["preprocessing"]["mean"] == [0.485, 0.456, 0.406]  # recorded in the run
    assert (pre / "data" / "synthetic" / "train").is_dir()

    config = transfer.get_config("smoke,paper")
    config.init_from = str(pre)
    assert config.train.frozen_epochs == 1
    config.train.epochs = 1  # the whole run is the frozen phase: the trunk must not move
    capsys.readouterr()
    final = train_and_evaluate(config, tmp_path / "transfer")
    out = capsys.readouterr().out
    assert f"init_from {pre} (model_best/ of the workdir) (resnet50 -> stra_resnet50): " in out
    assert "layer4_1/stra: 33 tensors" in out and "embed_conv: 1 tensor" in out
    assert 0.0 <= final["reid/mAP"] <= 1.0
    recorded = json.loads((tmp_path / "transfer" / "config.json").read_text())
    assert recorded["init_from"] == str(pre)

    src = _flat(load_variables(pre / "model_best"))
    after = _flat(load_variables(tmp_path / "transfer" / "model_last"))
    frozen = [n for n in after if _frozen(n)]
    assert len(frozen) > 60 and any(n.startswith("params/layer4_1/") for n in frozen)
    for name in frozen:  # parameters and BatchNorm statistics of the frozen groups: the source's
        np.testing.assert_array_equal(after[name], src[name], err_msg=name)
    num_classes = after["params/classifier/bias"].shape[0]
    model = create_model("stra_resnet50", **dict(config.model.kwargs, num_classes=num_classes))
    start = _flat(init_variables(model, jax.random.key(config.seed)))
    moved = [n for n in after if n.startswith("params/") and not _frozen(n)]
    assert any("/stra/" in n for n in moved) and "params/embed_conv/kernel" in moved
    for name in moved:  # the new StRA modules and the head trained from their initialisation
        assert not np.array_equal(after[name], start[name]), name
