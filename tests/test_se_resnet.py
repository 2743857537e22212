"""SE-ResNet-50 (Cadene's layout) against a PyTorch statement written here.

The statement follows Hu et al. (SE module: GAP -> 1x1 conv -> ReLU -> 1x1
conv -> sigmoid, scaling the bn3 output before the shortcut) and the module
layout of Cadene's ``pretrainedmodels.senet`` (``layer0.{conv1,bn1,pool}``,
stride on the block's 1x1 ``conv1``, ``se_module.fc1/fc2``, ``downsample.0/1``,
``last_linear``). Width and block counts are parameters, so forward passes
run on a narrow network (width 8, blocks (1, 1, 1, 2), reduction 4) and odd
small images; only the parameter count uses the full size.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

from stra_jax.convert import from_torch_state_dict, layout_for  # noqa: E402
from stra_jax.convert.layouts import default_to_flax  # noqa: E402
from stra_jax.layers.se import SqueezeExcitation  # noqa: E402
from stra_jax.models import abstract_variables, create_model, frozen_param_mask  # noqa: E402
from stra_jax.models.se_resnet import max_pool_ceil  # noqa: E402
from stra_jax.models.complexity import count_params  # noqa: E402
from tests.torch_reference import randomize_bn_stats  # noqa: E402

NARROW = dict(width=8, stage_sizes=(1, 1, 1, 2), se_reduction=4)
NUM_CLASSES = 5
FULL_SIZE_PARAMS = 28_088_024  # Cadene's se_resnet50, 1000 classes


# --- the PyTorch statement (NCHW) ------------------------------------------------------------

class TorchSE(tnn.Module):
    """Hu et al. Eq. 2-4 with Cadene's 1x1-conv-with-bias layers."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = tnn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.fc2 = tnn.Conv2d(channels // reduction, channels, kernel_size=1)

    def forward(self, u):
        z = u.mean(dim=(2, 3), keepdim=True)
        return u * torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))


