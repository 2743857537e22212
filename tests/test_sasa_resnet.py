"""SASA (Ramachandran et al., stand-alone self-attention) and SASA-ResNet-50.

The oracle is a PyTorch statement of the StRA paper's Eq. 3, written here from
Ramachandran et al. (unfold with explicit zero padding, a validity mask, the
common ``query_conv`` / ``key_conv`` / ``value_conv`` / ``rel_h`` / ``rel_w``
layout), in a narrow torchvision-layout ResNet (``tests/torch_reference.py``'s
Bottleneck) whose layer4 conv2 is that module. Narrow networks and small
images throughout, to keep the file fast on CPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn as tnn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from stra_jax.convert import from_torch_state_dict  # noqa: E402
from stra_jax.layers.sasa import SASA  # noqa: E402
from stra_jax.models import abstract_variables, create_model, frozen_param_mask  # noqa: E402
from stra_jax.models.complexity import count_params  # noqa: E402
from tests import torch_reference as tr  # noqa: E402

NUM_IDS = 11
# sasa_resnet50 at full size with 751 classes (the torch statement's count too).
FULL_SIZE_PARAMS_751 = 20_235_055


class TorchSASA(tnn.Module):
    """Eq. 3 in PyTorch, NCHW: a_ij = softmax_j(q_i . (k_j + r_{j-i})) over the
    in-image part of the K x K window, per head; s_i = sum_j a_ij v_j. r_{(a,b)}
    = concat(rel_h[:, a], rel_w[:, b]). Stride 2: attend, then 2x2 average
    pooling in ceil mode (PyTorch divides an edge window by its valid pixels)."""

    def __init__(self, in_channels, out_channels, heads, kernel_size, stride=1):
        super().__init__()
        self.C, self.G, self.K, self.stride = out_channels, heads, kernel_size, stride
        self.query_conv = tnn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key_conv = tnn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value_conv = tnn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.rel_h = tnn.Parameter(torch.randn(out_channels // 2, 1, 1, kernel_size, 1))
        self.rel_w = tnn.Parameter(torch.randn(out_channels // 2, 1, 1, 1, kernel_size))

    def _unfold(self, t):  # (B, C, H, W) -> (B, C, H, W, K, K), zero padded
        p = self.K // 2
        return F.pad(t, [p, p, p, p]).unfold(2, self.K, 1).unfold(3, self.K, 1)

    def forward(self, x):
        B, _, H, W = x.shape
        C, G, K = self.C, self.G, self.K
        q = self.query_conv(x)
        k = self._unfold(self.key_conv(x))
        v = self._unfold(self.value_conv(x))
        valid = self._unfold(x.new_ones(1, 1, H, W)) > 0.5               # (1, 1, H, W, K, K)
        k_rows, k_cols = k.split(C // 2, dim=1)
        k = torch.cat([k_rows + self.rel_h, k_cols + self.rel_w], dim=1)  # k_j + r_{j-i}
        logits = (q.view(B, G, C // G, H, W, 1, 1) * k.view(B, G, C // G, H, W, K, K)).sum(2)
        logits = logits.masked_fill(~valid, float("-inf")).view(B, G, H, W, K * K)
        a = logits.softmax(-1).view(B, G, 1, H, W, K, K)
        out = (a * v.view(B, G, C // G, H, W, K, K)).sum((-2, -1)).reshape(B, C, H, W)
        return F.avg_pool2d(out, 2, 2, ceil_mode=True) if self.stride == 2 else out


def _layer(inplanes, planes, blocks, stride, conv2=None):
    layers = []
    for i in range(blocks):
        s = stride if i == 0 else 1
        ds = None
        if i == 0:
            ds = tnn.Sequential(tnn.Conv2d(inplanes, planes * 4, 1, stride=s, bias=False),
                                tnn.BatchNorm2d(planes * 4))
        layers.append(tr.Bottleneck(inplanes, planes, s, ds, conv2(planes, s) if conv2 else None))
        inplanes = planes * 4
    return tnn.Sequential(*layers)


class TorchSASAResNet(tnn.Module):
    """torchvision-layout ResNet, layer4's conv2 = TorchSASA, StRA's 512-d BN head."""

    def __init__(self, num_classes, width=64, stage_sizes=(3, 4, 6, 3), heads=8, kernel_size=7,
                 last_stride=1, embedding_dim=512):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.maxpool = tnn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for stage, blocks in enumerate(stage_sizes):
            planes = width * 2**stage
            stride = 1 if stage == 0 else (last_stride if stage == 3 else 2)
            conv2 = (lambda p, s: TorchSASA(p, p, heads, kernel_size, s)) if stage == 3 else None
            setattr(self, f"layer{stage + 1}", _layer(inplanes, planes, blocks, stride, conv2))
            inplanes = planes * 4
        self.global_avg_pool = tnn.Sequential(tnn.AdaptiveAvgPool2d(1),
                                              tnn.Conv2d(inplanes, embedding_dim, 1, bias=False),
                                              tnn.BatchNorm2d(embedding_dim))
        self.classifier = tnn.Linear(embedding_dim, num_classes)
        tr._init_weights(self)  # kaiming fan_out convs (q/k/v too); rel_h / rel_w stay N(0, 1)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        emb = torch.flatten(self.global_avg_pool(x), 1)
        return {"embedding": emb, "logits": self.classifier(emb)}


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _sasa_params(m: TorchSASA) -> dict:
    """The torch module's tensors in SASA's Flax layout (as stra_jax.convert maps them)."""
    dense = {name: {"kernel": jnp.asarray(getattr(m, f"{name}_conv").weight.detach().numpy()[:, :, 0, 0].T)}
             for name in ("query", "key", "value")}
    rows = m.rel_h.detach().numpy().reshape(m.C // 2, m.K).T
    cols = m.rel_w.detach().numpy().reshape(m.C // 2, m.K).T
    return {"params": {**dense, "rel_rows": jnp.asarray(rows), "rel_cols": jnp.asarray(cols)}}


@pytest.mark.parametrize("stride,kernel_size,hw", [(2, 7, (9, 7)), (1, 3, (5, 6))])
def test_sasa_layer_matches_torch_statement(stride, kernel_size, hw):
    """Layer level, C_in != C_out, 4 heads: stride 2 on an odd map (ceil-mode
    pooling, windows wider than the map) and stride 1; gradients stay finite
    through the -inf mask."""
    torch.manual_seed(0)
    m = TorchSASA(12, 16, heads=4, kernel_size=kernel_size, stride=stride).eval()
    x = np.random.default_rng(0).standard_normal((2, *hw, 12)).astype(np.float32)
    with torch.no_grad():
        expected = m(_nchw(x)).numpy().transpose(0, 2, 3, 1)
    layer = SASA(16, heads=4, kernel_size=kernel_size, stride=stride)
    variables = _sasa_params(m)
    template = jax.eval_shape(layer.init, jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, template)
    out = jax.jit(layer.apply)(variables, x)
    assert out.shape == (2, -(-hw[0] // stride), -(-hw[1] // stride), 16) == expected.shape
    assert _rel_err(out, expected) < 1e-5
    grads = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply(v, x) ** 2)))(variables)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_narrow_sasa_resnet_matches_torch():
    """Eval mode, random weights and BatchNorm statistics, strict load: the
    embedding and the logits of a narrow SASA-ResNet (width 8: layer4 planes
    64, 8 heads of 8 channels, K 5 over an 8x4 map) agree to 1e-4."""
    torch.manual_seed(1)
    net = tr.randomize_bn_stats(TorchSASAResNet(NUM_IDS, width=8, stage_sizes=(1, 1, 1, 2), heads=8,
                                                kernel_size=5), seed=1).eval()
    model, variables = from_torch_state_dict(net.state_dict(), arch="sasa_resnet50", num_classes=NUM_IDS,
                                             width=8, stage_sizes=(1, 1, 1, 2), heads=8, kernel_size=5)
    assert variables["params"]["layer4_1"]["sasa"]["rel_rows"].shape == (5, 32)
    x = np.random.default_rng(1).standard_normal((2, 128, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(_nchw(x))
    out = jax.jit(lambda v, im: model.apply(v, im, train=False))(variables, x)
    assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, NUM_IDS)
    assert _rel_err(out["embedding"], expected["embedding"]) < 1e-4
    assert _rel_err(out["logits"], expected["logits"]) < 1e-4
    assert count_params(variables["params"]) == sum(p.numel() for p in net.parameters())


def _layer_and_vars(kernel_size=3, features=8, heads=2, seed=0):
    """SASA on 6 input channels, its jitted apply and N(0, 0.5^2) variables (from
    numpy: a jitted init compiles random-number kernels, slowly on CPU)."""
    layer = SASA(features, heads=heads, kernel_size=kernel_size)
    template = jax.eval_shape(layer.init, jax.random.key(0), jnp.zeros((1, 8, 8, 6)))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), jnp.float32), template)
    return layer, jax.jit(layer.apply), variables


def test_translation_equivariant_away_from_borders():
    """Intended: relative (not absolute) position embeddings make SASA
    translation equivariant. An input shifted by (2, 1) inside a zero border
    gives the output shifted by (2, 1) at every node whose window lies in the
    image before and after the shift (near the borders the set of in-image
    neighbours differs, so equality is not expected there)."""
    _, apply, variables = _layer_and_vars()
    x = np.zeros((1, 14, 12, 6), np.float32)
    x[:, 3:-3, 3:-3] = np.random.default_rng(2).standard_normal((1, 8, 6, 6))
    dy, dx = 2, 1
    out = np.asarray(apply(variables, x))
    shifted = np.asarray(apply(variables, np.roll(x, (dy, dx), axis=(1, 2))))
    p = 1  # K // 2
    ys, xs = slice(p, 14 - p - dy), slice(p, 12 - p - dx)
    np.testing.assert_allclose(shifted[:, p + dy:14 - p, p + dx:12 - p], out[:, ys, xs], rtol=1e-5, atol=1e-5)


def test_horizontal_flip_needs_symmetric_column_embeddings():
    """Intended: unlike an average over the window, SASA sees where in the
    window each neighbour is. Flipping the input left-right flips the output
    only if the column-offset embeddings are mirror-symmetric (rel_cols[b] ==
    rel_cols[K-1-b]); q, k, v are 1x1 (pointwise, so they commute with the flip
    whatever their weights) and the in-image mask is symmetric. With the random
    rel_cols the flipped input gives a clearly different output; with
    symmetrised ones it gives exactly the flipped output."""
    _, apply, variables = _layer_and_vars(kernel_size=3, features=8, heads=2)
    x = np.random.default_rng(3).standard_normal((1, 7, 9, 6)).astype(np.float32)

    def flip_gap(v):
        flipped_in = np.asarray(apply(v, np.ascontiguousarray(x[:, :, ::-1])))
        out = np.asarray(apply(v, x))
        return np.max(np.abs(flipped_in - out[:, :, ::-1])) / np.max(np.abs(out))

    assert flip_gap(variables) > 1e-2
    cols = variables["params"]["rel_cols"]
    symmetric = jax.tree.map(lambda a: a, variables)
    symmetric["params"]["rel_cols"] = (cols + cols[::-1]) / 2
    assert flip_gap(symmetric) < 1e-5


def test_bfloat16_computes_close_to_float32():
    _, apply, variables = _layer_and_vars(kernel_size=5, features=16, heads=4)
    x = np.random.default_rng(4).standard_normal((1, 6, 5, 6)).astype(np.float32)
    out32 = apply(variables, x)
    out16 = jax.jit(SASA(16, heads=4, kernel_size=5, dtype=jnp.bfloat16).apply)(variables, x)
    assert out16.dtype == jnp.bfloat16
    assert _rel_err(out16.astype(jnp.float32), out32) < 5e-2


def test_full_size_parameter_count_matches_torch_statement():
    """sasa_resnet50 with 751 classes: shapes only (eval_shape) against the
    torch statement built at full size (no forward)."""
    model = create_model("sasa_resnet50", num_classes=751)
    variables = abstract_variables(model)
    assert variables["params"]["layer4_2"]["sasa"]["query"]["kernel"].shape == (512, 512)
    assert count_params(variables["params"]) == FULL_SIZE_PARAMS_751
    torch_count = sum(p.numel() for p in TorchSASAResNet(751).parameters())
    assert torch_count == FULL_SIZE_PARAMS_751


def test_bad_options_fail_naming_them():
    with pytest.raises(ValueError, match=r"se_reduction.*SASAResNet"):
        create_model("sasa_resnet50", se_reduction=16)
    with pytest.raises(ValueError, match=r"SASA.*channels=64.*heads=3"):
        create_model("sasa_resnet50", width=8, heads=3)
    with pytest.raises(ValueError, match=r"sasa_stages"):
        create_model("sasa_resnet50", sasa_stages=(4,))
    with pytest.raises(ValueError, match=r"kernel_size=4"):
        create_model("sasa_resnet50", kernel_size=4)
    with pytest.raises(ValueError, match=r"SASA: channels=10 is not divisible by heads=4"):
        SASA(10, heads=4)
    with pytest.raises(ValueError, match=r"SASA: channels=9 \(heads=3\) must be even"):
        SASA(9, heads=3)  # no equal row / column halves of the relative embedding
    with pytest.raises(ValueError, match=r"stride=3"):
        SASA(16, heads=4, stride=3)
    with pytest.raises(ValueError, match=r"SASA: input shape"):
        jax.eval_shape(SASA(16, heads=4).init, jax.random.key(0), jnp.zeros((4, 4, 3)))


def test_frozen_layer4_keeps_sasa_trainable():
    model = create_model("sasa_resnet50", width=8, stage_sizes=(1, 1, 1, 2), num_classes=NUM_IDS)
    params = abstract_variables(model)["params"]
    mask = frozen_param_mask(model, params, ("layer4",))
    for block in ("layer4_0", "layer4_1"):
        assert not any(jax.tree.leaves(mask[block]["sasa"]))
        assert mask[block]["conv1"]["kernel"] and mask[block]["bn2"]["scale"] and mask[block]["conv3"]["kernel"]
    assert mask["layer4_0"]["downsample_conv"]["kernel"]
    assert not any(jax.tree.leaves(mask["layer3_0"])) and not mask["classifier"]["kernel"]
