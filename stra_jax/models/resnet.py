"""ResNet-50 (torchvision layout) and StRA-ResNet-50 (the authors' network), NHWC.

Both share the torchvision v1.5 trunk: 7x7/2 stem, 3x3/2 max-pool, stages of
[3, 4, 6, 3] bottlenecks, stride on the 3x3 conv. In StRA-ResNet-50 the blocks of
the chosen stages (default: the last) replace their 3x3 conv by StRAttention and
the last stage runs at stride 1. Padding is explicit (PyTorch's symmetric
padding), so strided layers line up with PyTorch exactly.

The ReID head (``models/heads.py``): ``embedding_dim=512`` (StRA default, the
authors' code: GAP -> 1x1 conv -> BatchNorm embedding) or ``embedding_dim=None``
(ResNet-50 default, the paper's 2048-d variant: the GAP feature is the
embedding). ``classifier``: "linear" (logits) or "margin" (class weights for
CosFace / ArcFace). The face networks (``models/face_resnet.py``) are the same
trunk (:class:`ResNetTrunk`) with their own stem, strides and head.
"""
from __future__ import annotations

import numbers
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import StRAttention
from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.norm import batch_norm
from stra_jax.models.heads import CLASSIFIERS, ReIDHeadOptions
from stra_jax.models.stra_options import StRAOptions

FREEZABLE = ("stem", "layer1", "layer2", "layer3", "layer4")


