"""Non-local ResNet-50 (Wang et al., CVPR 2018, embedded Gaussian) against a
PyTorch statement of the network written here from the paper.

The statement: torchvision's ResNet-50 trunk (``tests/torch_reference.py``'s
``Bottleneck``) with non-local blocks held as fast-reid does (``NL_3 =
nn.ModuleList``, children ``g``, ``theta``, ``phi``, ``W = Sequential(conv,
BN)``), each placed right before one of its stage's last residual blocks.
Narrow networks and 64x32 images keep the file fast; the full-size network is
only built (parameter count), never run.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from stra_jax.convert import from_torch_state_dict  # noqa: E402
from stra_jax.layers.nonlocal_block import NonLocalBlock  # noqa: E402
from stra_jax.models import abstract_variables, create_model, frozen_param_mask, init_variables  # noqa: E402
from stra_jax.models.complexity import count_params  # noqa: E402
from tests import torch_reference as tr  # noqa: E402
from tests.helpers import randomize_variables  # noqa: E402

NARROW = dict(width=8, stage_sizes=(1, 2, 3, 1), nonlocal_blocks=(0, 1, 2, 0))
NUM_IDS = 7
# torchvision's ResNet-50 (25,557,032) + one block at C = 1024, C' = 512:
# 3 * (1024*512 + 512) + (512*1024 + 1024) + 2 * 1024 = 2,101,760.
FULL_PARAMS_1000 = 27_658_792
FULL_PARAMS_NO_CLASSIFIER = 25_609_792


class TorchNonLocal(nn.Module):
    """Wang et al.'s embedded-Gaussian block, Eq. 1, 3, 6, without subsampling."""

    def __init__(self, channels, reduction=2):
        super().__init__()
        inner = channels // reduction
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)  # Sec. 4.1: the block starts as the identity
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x):
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)             # (B, N, C')
        phi = self.phi(x).flatten(2)                                   # (B, C', N)
        g = self.g(x).flatten(2).transpose(1, 2)                       # (B, N, C')
        f = torch.exp(theta @ phi - (theta @ phi).amax(-1, keepdim=True))  # Eq. 3 (shifted: same ratio)
        y = (f / f.sum(-1, keepdim=True)) @ g                           # Eq. 1, C(x) = sum_j f
        y = y.transpose(1, 2).reshape(b, -1, h, w)
        return self.W(y) + x                                            # Eq. 6