class TorchSEBottleneck(tnn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, reduction: int, downsample: bool):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)  # stride on the 1x1
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(4 * planes)
        self.se_module = TorchSE(4 * planes, reduction)
        self.downsample = (tnn.Sequential(tnn.Conv2d(inplanes, 4 * planes, 1, stride=stride, bias=False),
                                          tnn.BatchNorm2d(4 * planes)) if downsample else None)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.se_module(self.bn3(self.conv3(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class TorchSEResNet(tnn.Module):
    """Returns (GAP feature, logits). Cadene pools with AvgPool2d(7) at 224x224,
    which is the GAP there; GAP keeps small test images valid."""

    def __init__(self, num_classes: int = 1000, width: int = 64, stage_sizes=(3, 4, 6, 3), se_reduction: int = 16,
                 last_stride: int = 2):
        super().__init__()
        self.layer0 = tnn.Sequential()
        self.layer0.add_module("conv1", tnn.Conv2d(3, width, 7, stride=2, padding=3, bias=False))
        self.layer0.add_module("bn1", tnn.BatchNorm2d(width))
        self.layer0.add_module("relu1", tnn.ReLU())
        self.layer0.add_module("pool", tnn.MaxPool2d(3, stride=2, ceil_mode=True))
        inplanes = width
        for stage, blocks in enumerate(stage_sizes):
            planes = width * 2**stage
            stride = 1 if stage == 0 else (last_stride if stage == 3 else 2)
            layer = []
            for index in range(blocks):
                layer.append(TorchSEBottleneck(inplanes, planes, stride if index == 0 else 1, se_reduction,
                                               downsample=index == 0))
                inplanes = 4 * planes
            setattr(self, f"layer{stage + 1}", tnn.Sequential(*layer))
        self.last_linear = tnn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.layer0(x)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        feature = x.mean(dim=(2, 3))
        return feature, self.last_linear(feature)


def _torch_net(seed: int = 0, last_stride: int = 2, **kw) -> TorchSEResNet:
    torch.manual_seed(seed)
    net = TorchSEResNet(num_classes=NUM_CLASSES, last_stride=last_stride, **{**NARROW, **kw})
    with torch.no_grad():
        randomize_bn_stats(net, seed)  # also gives the SE convs non-zero biases
    return net.eval()


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _flax_leaves(variables):
    """(flax path without the collection, leaf) for every variable."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
        keys = tuple(str(getattr(k, "key", k)) for k in path)
        yield keys, leaf


# --- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [5, 6, 9, 12])
def test_ceil_mode_pool_matches_torch(n):
    x = np.random.default_rng(n).standard_normal((1, n, n + 3, 2)).astype(np.float32)
    want = tnn.MaxPool2d(3, stride=2, ceil_mode=True)(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    got = max_pool_ceil(jnp.asarray(x), 3, 2)
    np.testing.assert_array_equal(np.asarray(got), want.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("last_stride", [2, 1])
def test_matches_torch_statement(last_stride):
    net = _torch_net(seed=last_stride, last_stride=last_stride)
    x = np.random.default_rng(0).standard_normal((2, 67, 38, 3)).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        stem = net.layer0(xt)
        want_feature, want_logits = net(xt)
    # 67x38 -> conv 34x19: the even 34 needs ceil mode (floor gives 16), the odd 19 would be 10 with padding 1.
    assert tuple(stem.shape[2:]) == (17, 9)

    model, variables = from_torch_state_dict(net.state_dict(), arch="se_resnet50", num_classes=NUM_CLASSES,
                                             last_stride=last_stride, width=NARROW["width"],
                                             stage_sizes=NARROW["stage_sizes"], se_reduction=NARROW["se_reduction"])
    out = jax.jit(lambda v, im: model.apply(v, im, train=False))(variables, x)
    assert out["embedding"].shape == (2, 32 * NARROW["width"])
    assert _rel_err(out["features"], want_feature.numpy()) < 1e-4
    assert _rel_err(out["embedding"], want_feature.numpy()) < 1e-4  # embedding_dim=None: GAP feature
    assert _rel_err(out["logits"], want_logits.numpy()) < 1e-4


def test_parameter_count_at_full_size():
    variables = abstract_variables(create_model("se_resnet50", num_classes=1000))
    jax_count = count_params(variables["params"])
    torch_count = sum(p.numel() for p in TorchSEResNet(num_classes=1000).parameters())
    assert jax_count == FULL_SIZE_PARAMS
    assert torch_count == FULL_SIZE_PARAMS


def test_import_round_trip():
    sd = {k: v.numpy() for k, v in _torch_net().state_dict().items() if not k.endswith("num_batches_tracked")}
    model, variables = from_torch_state_dict(sd, arch="se_resnet50", num_classes=NUM_CLASSES, **NARROW)
    layout = layout_for(model)
    seen = set()
    for keys, leaf in _flax_leaves(variables):
        name = layout.torch_name(keys[1:], "last_linear")
        seen.add(name)
        # mapping the torch tensor forward must give the Flax one exactly
        np.testing.assert_array_equal(np.asarray(leaf), default_to_flax(keys[-1], sd[name], leaf.shape),
                                      err_msg=name)
    assert seen == set(sd)
    assert "layer1.0.se_module.fc1.weight" in seen and "layer0.conv1.weight" in seen


def test_missing_se_weights_are_reported_as_initialised():
    sd = {k: v for k, v in _torch_net().state_dict().items() if ".se_module." not in k}
    se_names = sorted(k for k in _torch_net().state_dict() if ".se_module." in k)
    assert len(se_names) == 4 * 5  # 5 blocks x fc1/fc2 x weight/bias
    with pytest.raises(ValueError, match=r"layer1\.0\.se_module\.fc1\.weight"):
        from_torch_state_dict(sd, arch="se_resnet50", num_classes=NUM_CLASSES, **NARROW)
    _, variables, report = from_torch_state_dict(sd, arch="se_resnet50", num_classes=NUM_CLASSES, strict=False,
                                                 return_report=True, **NARROW)
    assert sorted(report.initialised) == se_names
    assert not report.unexpected
    assert variables["params"]["layer4_1"]["se"]["fc2"]["kernel"].shape == (1, 1, 64, 256)


def test_unknown_option_names_option_and_family():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['heads'\] for the SEResNet family"):
        create_model("se_resnet50", heads=8)


@pytest.mark.parametrize("reduction", [0, 33])
def test_bad_se_reduction_names_block_channels_reduction(reduction):
    with pytest.raises(ValueError, match=rf"layer1_0/se: .*reduction={reduction}.*channels=32"):
        create_model("se_resnet50", width=8, se_reduction=reduction)


def test_se_module_checks_its_reduction():
    x = jnp.ones((1, 3, 3, 8))
    with pytest.raises(ValueError, match=r"SqueezeExcitation: .*reduction=16 .*channels=8"):
        jax.eval_shape(SqueezeExcitation(reduction=16).init, jax.random.key(0), x)
    variables = jax.eval_shape(SqueezeExcitation(reduction=4).init, jax.random.key(0), x)
    assert variables["params"]["fc1"]["kernel"].shape == (1, 1, 8, 2)
    assert variables["params"]["fc1"]["bias"].shape == (2,)


def test_frozen_stage_freezes_its_se_and_batchnorms():
    model = create_model("se_resnet50", num_classes=NUM_CLASSES, **NARROW)
    variables = abstract_variables(model)
    mask = model.frozen_param_mask(variables["params"], ("layer1",))
    assert mask["layer1_0"]["se"] == {"fc1": {"kernel": True, "bias": True}, "fc2": {"kernel": True, "bias": True}}
    assert all(jax.tree.leaves(mask["layer1_0"]))
    assert not any(jax.tree.leaves(mask["layer2_0"])) and not mask["conv1"]["kernel"]
    assert jax.tree.leaves(frozen_param_mask(model, variables["params"], ("layer1",))) == jax.tree.leaves(mask)

    # frozen blocks keep their BatchNorms in inference mode while training
    net = _torch_net()
    _, variables = from_torch_state_dict(net.state_dict(), arch="se_resnet50", num_classes=NUM_CLASSES, **NARROW)
    x = np.random.default_rng(1).standard_normal((2, 35, 19, 3)).astype(np.float32)
    train_step = jax.jit(lambda v, im: model.apply(v, im, train=True, frozen=("layer1",), mutable=["batch_stats"]))
    _, updates = train_step(variables, x)
    before, after = variables["batch_stats"], updates["batch_stats"]
    assert jax.tree.all(jax.tree.map(np.array_equal, before["layer1_0"], after["layer1_0"]))
    assert not np.array_equal(before["layer2_0"]["bn1"]["mean"], after["layer2_0"]["bn1"]["mean"])
