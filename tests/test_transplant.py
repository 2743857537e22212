"""config.init_from across architectures: a trained ResNet trunk -> StRA-ResNet,
the new StRA modules and the ReID head left at their initialisation. (Through the
trainer, with the frozen stages: tests/test_transfer_smoke.py.)"""
from __future__ import annotations

import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from stra_jax.models import abstract_variables, create_model, init_variables, save_model
from stra_jax.models.io import load_variables
from stra_jax.models.transplant import resolve_init_source, transplant
from stra_jax.training.loop import initial_variables
from tests.helpers import randomize_variables

NARROW = dict(width=4, stage_sizes=(1, 1, 1, 2))
SOURCE_KW = dict(NARROW, num_classes=5, embedding_dim=None, last_stride=2)  # the "pretrained" classifier
TARGET_KW = dict(NARROW, last_stride=1, embedding_dim=16, num_classes=3, heads=4)


def _walk(tree, prefix=()):
    """(name, array) of every leaf of a nested dict, by explicit recursion."""
    out = {}
    for key in sorted(tree):
        value = tree[key]
        if isinstance(value, dict):
            out.update(_walk(value, prefix + (key,)))
        else:
            out["/".join(prefix + (key,))] = np.asarray(value)
    return out


def _flat(variables):
    return _walk({c: dict(variables[c]) for c in ("params", "batch_stats")})


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = create_model("resnet50", **SOURCE_KW)
    variables = randomize_variables(init_variables(model, jax.random.key(7)), seed=3)
    out = tmp_path_factory.mktemp("src") / "resnet"
    save_model(out, "resnet50", SOURCE_KW, variables)
    return out


@pytest.fixture(scope="module")
def target():
    return create_model("stra_resnet50", **TARGET_KW)


def test_resnet_trunk_into_stra_resnet(source_dir, target):
    source = load_variables(source_dir)
    fresh = init_variables(target, jax.random.key(0))
    out, report = transplant(fresh, source, target_arch="stra_resnet50", source_arch="resnet50")

    src, tgt, got = _flat(source), _flat(init_variables(target, jax.random.key(0))), _flat(out)
    loaded, new, conflicting = [], [], []
    for name in tgt:
        if name not in src:
            new.append(name)
        elif src[name].shape != tgt[name].shape:
            conflicting.append((name, tgt[name].shape, src[name].shape))
        else:
            loaded.append(name)
    unused = [name for name in src if name not in tgt]
    assert sorted(report.loaded) == loaded and sorted(report.new) == new
    assert sorted(report.conflicting) == conflicting and sorted(report.unused) == unused
    # What the two trees are, by hand: the 3x3 convs of layer4 became StRA; the head grew an embedding.
    assert unused == ["params/layer4_0/conv2/kernel", "params/layer4_1/conv2/kernel"]
    assert conflicting == [("params/classifier/bias", (3,), (5,)), ("params/classifier/kernel", (16, 3), (128, 5))]
    assert {"params/embed_conv/kernel", "params/embed_bn/scale", "batch_stats/embed_bn/mean"} <= set(new)
    assert all("/stra/" in n or "/embed_" in n for n in new)
    stra = {b: [n for n in new if n.split("/")[1:3] == [b, "stra"]] for b in ("layer4_0", "layer4_1")}
    assert len(stra["layer4_0"]) == len(stra["layer4_1"]) == 33  # 21 params + 12 statistics each, listed above
    assert len(loaded) + len(new) + len(conflicting) == len(tgt)

    for name in loaded:
        assert got[name].dtype == tgt[name].dtype
        np.testing.assert_array_equal(got[name], src[name], err_msg=name)
    for name in new + [n for n, _, _ in conflicting]:  # exactly at initialisation (same seed)
        np.testing.assert_array_equal(got[name], tgt[name], err_msg=name)

    text = report.describe("pretrained/")
    assert text.splitlines()[0] == (
        f"init_from pretrained/ (resnet50 -> stra_resnet50): {len(loaded)} tensors loaded, {len(new)} new (left "
        "at initialisation), 2 with other shapes (left at initialisation), 2 in the source not used")
    for line in ("layer4_0/stra: 33 tensors", "layer4_1/stra: 33 tensors", "embed_conv: 1 tensor",
                 "embed_bn: 4 tensors", "params/classifier/kernel: (16, 3) vs (128, 5)", "layer4_0/conv2: 1 tensor"):
        assert line in text


