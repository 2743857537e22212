"""Face ResNet-50 and StRA-ResNet-50 (paper Section 5.2), NHWC, trained from scratch.

Layout (ArcFace's ResNets: insightface fresnet / IResNet "unit" layout, with the
torchvision bottleneck of ``models/resnet.py``)::

    stem     3x3 conv, stride ``stem_stride`` (1), ``width`` (64) channels, BN, ReLU; no max-pool
    layer1   3 Bottlenecks, planes  64 -> 256 channels,  stride 2 in the first block
    layer2   4 Bottlenecks, planes 128 -> 512 channels,  stride 2 in the first block
    layer3   6 Bottlenecks, planes 256 -> 1024 channels, stride 2 in the first block
    layer4   3 Bottlenecks, planes 512 -> 2048 channels, stride 2 in the first block
    head     BN -> Dropout(0.4) -> flatten -> FC (512) -> BN = the embedding (``FaceHead``)

Spatial sizes at 112x112: stem 112x112, layer1 56x56, layer2 28x28, layer3
14x14, layer4 7x7. The reID trunk (7x7/2 stem + max-pool, 1/32) would leave a
4x4 map of a 112x112 face; ArcFace keeps the resolution in the stem and strides
in every stage instead, so the last stage sees a 7x7 map, where StRA's 3x3
windows and 8 modes still have a spatial structure (eyes, nose, mouth) to find.
``stra_stages=(3,)`` (``stra_resnet50_face``) puts StRA in the last stage, as in
the paper; each of its blocks replaces the 3x3 conv (first block: stride 2).

The face head's FC acts on the *flattened* 7x7x2048 map (100,352 inputs), not on
a pooled vector: that layer alone has 100,352 * 512 + 512 = 51,380,736
parameters, of the 74,886,208 of ``resnet50_face`` without classifier
(67,950,136 for ``stra_resnet50_face``, whose StRA replaces three 3x3 convs; a
CASIA-WebFace classifier adds 512 * 10,572 = 5,412,864). So the parameters depend on the input size:
``input_size`` fixes it (112x112; ``models/io.py`` initialises a family that
has this option at that size); other sizes fail, at ``init`` and at ``apply``,
naming the size the model is built for.

No pretrained groups: the family has no ``FREEZABLE`` and ``frozen`` must be empty.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks
from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.norm import batch_norm
from stra_jax.models.heads import CLASSIFIERS, make_head
from stra_jax.models.resnet import Bottleneck


def last_stage_size(input_size: Sequence[int], stem_stride: int = 1) -> tuple[int, int]:
    """(height, width) of the last-stage map for an (H, W) input: each stride-2
    layer (3x3 pad 1, or 1x1 shortcut) maps n to ceil(n / 2), so H / (16 * stem_stride)
    rounded up. Raises if an input side is shorter than that total stride (the
    last stage would be smaller than 1x1: its blocks would only see padding)."""
    total = 16 * stem_stride
    h, w = (int(v) for v in input_size)
    if h < total or w < total:
        raise ValueError(f"input size {h}x{w}: the last stage would be smaller than 1x1 (total stride {total} "
                         f"with stem_stride={stem_stride}); expected height and width >= {total}")
    return math.ceil(h / total), math.ceil(w / total)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class FaceResNet(nn.Module):
    """Face (StRA-)ResNet on (B, H, W, 3) normalised NHWC images, (H, W) = ``input_size``.

    Returns the model contract's dict (``stra_jax.models``): ``features``
    (B, 32*width) the pooled last-stage map, ``embedding`` (B, embedding_dim)
    from BN -> Dropout -> flatten -> FC -> BN on the (B, H/16, W/16, 32*width)
    map, and, if ``num_classes`` > 0, ``class_weights`` (embedding_dim,
    num_classes) (``classifier="margin"``, for CosFace / ArcFace) or ``logits``
    (``"linear"``). Outputs are float32 whatever ``dtype`` computes in. Training
    with ``head_dropout`` > 0 needs a ``"dropout"`` rng.
    """

    num_classes: int = 0
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    stem_stride: int = 1
    stra_stages: Sequence[int] = ()
    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    gate: str = "sigmoid"
    mode_attention: bool = True
    mode_interaction: bool = True
    attention_implementation: str = "auto"  # computation only: see LocalAttention
    attention_grouped_conv: str = "auto"    # computation only: see conv1x1
    embedding_dim: int = 512
    head_dropout: float = 0.4
    classifier: str = "margin"
    input_size: Sequence[int] = (112, 112)  # sizes the face FC: parameters depend on it
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if len(self.stage_sizes) != 4 or not all(_positive_int(n) for n in self.stage_sizes):
            raise ValueError(f"stage_sizes={tuple(self.stage_sizes)}: expected 4 positive block counts")
        if not _positive_int(self.width):
            raise ValueError(f"width={self.width!r}: expected a positive integer (stem channels)")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={self.stem_stride!r}: expected 1 (ArcFace, 7x7 last stage at 112x112) "
                             "or 2")
        if any(s not in (0, 1, 2, 3) for s in self.stra_stages):
            raise ValueError(f"stra_stages={tuple(self.stra_stages)}: expected stage indices in 0..3")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes!r}: expected an integer >= 0 (0 = no classifier)")
        if not _positive_int(self.embedding_dim):
            raise ValueError(f"embedding_dim={self.embedding_dim!r}: expected a positive integer (the FC's width)")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout={self.head_dropout!r}: expected a rate in [0, 1)")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier={self.classifier!r}: expected one of {CLASSIFIERS}")
        if len(self.input_size) != 2 or not all(_positive_int(v) for v in self.input_size):
            raise ValueError(f"input_size={tuple(self.input_size)}: expected (height, width), positive integers")
        last_stage_size(self.input_size, self.stem_stride)
        if self.stra_stages:  # fail at construction, not at the first call that builds StRA
            checks.check_local_attention(self.heads, self.kernel_size, self.reduction, 1, 1,
                                         self.attention_implementation)
            checks.check_gate(self.gate)
            checks.check_grouped_conv(self.attention_grouped_conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool,
                 frozen: Sequence[str] = ()) -> dict[str, jax.Array]:
        if tuple(frozen):
            raise ValueError(f"frozen={tuple(frozen)}: the FaceResNet family has no pretrained groups to freeze "
                             "(its networks train from scratch); expected frozen=()")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images shape {images.shape}: expected (batch, height, width, 3) NHWC")
        native = tuple(int(v) for v in self.input_size)
        if images.shape[1:3] != native:
            h, w = images.shape[1:3]
            raise ValueError(f"images shape {images.shape}: this FaceResNet is built for {native[0]}x{native[1]} "
                             f"inputs (input_size; the face FC flattens the last-stage map), got {h}x{w}: resize "
                             f"the images or create the model with input_size=({h}, {w})")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = images.astype(self.dtype)
        x = nn.Conv(self.width, (3, 3), strides=(self.stem_stride,) * 2, padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=kaiming_fan_out, name="conv1", **kw)(x)
        x = nn.relu(batch_norm(train, name="bn1", **kw)(x))  # no max-pool: keeps 112x112

        attention = dict(heads=self.heads, kernel_size=self.kernel_size, reduction=self.reduction,
                         gate=self.gate, mode_attention=self.mode_attention,
                         mode_interaction=self.mode_interaction,
                         implementation=self.attention_implementation,
                         grouped_conv=self.attention_grouped_conv)
        for stage, blocks in enumerate(self.stage_sizes):
            for block in range(blocks):
                x = Bottleneck(
                    self.width * 2**stage,
                    strides=2 if block == 0 else 1,  # every stage halves the map: 112 -> 56 -> 28 -> 14 -> 7
                    downsample=block == 0,
                    attention=attention if stage in self.stra_stages else None,
                    name=f"layer{stage + 1}_{block}",
                    **kw,
                )(x, train=train)

        head = make_head("face", num_classes=self.num_classes, embedding_dim=self.embedding_dim,
                         dropout=self.head_dropout, classifier=self.classifier, **kw)
        nn.share_scope(self, head)  # top-level face_bn_map, face_fc, face_bn_embed, classifier
        return head(x, train=train)
