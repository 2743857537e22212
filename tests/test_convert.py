"""Weight import against the independent PyTorch oracle (tests/torch_reference.py).

Full-size ResNet-50 / StRA-ResNet-50 with random weights and random BatchNorm
statistics, on small images to keep CPU time down.
"""
from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stra_jax import total_diversity_loss  # noqa: E402
from stra_jax.convert import from_torch_state_dict, load_state_dict, read_state_dict  # noqa: E402
from stra_jax.models import create_model, load_model, model_kwargs  # noqa: E402
from stra_jax.models.resnet import ResNet  # noqa: E402
from stra_jax.models.complexity import count_params  # noqa: E402
from tests import torch_reference as tr  # noqa: E402
from tests.helpers import REPO  # noqa: E402

NUM_IDS = 751


def _images(batch=2, h=64, w=32, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, h, w, 3)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def torch_stra():
    return tr.randomize_bn_stats(tr.stra_resnet50(NUM_IDS), seed=0).eval()


@pytest.fixture(scope="module")
def torch_resnet():
    return tr.randomize_bn_stats(tr.resnet50(1000), seed=1).eval()


@pytest.fixture(scope="module")
def jax_stra(torch_stra):
    return from_torch_state_dict(torch_stra.state_dict(), arch="stra_resnet50", num_classes=NUM_IDS)


def test_stra_resnet50_eval_matches_torch(torch_stra, jax_stra):
    model, variables = jax_stra
    x = _images()
    with torch.no_grad():
        expected = torch_stra(_nchw(x))
    out = jax.jit(lambda v, im: model.apply(v, im, train=False))(variables, x)
    assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, NUM_IDS)
    assert _rel_err(out["embedding"], expected["embedding"]) < 1e-4
    assert _rel_err(out["logits"], expected["logits"]) < 1e-4
    assert count_params(variables["params"]) == sum(p.numel() for p in torch_stra.parameters())


def test_stra_resnet50_train_forward_matches_torch_float64(torch_stra):
    """Train mode (batch statistics). float64 on both sides: in float32 a deep,
    randomly initialised network in train mode amplifies rounding (~1e-3 at the
    logits); float64 shows the computations are the same."""
    torch64 = tr.stra_resnet50(NUM_IDS)
    torch64.load_state_dict(torch_stra.state_dict())
    torch64 = torch64.double().train()
    x = _images(batch=4, h=64, w=32, seed=1).astype(np.float64)
    with jax.enable_x64(True):
        kwargs = {**model_kwargs("stra_resnet50", num_classes=NUM_IDS),
                  "dtype": jnp.float64, "param_dtype": jnp.float64}
        model = ResNet(**kwargs)
        template = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1], train=False))
        variables, _ = load_state_dict(template, torch_stra.state_dict())
        out, state = jax.jit(lambda v, im: model.apply(v, im, train=True, mutable=["batch_stats", "losses"]))(
            variables, x)
        expected = torch64(_nchw(x))
        for key in ("embedding", "logits", "diversity"):
            got = total_diversity_loss(state["losses"]) if key == "diversity" else out[key]
            assert _rel_err(got, expected[key].detach().numpy()) < 1e-5, key
        # Running means follow PyTorch's momentum-0.1 update exactly.
        sd = torch64.state_dict()
        for flax_path, name in [(("layer4_1", "stra", "mode", "gate_bn1"), "layer4.1.conv2.moe.bn"),
                                (("layer2_0", "bn2"), "layer2.0.bn2"), (("embed_bn",), "global_avg_pool.2")]:
            got = state["batch_stats"]
            for key in flax_path:
                got = got[key]
            np.testing.assert_allclose(np.asarray(got["mean"]), sd[f"{name}.running_mean"].numpy(),
                                       rtol=1e-5, atol=1e-6)


def test_torchvision_resnet50_matches_torch(torch_resnet):
    model, variables = from_torch_state_dict(torch_resnet.state_dict(), arch="resnet50", num_classes=1000)
    assert count_params(variables["params"]) == 25_557_032
    x = _images(seed=2)
    with torch.no_grad():
        expected = torch_resnet(_nchw(x)).numpy()
    out = jax.jit(lambda v, im: model.apply(v, im, train=False))(variables, x)
    assert _rel_err(out["logits"], expected) < 1e-4


