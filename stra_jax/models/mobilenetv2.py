"""MobileNetV2 (torchvision layout) and StRA-MobileNetV2, NHWC.

Layout, as ``torchvision.models.mobilenet_v2`` (so its ImageNet weights import,
``convert/mobilenetv2.py``): ``features_0`` 3x3/2 conv (no bias) + BN + ReLU6;
then the inverted-residual rows (t, c, n, s) = (1, 16, n0, 1), (6, 24, n1, 2),
(6, 32, n2, 2), (6, 64, n3, 2), (6, 96, n4, 1), (6, 160, n5, s5), (6, 320, n6, 1)
with n from ``stage_blocks`` (torchvision: 1, 2, 3, 4, 3, 3, 1) and
s5 = ``last_stride`` (torchvision: 2); then ``features_{1 + sum(n)}``
(``features_18`` by default) 1x1 conv + BN + ReLU6. A block (``features_i``,
i = 1..17) is [1x1 ``expand_conv`` + ``expand_bn`` + ReLU6 if t != 1] ->
3x3 depthwise ``dw_conv`` (stride s in the row's first block) + ``dw_bn`` +
ReLU6 -> 1x1 ``project_conv`` + ``project_bn`` (linear), plus the input when
the stride is 1 and the channels do not change. Channels c * width_mult are
rounded by torchvision's ``_make_divisible(v, 8)``; padding is explicit and
symmetric (PyTorch's), so strided layers line up with PyTorch exactly.

Channels (stem | rows 0..6 | last conv; hidden = t * block input in brackets):

    x1.0: 32 | 16 [32], 24 [96, 144], 32 [144, 192], 64 [192, 384], 96 [384, 576],
          160 [576, 960], 320 [960] | 1280
    x1.4: 48 | 24 [48], 32 [144, 192], 48 [192, 288], 88 [288, 528], 136 [528, 816],
          224 [816, 1344], 448 [1344] | 1792

Parameters (measured with ``abstract_variables``; equal to torchvision's
``sum(p.numel())``): ``mobilenetv2_x1_0`` 3,504,872 and ``mobilenetv2_x1_4``
6,108,776 with 1000 classes (the GAP feature, 1280 / 1792-d, is the embedding
and ``classifier`` is torchvision's ``classifier.1``; torchvision's Dropout(0.2)
before it is left out, it is the identity in evaluation). With 751 classes:
``stra_mobilenetv2_x1_0`` 3,867,343 and ``stra_mobilenetv2_x1_4`` 6,789,351
(as registered: G 8, K 3, r 2), against 3,265,519 / 5,619,567 for the same
networks without StRA (last stride 1, 512-d head): StRA's 632,928 / 1,213,416
parameters replace depthwise kernels of 31,104 / 43,632.

StRA-MobileNetV2: in every block of the rows in ``stra_stages`` the 3x3
depthwise conv becomes :class:`StRAttention` (``stra``, same stride) on the
block's hidden (expanded) channels; ``dw_bn`` and ReLU6 after it stay (as
StRA-ResNet keeps ``bn2``), so torchvision's weights fill everything but the
attention and the head. The registered ``stra_mobilenetv2_*`` use rows (5, 6):
every block at 1/32 of the input in torchvision (features.14-16, the 160 row,
and features.17, the 320 row), here at 1/16 with ``last_stride=1``, and the
authors' 512-d BN embedding head. Each row needs hidden % heads == 0 and
(hidden // reduction) a positive multiple of heads (LocalAttention's logit
branch); the constructor checks every StRA block.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import StRAttention
from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.norm import batch_norm
from stra_jax.models.heads import CLASSIFIERS, ReIDHeadOptions
from stra_jax.models.stra_options import StRAOptions

# torchvision's inverted_residual_setting without n: (expand ratio t, channels c, stride s).
ROWS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))
LAST_STRIDE_ROW = 5  # the last downsampling row (160 channels): its stride is ``last_stride``
FREEZABLE = ("stem",) + tuple(f"stage{r + 1}" for r in range(len(ROWS))) + ("last_conv",)


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to the nearest multiple of
    ``divisor`` (at least ``divisor``), one step up if that loses over 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: ``index`` is its torchvision ``features`` index."""

    index: int
    row: int
    expand_ratio: int
    in_channels: int
    hidden: int
    out_channels: int
    stride: int
    stra: bool


