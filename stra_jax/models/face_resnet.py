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

No pretrained groups: the family's ``FREEZABLE`` is empty and ``frozen`` must be too.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from stra_jax.layers.norm import batch_norm
from stra_jax.models.heads import make_head
from stra_jax.models.resnet import ResNetTrunk, _conv, _positive_int
from stra_jax.models.stra_options import StRAOptions


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


class FaceResNet(ResNetTrunk, StRAOptions):
    """Face (StRA-)ResNet on (B, H, W, 3) normalised NHWC images, (H, W) = ``input_size``.

    The ResNet trunk (:class:`~stra_jax.models.resnet.ResNetTrunk`) with the
    face layout's hooks: a 3x3 stem at ``stem_stride`` without max-pool, stride
    2 in the first block of every stage, and the face head; StRA's options
    (:class:`~stra_jax.models.stra_options.StRAOptions`) put StRA in
    ``stra_stages``.

    Returns the model contract's dict (``stra_jax.models``): ``features``
    (B, 32*width) the pooled last-stage map, ``embedding`` (B, embedding_dim)
    from BN -> Dropout -> flatten -> FC -> BN on the (B, H/16, W/16, 32*width)
    map, and, if ``num_classes`` > 0, ``class_weights`` (embedding_dim,
    num_classes) (``classifier="margin"``, for CosFace / ArcFace) or ``logits``
    (``"linear"``). Outputs are float32 whatever ``dtype`` computes in. Training
    with ``head_dropout`` > 0 needs a ``"dropout"`` rng.
    """

    stem_stride: int = 1
    embedding_dim: int = 512
    head_dropout: float = 0.4
    classifier: str = "margin"
    input_size: Sequence[int] = (112, 112)  # sizes the face FC: parameters depend on it

    FREEZABLE: ClassVar[tuple[str, ...]] = ()  # trained from scratch: nothing pretrained to freeze
    NEW_MODULES: ClassVar[tuple[str, ...]] = ("stra",)
    TASK: ClassVar[str] = "face"  # the task whose preprocessing a run-less model dir gets (tools/run_inputs.py)

    def __post_init__(self) -> None:
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={self.stem_stride!r}: expected 1 (ArcFace, 7x7 last stage at 112x112) "
                             "or 2")
        if not _positive_int(self.embedding_dim):
            raise ValueError(f"embedding_dim={self.embedding_dim!r}: expected a positive integer (the FC's width)")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout={self.head_dropout!r}: expected a rate in [0, 1)")
        if len(self.input_size) != 2 or not all(_positive_int(v) for v in self.input_size):
            raise ValueError(f"input_size={tuple(self.input_size)}: expected (height, width), positive integers")
        last_stage_size(self.input_size, self.stem_stride)
        super().__post_init__()

    def check_inputs(self, images: jax.Array, frozen: tuple[str, ...]) -> None:
        """No frozen groups; images (B, H, W, 3) at exactly ``input_size``."""
        if frozen:
            raise ValueError(f"frozen={frozen}: the FaceResNet family has no pretrained groups to freeze "
                             "(its networks train from scratch); expected frozen=()")
        super().check_inputs(images, frozen)
        native = tuple(int(v) for v in self.input_size)
        if images.shape[1:3] != native:
            h, w = images.shape[1:3]
            raise ValueError(f"images shape {images.shape}: this FaceResNet is built for {native[0]}x{native[1]} "
                             f"inputs (input_size; the face FC flattens the last-stage map), got {h}x{w}: resize "
                             f"the images or create the model with input_size=({h}, {w})")

    def stem(self, x: jax.Array, *, train: bool) -> jax.Array:
        """3x3 conv at ``stem_stride``, BN, ReLU; no max-pool (keeps 112x112 at stride 1)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _conv(self.width, 3, self.stem_stride, "conv1", **kw)(x)
        return nn.relu(batch_norm(train, name="bn1", **kw)(x))

    def stage_stride(self, stage: int) -> int:
        """2: every stage halves the map (112 -> 56 -> 28 -> 14 -> 7)."""
        return 2

    def make_head(self) -> nn.Module:
        """BN -> Dropout(``head_dropout``) -> flatten -> FC(``embedding_dim``) -> BN."""
        return make_head("face", num_classes=self.num_classes, embedding_dim=self.embedding_dim,
                         dropout=self.head_dropout, classifier=self.classifier, dtype=self.dtype,
                         param_dtype=self.param_dtype)


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

# Face networks (paper Section 5.2): ArcFace-style trunk with a 7x7 last stage at
# 112x112 and the BN-Dropout-FC-BN 512-d head, margin classifier; from scratch.
register_model("resnet50_face", FaceResNet, stage_sizes=(3, 4, 6, 3), stra_stages=(), input_size=(112, 112),
               embedding_dim=512, head_dropout=0.4, classifier="margin")
register_model("stra_resnet50_face", FaceResNet, stage_sizes=(3, 4, 6, 3), stra_stages=(3,), heads=8,
               kernel_size=3, reduction=4, input_size=(112, 112), embedding_dim=512, head_dropout=0.4,
               classifier="margin")
