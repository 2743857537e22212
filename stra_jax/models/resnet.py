"""ResNet-50 (torchvision layout) and StRA-ResNet-50 (the authors' network), NHWC.

Both share the torchvision v1.5 trunk: 7x7/2 stem, 3x3/2 max-pool, stages of
[3, 4, 6, 3] bottlenecks, stride on the 3x3 conv. In StRA-ResNet-50 the blocks of
the chosen stages (default: the last) replace their 3x3 conv by StRAttention and
the last stage runs at stride 1. Padding is explicit (PyTorch's symmetric
padding), so strided layers line up with PyTorch exactly.

Heads (``models/heads.py``): ``head="reid"`` with ``embedding_dim=512`` (StRA
default, the authors' code: GAP -> 1x1 conv -> BatchNorm embedding) or
``embedding_dim=None`` (ResNet-50 default, the paper's 2048-d variant: the GAP
feature is the embedding); ``head="face"`` (BN-Dropout-FC-BN). ``classifier``:
"linear" (logits) or "margin" (class weights for CosFace / ArcFace).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import StRAttention
from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.norm import batch_norm
from stra_jax.models.heads import CLASSIFIERS, HEADS, make_head

FREEZABLE = ("stem", "layer1", "layer2", "layer3", "layer4")


def _conv(features: int, kernel: int, stride: int, name: str, dtype: Any, param_dtype: Any) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, kernel_init=kaiming_fan_out, dtype=dtype, param_dtype=param_dtype,
                   name=name)


class Bottleneck(nn.Module):
    """1x1 -> BN -> ReLU -> spatial -> BN -> ReLU -> 1x1 (4x) -> BN, + shortcut, ReLU.

    The spatial op (:meth:`spatial`) is a 3x3 conv (``conv2``) or, with
    ``attention`` set, an :class:`StRAttention` (``stra``) built from those
    keyword arguments; other attention networks subclass and override
    :meth:`spatial` (``models/sasa_resnet.py``). ``frozen=True`` keeps the
    block's own (pretrained) BatchNorms in inference mode while training; a new
    attention module (not pretrained) still trains.
    """

    planes: int
    strides: int = 1
    downsample: bool = False
    attention: dict | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def spatial(self, x: jax.Array, *, train: bool) -> jax.Array:
        """The block's K x K op on (B, H, W, planes) at ``strides``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.attention is None:
            return _conv(self.planes, 3, self.strides, "conv2", **kw)(x)
        return StRAttention(stride=self.strides, name="stra", **self.attention, **kw)(x, train=train)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, frozen: bool = False) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bn_train = train and not frozen
        out = _conv(self.planes, 1, 1, "conv1", **kw)(x)
        out = nn.relu(batch_norm(bn_train, name="bn1", **kw)(out))
        out = self.spatial(out, train=train)
        out = nn.relu(batch_norm(bn_train, name="bn2", **kw)(out))
        out = _conv(self.planes * 4, 1, 1, "conv3", **kw)(out)
        out = batch_norm(bn_train, name="bn3", **kw)(out)
        shortcut = x
        if self.downsample:
            shortcut = _conv(self.planes * 4, 1, self.strides, "downsample_conv", **kw)(x)
            shortcut = batch_norm(bn_train, name="downsample_bn", **kw)(shortcut)
        return nn.relu(out + shortcut)