def block_specs(width_mult: float, stage_blocks: Sequence[int], last_stride: int,
                stra_stages: Sequence[int]) -> list[BlockSpec]:
    """Every block of the network in order (features_1 .. features_{sum(n)})."""
    specs, channels, index = [], make_divisible(32 * width_mult), 1
    for row, ((t, c, s), n) in enumerate(zip(ROWS, stage_blocks)):
        out = make_divisible(c * width_mult)
        stride = last_stride if row == LAST_STRIDE_ROW else s
        for i in range(n):
            specs.append(BlockSpec(index, row, t, channels, channels * t, out, stride if i == 0 else 1,
                                   row in stra_stages))
            channels, index = out, index + 1
    return specs


def _conv(features: int, kernel: int, stride: int, name: str, groups: int = 1, **kw: Any) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=False, kernel_init=kaiming_fan_out, name=name, **kw)


class ConvBNReLU6(nn.Module):
    """torchvision's ``Conv2dNormActivation``: ``conv`` (no bias) -> ``bn`` -> ReLU6.
    (B, H, W, C) -> (B, ceil(H/stride), ceil(W/stride), features)."""

    features: int
    kernel: int = 1
    stride: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _conv(self.features, self.kernel, self.stride, "conv", **kw)(x)
        return nn.relu6(batch_norm(train, name="bn", **kw)(x))


class InvertedResidual(nn.Module):
    """torchvision's ``InvertedResidual`` on (B, H, W, in) -> (B, ceil(H/s), ceil(W/s), out).

    ``attention`` (StRAttention keyword arguments) replaces the depthwise conv
    by ``stra``. ``frozen=True`` keeps the block's pretrained BatchNorms in
    inference mode while training; StRA (not pretrained) still trains.
    """

    spec: BlockSpec
    attention: dict | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, frozen: bool = False) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        spec, bn_train = self.spec, train and not frozen
        h = x
        if spec.expand_ratio != 1:
            h = _conv(spec.hidden, 1, 1, "expand_conv", **kw)(h)
            h = nn.relu6(batch_norm(bn_train, name="expand_bn", **kw)(h))
        if self.attention is None:
            h = _conv(spec.hidden, 3, spec.stride, "dw_conv", groups=spec.hidden, **kw)(h)
        else:
            h = StRAttention(stride=spec.stride, name="stra", **self.attention, **kw)(h, train=train)
        h = nn.relu6(batch_norm(bn_train, name="dw_bn", **kw)(h))
        h = _conv(spec.out_channels, 1, 1, "project_conv", **kw)(h)
        h = batch_norm(bn_train, name="project_bn", **kw)(h)
        if spec.stride == 1 and spec.in_channels == spec.out_channels:
            h = h + x
        return h