def _is_int(value: Any) -> bool:
    """An integer (NumPy's too: dataset sizes), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


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


class ResNetTrunk(nn.Module):
    """The bottleneck trunk every ResNet family shares, on (B, H, W, 3) normalised NHWC images.

    ``stage_sizes`` stages of bottlenecks with planes ``width * 2**stage``
    (4x that out), then a head under the family's own name scope. A family
    chooses its layout by hooks, each with a default:

    * :meth:`stem` (torchvision's 7x7/2 conv + max-pool),
    * :meth:`stage_stride` (1 in stage 0, else 2; on the stage's first block),
    * :meth:`make_block` (a :class:`Bottleneck`; StRA replaces its 3x3 conv in
      the ``stra_stages`` of a family that also subclasses :class:`StRAOptions`),
    * :meth:`after_block` (modules between blocks; none),
    * :meth:`make_head` (required: the head module on the last map),
    * :meth:`check_inputs` (image shape and ``frozen`` groups).

    Each family declares its own options as fields, so an option of another
    network (say ``heads`` for SE-ResNet) fails in ``create_model`` naming the
    option and the family. Returns the model contract's dict
    (``stra_jax.models``), float32 whatever ``dtype`` computes in.

    ``frozen``: groups of pretrained layers (``FREEZABLE``: "stem",
    "layer1".."layer4") whose BatchNorms stay in inference mode during
    ``train=True``; pair it with :meth:`frozen_param_mask` for the optimiser.
    Modules named in ``NEW_MODULES`` (attention that ImageNet weights lack) are
    never frozen.
    """

    num_classes: int = 0
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    classifier: str = "linear"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    FREEZABLE: ClassVar[tuple[str, ...]] = FREEZABLE
    NEW_MODULES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if len(self.stage_sizes) != 4 or not all(_positive_int(n) for n in self.stage_sizes):
            raise ValueError(f"stage_sizes={tuple(self.stage_sizes)}: expected 4 positive block counts")
        if not _positive_int(self.width):
            raise ValueError(f"width={self.width!r}: expected a positive integer (stem channels)")
        if not _is_int(self.num_classes) or self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes!r}: expected an integer >= 0 (0 = no classifier)")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier={self.classifier!r}: expected one of {CLASSIFIERS}")
        super().__post_init__()

    def check_inputs(self, images: jax.Array, frozen: tuple[str, ...]) -> None:
        """Images must be (B, H, W, 3); ``frozen`` groups must be in ``FREEZABLE``."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images shape {images.shape}: expected (batch, height, width, 3) NHWC")
        unknown = sorted(set(frozen) - set(self.FREEZABLE))
        if unknown:
            raise ValueError(f"frozen={frozen}: unknown group(s) {unknown}; expected some of {self.FREEZABLE}")

    def stem(self, x: jax.Array, *, train: bool) -> jax.Array:
        """torchvision's stem: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (padding 1)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _conv(self.width, 7, 2, "conv1", **kw)(x)
        x = nn.relu(batch_norm(train, name="bn1", **kw)(x))
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    def stage_stride(self, stage: int) -> int:
        """The stride of ``stage``'s first block (0-based stage)."""
        return 1 if stage == 0 else 2

    def make_block(self, stage: int, index: int, planes: int, strides: int) -> nn.Module:
        """Block ``index`` of ``stage`` (0-based), named ``layer{stage+1}_{index}``: a
        :class:`Bottleneck`, with StRA in place of its 3x3 conv where a family
        with :class:`StRAOptions` puts it."""
        attention = self.block_attention(stage) if isinstance(self, StRAOptions) else None
        return Bottleneck(planes, strides=strides, downsample=index == 0, attention=attention,
                          name=f"layer{stage + 1}_{index}", dtype=self.dtype, param_dtype=self.param_dtype)

    def after_block(self, stage: int, index: int, x: jax.Array, *, train: bool) -> jax.Array:
        """Modules inserted after a block (none here; see ``models/nonlocal_resnet.py``)."""
        return x

    def make_head(self) -> nn.Module:
        """The head on the last (B, h, w, 32*width) map (``models/heads.py``)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_head()")

    def spatial_channels(self, stage: int) -> list[tuple[str, int]]:
        """(blocks, channels) of the spatial op of ``stage``'s blocks: all see
        ``width * 2**stage`` (attention options are checked against it)."""
        return [(f"layer{stage + 1} (stage {stage})", self.width * 2**stage)]

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool,
                 frozen: Sequence[str] = ()) -> dict[str, jax.Array]:
        frozen = tuple(frozen)
        self.check_inputs(images, frozen)
        x = self.stem(images.astype(self.dtype), train=train and "stem" not in frozen)
        for stage, blocks in enumerate(self.stage_sizes):
            planes = self.width * 2**stage
            for index in range(blocks):
                # downsample (stride or 4x channel change) is always in block 0
                block = self.make_block(stage, index, planes, self.stage_stride(stage) if index == 0 else 1)
                x = block(x, train=train, frozen=f"layer{stage + 1}" in frozen)
                x = self.after_block(stage, index, x, train=train)
        head = self.make_head()
        nn.share_scope(self, head)  # head parameters at the top level (embed_conv, face_fc, classifier, ...)
        return head(x, train=train)

    def frozen_param_mask(self, params: Any, frozen: Sequence[str]) -> Any:
        """See :func:`frozen_param_mask`."""
        return frozen_param_mask(params, frozen, new_modules=self.NEW_MODULES)


class ResNetBase(ResNetTrunk, ReIDHeadOptions):
    """The ImageNet-layout ResNet-50 trunk (torchvision stem, stride 2 in stages
    1-3 and ``last_stride`` in stage 4) with the ReID head, for the ReID families
    (ResNet, SE-, non-local, SASA-ResNet).

    Outputs: ``features`` (B, 4*8*width) pooled trunk output, ``embedding``
    (B, embedding_dim or 4*8*width) and, if ``num_classes`` > 0, ``logits``
    (linear classifier) or ``class_weights`` (margin classifier); the head's
    bag-of-tricks options (``pooling``, ``bnneck``, ``centers``) come from
    :class:`~stra_jax.models.heads.ReIDHeadOptions`.
    """

    last_stride: int = 2
    embedding_dim: int | None = None

    def __post_init__(self) -> None:
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride={self.last_stride}: expected 1 or 2")
        super().__post_init__()

    def stage_stride(self, stage: int) -> int:
        """1 in stage 0, ``last_stride`` in stage 3, else 2."""
        return self.last_stride if stage == 3 else super().stage_stride(stage)

    def make_head(self) -> nn.Module:
        """The ReID head: pool (-> 1x1 conv -> BN with ``embedding_dim``) -> classifier."""
        return self.reid_head()


class ResNet(ResNetBase, StRAOptions):
    """ResNet-50 / StRA-ResNet-50: ``stra_stages`` replace the 3x3 conv of
    their bottlenecks by :class:`StRAttention` (StRA's options:
    :class:`~stra_jax.models.stra_options.StRAOptions`)."""

    NEW_MODULES: ClassVar[tuple[str, ...]] = ("stra",)


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


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

# torchvision ResNet-50 (stride on the 3x3 conv), GAP feature as embedding.
register_model("resnet50", ResNet, stage_sizes=(3, 4, 6, 3), last_stride=2, stra_stages=(), embedding_dim=None)
# The authors' StRA-ResNet-50 (stru_resnet50): StRA in the last stage, last
# stride 1, G 8, K 3, r 4, 512-d BN embedding.
register_model("stra_resnet50", ResNet, stage_sizes=(3, 4, 6, 3), last_stride=1, stra_stages=(3,), heads=8,
               kernel_size=3, reduction=4, embedding_dim=512)