def test_imagenet_weights_into_stra_resnet50(torch_resnet):
    sd = torch_resnet.state_dict()
    with pytest.raises(ValueError) as info:
        from_torch_state_dict(sd, arch="stra_resnet50", num_classes=NUM_IDS, strict=True)
    message = str(info.value)
    for fragment in ("layer4.0.conv2.mask_conv.0.weight", "layer4.2.conv2.moe.bn2.running_var",
                     "global_avg_pool.1.weight", "layer4.0.conv2.weight", "fc.weight"):
        assert fragment in message

    model, variables, report = from_torch_state_dict(
        sd, arch="stra_resnet50", num_classes=NUM_IDS, strict=False, return_report=True)
    initialised = set(report.initialised)
    assert all(n.startswith(("layer4.0.conv2.", "layer4.1.conv2.", "layer4.2.conv2.",
                             "global_avg_pool.", "classifier.")) for n in initialised)
    assert "layer4.1.conv2.value_conv.weight" in initialised and "classifier.weight" in initialised
    assert set(report.unexpected) == {f"layer4.{i}.conv2.weight" for i in range(3)} | {"fc.weight", "fc.bias"}
    # Everything else came from ImageNet, last stage's 1x1 convs and shortcut included.
    for name, path in [("layer4.0.conv1.weight", ("layer4_0", "conv1", "kernel")),
                       ("layer4.0.downsample.0.weight", ("layer4_0", "downsample_conv", "kernel"))]:
        got = variables["params"]
        for key in path:
            got = got[key]
        np.testing.assert_array_equal(np.asarray(got), sd[name].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["layer3_5"]["bn3"]["var"]),
                                  sd["layer3.5.bn3.running_var"].numpy())


def test_wrong_shape_is_listed_with_both_shapes(torch_stra):
    sd = dict(torch_stra.state_dict())
    sd["layer2.0.conv2.weight"] = torch.zeros(128, 64, 3, 3)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv2\.weight: expected \(128, 128, 3, 3\), "
                                         r"got \(128, 64, 3, 3\)"):
        from_torch_state_dict(sd, arch="stra_resnet50", num_classes=NUM_IDS)


def test_unknown_arch_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet51': known models are ") as err:
        create_model("resnet51")
    for name in ("mobilenetv2_x1_0", "nonlocal_resnet50", "resnet50", "sasa_resnet50", "se_resnet50",
                 "stra_mobilenetv2_x1_4", "stra_resnet50", "stra_resnet50_face"):
        assert name in str(err.value)


def test_file_formats_and_cli_round_trip(tmp_path, torch_stra):
    from safetensors.torch import save_file

    sd = torch_stra.state_dict()
    # torchreid-style checkpoint: {"state_dict": ..., "epoch": ...} with DataParallel prefixes.
    pth = tmp_path / "model.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 60, "rank1": 0.94}, pth)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    from_pth, from_st = read_state_dict(pth), read_state_dict(st)
    assert set(from_pth) == set(from_st) == {k for k in sd if not k.endswith("num_batches_tracked")}
    for key in ("layer4.0.conv2.moe.gap_weight.0.weight", "classifier.bias"):
        np.testing.assert_array_equal(from_pth[key], sd[key].numpy())
        np.testing.assert_array_equal(from_st[key], sd[key].numpy())

    out_dir = tmp_path / "converted"
    cmd = [sys.executable, "-m", "stra_jax.convert", str(pth), str(out_dir), "--arch", "stra_resnet50",
           "--num-classes", str(NUM_IDS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    model, variables = load_model(out_dir, expect_arch="stra_resnet50")
    x = _images(seed=3)
    with torch.no_grad():
        expected = torch_stra(_nchw(x))
    out = jax.jit(lambda v, im: model.apply(v, im, train=False))(variables, x)
    assert _rel_err(out["embedding"], expected["embedding"]) < 1e-4

    # Bad input: an existing destination, another architecture, a missing file.
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode != 0 and "already exists" in again.stderr
    wrong = subprocess.run(cmd[:4] + [str(tmp_path / "wrong"), "--arch", "resnet50", "--num-classes", "751"],
                           capture_output=True, text=True, cwd=REPO)
    assert wrong.returncode != 0 and "layer4.0.conv2.weight" in wrong.stderr
    assert not (tmp_path / "wrong").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    missing = subprocess.run(cmd[:3] + [str(tmp_path / "nope.pth"), str(tmp_path / "x")],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode != 0 and "nope.pth: no such file" in missing.stderr
    with pytest.raises(ValueError, match="holds a 'stra_resnet50' model, expected 'resnet50'"):
        load_model(out_dir, expect_arch="resnet50")