class ResNetBase(nn.Module):
    """The ResNet-50 trunk and the ReID / face head on (B, H, W, 3) normalised NHWC images.

    Subclasses choose the blocks (:meth:`make_block`), may add modules after a
    block (:meth:`after_block`) or change the stem (:meth:`stem`); each
    declares its own options as fields, so an option of another network (say
    ``heads`` for SE-ResNet) fails in ``create_model`` naming the option and
    the family.

    Returns the model contract's dict (``stra_jax.models``): ``features``
    (B, 4*8*width) pooled trunk output, ``embedding`` (B, embedding_dim or
    4*8*width) and, if ``num_classes`` > 0, ``logits`` (linear classifier) or
    ``class_weights`` (margin classifier). Outputs are float32 whatever
    ``dtype`` computes in.

    ``frozen``: groups of pretrained layers ("stem", "layer1".."layer4") whose
    BatchNorms stay in inference mode during ``train=True`` (the first epochs of
    the ReID recipes); pair it with :func:`frozen_param_mask` for the optimiser.
    Modules named in ``NEW_MODULES`` (attention that ImageNet weights lack) are
    never frozen.
    """

    num_classes: int = 0
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    last_stride: int = 2
    embedding_dim: int | None = None
    head: str = "reid"
    classifier: str = "linear"
    head_dropout: float = 0.4  # face head only
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    FREEZABLE: ClassVar[tuple[str, ...]] = FREEZABLE
    NEW_MODULES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if len(self.stage_sizes) != 4 or any(n < 1 for n in self.stage_sizes):
            raise ValueError(f"stage_sizes={tuple(self.stage_sizes)}: expected 4 positive block counts")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride={self.last_stride}: expected 1 or 2")
        if self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes}: expected >= 0 (0 = no classifier)")
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}: expected one of {sorted(HEADS)}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier={self.classifier!r}: expected one of {CLASSIFIERS}")
        if self.head == "face" and self.embedding_dim is None:
            raise ValueError("head='face' needs an embedding_dim (the FC layer's width), got None")
        super().__post_init__()

    def stem(self, x: jax.Array, *, train: bool) -> jax.Array:
        """torchvision's stem: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (padding 1)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _conv(self.width, 7, 2, "conv1", **kw)(x)
        x = nn.relu(batch_norm(train, name="bn1", **kw)(x))
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    def make_block(self, stage: int, index: int, planes: int, strides: int) -> nn.Module:
        """Block ``index`` of ``stage`` (0-based), named ``layer{stage+1}_{index}``."""
        return Bottleneck(planes, strides=strides, downsample=index == 0, name=f"layer{stage + 1}_{index}",
                          dtype=self.dtype, param_dtype=self.param_dtype)

    def after_block(self, stage: int, index: int, x: jax.Array, *, train: bool) -> jax.Array:
        """Modules inserted after a block (none here; see ``models/nonlocal_resnet.py``)."""
        return x

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool,
                 frozen: Sequence[str] = ()) -> dict[str, jax.Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images shape {images.shape}: expected (batch, height, width, 3) NHWC")
        unknown = sorted(set(frozen) - set(self.FREEZABLE))
        if unknown:
            raise ValueError(f"frozen={tuple(frozen)}: unknown group(s) {unknown}; expected some of {self.FREEZABLE}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = self.stem(images.astype(self.dtype), train=train and "stem" not in frozen)
        for stage, blocks in enumerate(self.stage_sizes):
            planes = self.width * 2**stage
            stage_stride = 1 if stage == 0 else (self.last_stride if stage == 3 else 2)
            for index in range(blocks):
                # downsample (stride or 4x channel change) is always in block 0
                block = self.make_block(stage, index, planes, stage_stride if index == 0 else 1)
                x = block(x, train=train, frozen=f"layer{stage + 1}" in frozen)
                x = self.after_block(stage, index, x, train=train)

        head_kw = dict(num_classes=self.num_classes, embedding_dim=self.embedding_dim,
                       classifier=self.classifier, **kw)
        if self.head == "face":
            head_kw["dropout"] = self.head_dropout
        head = make_head(self.head, **head_kw)
        nn.share_scope(self, head)  # head parameters at the top level: embed_conv, embed_bn, classifier
        return head(x, train=train)

    def frozen_param_mask(self, params: Any, frozen: Sequence[str]) -> Any:
        """See :func:`frozen_param_mask`."""
        return frozen_param_mask(params, frozen, new_modules=self.NEW_MODULES)


class ResNet(ResNetBase):
    """ResNet-50 / StRA-ResNet-50: ``stra_stages`` replace the 3x3 conv of
    their bottlenecks by :class:`StRAttention` (``heads`` .. ``mode_interaction``;
    ``attention_implementation`` / ``attention_grouped_conv`` change only how it
    computes)."""

    stra_stages: Sequence[int] = ()
    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    gate: str = "sigmoid"
    mode_attention: bool = True
    mode_interaction: bool = True
    attention_implementation: str = "auto"  # computation only: see LocalAttention
    attention_grouped_conv: str = "auto"    # computation only: see conv1x1

    NEW_MODULES: ClassVar[tuple[str, ...]] = ("stra",)

    def __post_init__(self) -> None:
        if any(s not in (0, 1, 2, 3) for s in self.stra_stages):
            raise ValueError(f"stra_stages={tuple(self.stra_stages)}: expected stage indices in 0..3")
        super().__post_init__()

    def make_block(self, stage: int, index: int, planes: int, strides: int) -> nn.Module:
        attention = None
        if stage in self.stra_stages:
            attention = dict(heads=self.heads, kernel_size=self.kernel_size, reduction=self.reduction,
                             gate=self.gate, mode_attention=self.mode_attention,
                             mode_interaction=self.mode_interaction,
                             implementation=self.attention_implementation,
                             grouped_conv=self.attention_grouped_conv)
        return Bottleneck(planes, strides=strides, downsample=index == 0, attention=attention,
                          name=f"layer{stage + 1}_{index}", dtype=self.dtype, param_dtype=self.param_dtype)


def frozen_param_mask(params: Any, frozen: Sequence[str], new_modules: Sequence[str] = ("stra",)) -> Any:
    """Pytree of bools like ``params``: True for the pretrained parameters of the
    ``frozen`` groups (the same ones whose BatchNorms ``ResNet(frozen=...)`` keeps
    in inference mode); modules named in ``new_modules`` (StRA, SASA) inside a
    block, modules between blocks (``nonlocal3_0``) and the head are never frozen."""
    def is_frozen(path, _leaf) -> bool:
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[0] in ("conv1", "bn1"):
            return "stem" in frozen
        stage = keys[0].split("_")[0]
        return stage in frozen and not set(new_modules) & set(keys)
    return jax.tree_util.tree_map_with_path(is_frozen, params)