class MobileNetV2(StRAOptions, ReIDHeadOptions):
    """MobileNetV2 / StRA-MobileNetV2 on (B, H, W, 3) normalised NHWC images; see
    the module docstring for the layout and StRA's placement.

    Returns the model contract's dict (``stra_jax.models``), float32: ``features``
    (B, last conv channels) the GAP of the last map, ``embedding`` (B,
    embedding_dim, or the GAP feature with ``embedding_dim=None``) and, with
    ``num_classes`` > 0, ``logits`` or ``class_weights`` (``classifier``).
    ``frozen``: groups of ``FREEZABLE`` ("stem" = features_0, "stage1".."stage7"
    = rows 0..6, "last_conv") whose BatchNorms stay in inference mode; pair it
    with :meth:`frozen_param_mask` for the optimiser.
    """

    num_classes: int = 0
    width_mult: float = 1.0
    stage_blocks: Sequence[int] = (1, 2, 3, 4, 3, 3, 1)
    last_stride: int = 2
    embedding_dim: int | None = None
    classifier: str = "linear"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    FREEZABLE: ClassVar[tuple[str, ...]] = FREEZABLE
    STRA_UNITS: ClassVar[tuple[str, int]] = ("row", len(ROWS))  # stra_stages are rows 0..6
    STRA_WIDTH_OPTION: ClassVar[str] = "width_mult"

    def __post_init__(self) -> None:
        if isinstance(self.width_mult, bool) or not isinstance(self.width_mult, (int, float)) \
                or not self.width_mult > 0:
            raise ValueError(f"width_mult={self.width_mult!r}: expected a positive number")
        blocks = tuple(self.stage_blocks)
        if len(blocks) != len(ROWS) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks):
            raise ValueError(f"stage_blocks={blocks}: expected {len(ROWS)} positive block counts "
                             "(torchvision: (1, 2, 3, 4, 3, 3, 1))")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride={self.last_stride}: expected 1 or 2")
        if self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes}: expected >= 0 (0 = no classifier)")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier={self.classifier!r}: expected one of {CLASSIFIERS}")
        if self.embedding_dim is not None and (not isinstance(self.embedding_dim, int) or self.embedding_dim < 1):
            raise ValueError(f"embedding_dim={self.embedding_dim!r}: expected a positive integer or None")
        super().__post_init__()  # then StRAOptions' checks (stra_stages rows, every StRA block's channels)

    def spatial_channels(self, row: int) -> list[tuple[str, int]]:
        """(block, hidden channels) of row ``row``'s blocks: StRA replaces their
        depthwise conv on the expanded channels (StRAOptions checks them)."""
        return [(f"features.{spec.index} (row {spec.row})", spec.hidden)
                for spec in block_specs(self.width_mult, self.stage_blocks, self.last_stride, ()) if spec.row == row]

    def blocks(self) -> list[BlockSpec]:
        """The inverted-residual blocks (:class:`BlockSpec`), features_1 onwards."""
        return block_specs(self.width_mult, self.stage_blocks, self.last_stride, self.stra_stages)

    @property
    def last_channels(self) -> int:
        """The last conv's width: torchvision's ``_make_divisible(1280 * max(1, w), 8)``."""
        return make_divisible(1280 * max(1.0, self.width_mult))

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool,
                 frozen: Sequence[str] = ()) -> dict[str, jax.Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images shape {images.shape}: expected (batch, height, width, 3) NHWC")
        unknown = sorted(set(frozen) - set(self.FREEZABLE))
        if unknown:
            raise ValueError(f"frozen={tuple(frozen)}: unknown group(s) {unknown}; expected some of {self.FREEZABLE}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvBNReLU6(make_divisible(32 * self.width_mult), 3, 2, name="features_0", **kw)(
            images.astype(self.dtype), train=train and "stem" not in frozen)
        specs = self.blocks()
        for spec in specs:
            block = InvertedResidual(spec, self.block_attention(spec.row), name=f"features_{spec.index}", **kw)
            x = block(x, train=train, frozen=f"stage{spec.row + 1}" in frozen)
        x = ConvBNReLU6(self.last_channels, 1, 1, name=f"features_{len(specs) + 1}", **kw)(
            x, train=train and "last_conv" not in frozen)

        head = self.reid_head()
        nn.share_scope(self, head)  # head parameters at the top level: embed_conv, embed_bn, classifier
        return head(x, train=train)

    def frozen_param_mask(self, params: Any, frozen: Sequence[str]) -> Any:
        """Pytree of bools like ``params``: True for the pretrained parameters of
        the ``frozen`` groups (the BatchNorms ``__call__(frozen=...)`` keeps in
        inference mode and the convs beside them); ``stra`` modules and the head
        (``embed_conv``, ``embed_bn``, ``classifier``) are never frozen."""
        specs = self.blocks()
        groups = {"features_0": "stem", f"features_{len(specs) + 1}": "last_conv"}
        groups.update({f"features_{s.index}": f"stage{s.row + 1}" for s in specs})

        def is_frozen(path, _leaf) -> bool:
            keys = [str(getattr(k, "key", k)) for k in path]
            return groups.get(keys[0]) in frozen and "stra" not in keys
        return jax.tree_util.tree_map_with_path(is_frozen, params)


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

register_model("mobilenetv2_x1_0", MobileNetV2, width_mult=1.0)
register_model("mobilenetv2_x1_4", MobileNetV2, width_mult=1.4)
# StRA in the last stage: every block at 1/32 (torchvision's rows 160 x3 and 320 x1),
# in place of the depthwise 3x3. r = 2, not ResNet's 4: x1.4's first 1/32 block
# has 816 hidden channels, and 816 / 4 = 204 logit channels do not split into 8
# modes; one r for both widths keeps x1.0 and x1.4 comparable.
register_model("stra_mobilenetv2_x1_0", MobileNetV2, width_mult=1.0, stra_stages=(5, 6), heads=8, kernel_size=3,
               reduction=2, last_stride=1, embedding_dim=512)
register_model("stra_mobilenetv2_x1_4", MobileNetV2, width_mult=1.4, stra_stages=(5, 6), heads=8, kernel_size=3,
               reduction=2, last_stride=1, embedding_dim=512)