def test_same_architecture_loads_everything(source_dir):
    model = create_model("resnet50", **SOURCE_KW)
    source = load_variables(source_dir)
    out, report = transplant(abstract_variables(model), source, target_arch="resnet50", source_arch="resnet50")
    assert not (report.new or report.conflicting or report.unused)
    for name, value in _flat(source).items():
        np.testing.assert_array_equal(_flat(out)[name], value)


def _workdir(root, source_dir, names):
    root.mkdir()
    (root / "config.json").write_text("{}")
    for name in names:
        shutil.copytree(source_dir, root / name)
    return root


def test_sources_are_resolved(source_dir, tmp_path, monkeypatch):
    assert resolve_init_source(source_dir).kind == "model_dir"
    last = resolve_init_source(_workdir(tmp_path / "run1", source_dir, ["model_last"]))
    assert (last.kind, last.picked, last.path.name) == ("workdir", "model_last", "model_last")
    best = resolve_init_source(_workdir(tmp_path / "run2", source_dir, ["model_last", "model_best"]))
    assert (best.kind, best.picked, best.path.name) == ("workdir", "model_best", "model_best")
    assert str(best).endswith("run2 (model_best/ of the workdir)")
    for name in ("w.pth", "w.pt", "w.bin", "w.safetensors", "w.pth.tar"):
        (tmp_path / name).write_bytes(b"")
        assert resolve_init_source(tmp_path / name).kind == "state_dict"

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    for given, why in (("missing", "no such file or directory"), ("empty", "a directory without model.json"),
                       ("notes.txt", "a file of unknown kind")):
        with pytest.raises(ValueError, match=rf"init_from {given}: {why}.*training workdir.*model directory.*"
                                             r"state_dict \(\.pth/\.pt/\.bin/\.safetensors\)"):
            resolve_init_source(given)


def test_a_source_sharing_no_tensor_is_refused(target, tmp_path):
    mobile_kw = dict(width_mult=0.25, stage_blocks=(1,) * 7, num_classes=7)
    mobile = create_model("mobilenetv2_x1_0", **mobile_kw)
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract_variables(mobile))
    with pytest.raises(ValueError, match=r"(?s)stra_resnet50 from mobilenetv2_x1_0.*2 shared names all with other "
                                         r"shapes.*params/classifier/kernel: \(16, 3\) vs \(1280, 7\)"):
        transplant(abstract_variables(target), zeros, target_arch="stra_resnet50", source_arch="mobilenetv2_x1_0")

    save_model(tmp_path / "mobile", "mobilenetv2_x1_0", mobile_kw, zeros)
    config = ml_collections.ConfigDict(dict(seed=0, init_from=str(tmp_path / "mobile"),
                                            model=dict(name="stra_resnet50")))
    given = re.escape(str(tmp_path / "mobile"))
    with pytest.raises(ValueError, match=rf"init_from {given}: cannot initialise stra_resnet50 from mobilenetv2_x1_0"):
        initial_variables(config, target)


def test_initial_variables_from_a_workdir_and_a_state_dict(source_dir, target, tmp_path, monkeypatch, capsys):
    from safetensors.numpy import save_file

    monkeypatch.chdir(tmp_path)
    _workdir(tmp_path / "run", source_dir, ["model_last", "model_best"])
    config = ml_collections.ConfigDict(dict(seed=0, init_from="run", model=dict(name="stra_resnet50")))
    variables = initial_variables(config, target)
    printed = capsys.readouterr().out
    assert printed.startswith("init_from run (model_best/ of the workdir) (resnet50 -> stra_resnet50): ")
    src = _flat(load_variables(source_dir))
    np.testing.assert_array_equal(variables["params"]["layer3_0"]["conv2"]["kernel"],
                                  src["params/layer3_0/conv2/kernel"])

    # A PyTorch state_dict: the conversion path, with the same counts in its report.
    stem = np.arange(4 * 3 * 7 * 7, dtype=np.float32).reshape(4, 3, 7, 7)  # PyTorch OIHW
    save_file({"conv1.weight": stem, "layer9.weight": np.zeros(2, np.float32)}, "w.safetensors")
    config.init_from = "w.safetensors"
    variables = initial_variables(config, target)
    total = len(_flat(variables))
    assert capsys.readouterr().out.startswith(
        f"init_from w.safetensors (PyTorch state_dict -> stra_resnet50): 1 tensors loaded, {total - 1} new (left at "
        "initialisation), 0 with other shapes (left at initialisation), 1 in the source not used")
    np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"], stem.transpose(2, 3, 1, 0))