class TorchNonLocalResNet(nn.Module):
    """ResNet-50 v1.5 (torchvision names) + ``nonlocal_blocks[s]`` NL blocks in stage s,
    one before each of the stage's last ``nonlocal_blocks[s]`` residual blocks."""

    def __init__(self, num_classes=1000, width=64, stage_sizes=(3, 4, 6, 3), nonlocal_blocks=(0, 0, 1, 0)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        self.stage_sizes, self.nonlocal_blocks = tuple(stage_sizes), tuple(nonlocal_blocks)
        for s, (blocks, n_nl) in enumerate(zip(stage_sizes, nonlocal_blocks)):
            planes, stride = width * 2**s, 1 if s == 0 else 2
            layers = []
            for i in range(blocks):
                ds = None
                if i == 0:
                    ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
                layers.append(tr.Bottleneck(inplanes, planes, stride if i == 0 else 1, ds))
                inplanes = planes * 4
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
            setattr(self, f"NL_{s + 1}", nn.ModuleList([TorchNonLocal(inplanes) for _ in range(n_nl)]))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for s, (blocks, n_nl) in enumerate(zip(self.stage_sizes, self.nonlocal_blocks)):
            layer, nls = getattr(self, f"layer{s + 1}"), getattr(self, f"NL_{s + 1}")
            first = blocks - n_nl - 1  # the NL blocks follow blocks first .. blocks-2
            for i, block in enumerate(layer):
                x = block(x)
                if first <= i < blocks - 1:
                    x = nls[i - first](x)
        emb = x.mean(dim=(2, 3))
        return {"embedding": emb, "logits": self.fc(emb)}


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _jit(fn):
    """jit without LLVM optimisation: these programs run once or twice on tiny
    inputs, so compiling dominates (numerics are unchanged)."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


IMAGES = np.random.default_rng(0).standard_normal((2, 64, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def narrow():
    """The narrow network, its eval function (compiled once for every test) and fresh variables."""
    model = create_model("nonlocal_resnet50", num_classes=NUM_IDS, **NARROW)
    evaluate = _jit(lambda v, x: model.apply(v, x, train=False))
    return model, evaluate, init_variables(model, jax.random.key(2))


def test_narrow_network_matches_torch_statement(narrow):
    torch.manual_seed(0)
    net = TorchNonLocalResNet(NUM_IDS, width=8, stage_sizes=(1, 2, 3, 1), nonlocal_blocks=(0, 1, 2, 0))
    tr.randomize_bn_stats(net, seed=3)  # non-zero W BN gamma too: the blocks are not identities
    net.eval()
    sd = net.state_dict()
    assert sorted({".".join(k.split(".")[:2]) for k in sd if k.startswith("NL_")}) == ["NL_2.0", "NL_3.0", "NL_3.1"]
    model, variables = from_torch_state_dict(sd, arch="nonlocal_resnet50", num_classes=NUM_IDS, **NARROW)
    assert model == narrow[0]
    assert sorted(k for k in variables["params"] if k.startswith("nonlocal")) == [
        "nonlocal2_0", "nonlocal3_0", "nonlocal3_1"]
    assert count_params(variables["params"]) == sum(p.numel() for p in net.parameters())

    nchw = torch.from_numpy(np.ascontiguousarray(IMAGES.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        expected = net(nchw)
        # The NL blocks change the output: the comparison tests them, not only the trunk.
        plain = TorchNonLocalResNet(NUM_IDS, width=8, stage_sizes=(1, 2, 3, 1), nonlocal_blocks=(0, 0, 0, 0))
        plain.load_state_dict({k: v for k, v in sd.items() if not k.startswith("NL_")})
        without = plain.eval()(nchw)
    assert _rel_err(without["embedding"], expected["embedding"]) > 1e-2
    out = narrow[1](variables, IMAGES)
    assert out["embedding"].shape == (2, 8 * 8 * 4) and out["logits"].shape == (2, NUM_IDS)
    assert _rel_err(out["embedding"], expected["embedding"].numpy()) < 1e-4
    assert _rel_err(out["logits"], expected["logits"].numpy()) < 1e-4


def test_fresh_block_is_the_identity_and_softmax_stays_float32():
    x = jax.random.normal(jax.random.key(0), (2, 4, 3, 16))
    block = NonLocalBlock()
    variables = _jit(lambda key: block.init(key, x, train=False))(jax.random.key(1))
    assert set(variables["params"]) == {"theta", "phi", "g", "out_conv", "out_bn"}
    assert variables["params"]["theta"]["kernel"].shape == (1, 1, 16, 8)
    train_apply = _jit(lambda v, im: block.apply(v, im, train=True, mutable=["batch_stats"])[0])
    np.testing.assert_array_equal(train_apply(variables, x), x)
    # bfloat16 compute: the affinity's softmax is float32 in the traced program.
    varied = randomize_variables(variables, seed=1)
    bf16 = NonLocalBlock(dtype=jnp.bfloat16)
    jaxpr = str(jax.make_jaxpr(lambda v, im: bf16.apply(v, im, train=False))(varied, x))
    assert "f32[2,12,12]" in jaxpr and "bf16[2,12,12]" not in jaxpr
    both = _jit(lambda v, im: (block.apply(v, im, train=False), bf16.apply(v, im, train=False)))
    np.testing.assert_array_equal(both(variables, x)[0], x)
    want, got = both(varied, x)
    assert got.dtype == jnp.bfloat16 and _rel_err(want, x) > 1e-2
    assert _rel_err(got.astype(jnp.float32), want) < 5e-2


def test_fresh_network_equals_resnet_with_the_same_weights(narrow):
    _, evaluate, fresh = narrow
    plain = create_model("resnet50", num_classes=NUM_IDS, width=8, stage_sizes=(1, 2, 3, 1))
    trunk = {col: {k: v for k, v in tree.items() if not k.startswith("nonlocal")} for col, tree in fresh.items()}
    got = evaluate(fresh, IMAGES)
    want = _jit(lambda v, x: plain.apply(v, x, train=False))(trunk, IMAGES)
    for key in ("features", "embedding", "logits"):
        np.testing.assert_array_equal(got[key], want[key])


def test_full_size_parameter_count_equals_torch_statement():
    count = count_params(abstract_variables(create_model("nonlocal_resnet50", num_classes=1000))["params"])
    assert count == FULL_PARAMS_1000
    torch_count = sum(p.numel() for p in TorchNonLocalResNet(1000).parameters())  # built, not run
    assert torch_count == FULL_PARAMS_1000
    headless = abstract_variables(create_model("nonlocal_resnet50", num_classes=0))["params"]
    assert count_params(headless) == FULL_PARAMS_NO_CLASSIFIER
    assert sorted(k for k in headless if k.startswith("nonlocal")) == ["nonlocal3_0"]


def test_bad_options_fail_naming_them():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['heads'\] for the NonLocalResNet family"):
        create_model("nonlocal_resnet50", heads=8)
    with pytest.raises(ValueError, match=r"nonlocal_blocks=\(0, 0, 6, 0\) with stage_sizes=\(3, 4, 6, 3\)"):
        create_model("nonlocal_resnet50", nonlocal_blocks=(0, 0, 6, 0))
    for bad in ((0, 1, 0), (0, -1, 0, 0)):
        with pytest.raises(ValueError, match=re.escape(f"nonlocal_blocks={bad}")):
            create_model("nonlocal_resnet50", nonlocal_blocks=bad)
    with pytest.raises(ValueError, match="nonlocal_reduction=0"):
        create_model("nonlocal_resnet50", nonlocal_reduction=0)
    x = jnp.zeros((1, 2, 2, 4))
    with pytest.raises(ValueError, match=r"NonLocalBlock 'nl'.*channels=4, reduction=8"):
        NonLocalBlock(8, name="nl").init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match=r"channels=4, reduction=0"):
        NonLocalBlock(0).init(jax.random.key(0), x, train=False)


def test_frozen_layer3_keeps_nonlocal_blocks_training(narrow):
    model, _, fresh = narrow
    params = fresh["params"]
    for mask in (model.frozen_param_mask(params, ("layer3",)), frozen_param_mask(model, params, ("layer3",))):
        assert all(jax.tree.leaves(mask["layer3_0"])) and all(jax.tree.leaves(mask["layer3_2"]))
        assert not any(jax.tree.leaves(mask["nonlocal3_0"])) and not any(jax.tree.leaves(mask["nonlocal3_1"]))
        assert not any(jax.tree.leaves(mask["layer2_0"])) and not any(jax.tree.leaves(mask["nonlocal2_0"]))
    # The NL BatchNorm trains (batch statistics) while layer3's stay in inference mode.
    variables = randomize_variables(fresh, seed=2)
    train = _jit(lambda v, x: model.apply(v, x, train=True, frozen=("layer3",), mutable=["batch_stats"])[1])
    old, new = variables["batch_stats"], train(variables, IMAGES)["batch_stats"]
    np.testing.assert_array_equal(new["layer3_1"]["bn1"]["mean"], old["layer3_1"]["bn1"]["mean"])
    assert not np.allclose(new["nonlocal3_0"]["out_bn"]["mean"], old["nonlocal3_0"]["out_bn"]["mean"])
    assert not np.allclose(new["layer2_1"]["bn1"]["mean"], old["layer2_1"]["bn1"]["mean"])
