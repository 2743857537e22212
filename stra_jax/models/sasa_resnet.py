"""SASA-ResNet-50: Ramachandran et al.'s stand-alone self-attention (NeurIPS 2019)
in place of the 3x3 convs of chosen stages (Table 2's "SASA" row), NHWC.

Layout: the torchvision ResNet-50 trunk (``models/resnet.py``); in every
bottleneck of ``sasa_stages`` (default: the last, as StRA-ResNet-50 places its
attention) the 3x3 ``conv2`` becomes :class:`stra_jax.layers.sasa.SASA`
(``layer4_0/sasa``: ``query``/``key``/``value`` 1x1 projections without bias
and ``rel_rows``/``rel_cols`` (K, planes/2) relative embeddings), with
``heads`` (8) heads over a ``kernel_size`` (7, as Ramachandran et al.) window.
conv1, bn1, bn2, conv3, bn3 and the shortcut stay, so ImageNet ResNet-50
weights fill everything but SASA and the head. ``sasa_resnet50`` is registered
like StRA-ResNet-50: last stride 1 and the 512-d BN embedding head.

Parameters at full size (measured with ``abstract_variables``): 20,235,055
with ``num_classes=751``, 19,849,792 with ``num_classes=0``. Each of the three
layer4 blocks trades the 3x3 conv's 2,359,296 weights for 3 * 512^2 + 2 * 7 * 256
= 789,888: 4,707,840 fewer than ResNet-50 with the same head and last stride
(24,942,895 with 751 classes).

Stride: a SASA block at stride 2 (block 0 of stages 1-2, or of stage 3 with
``last_stride=2``) attends at full resolution and then 2x2-average-pools in
ceil mode (Ramachandran et al.: "2x2 average pooling with stride 2 following
the attention layer"), giving ceil(H/2) x ceil(W/2) like the 1x1 stride-2
shortcut it is added to.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from stra_jax.layers.sasa import SASA, check_sasa
from stra_jax.models.resnet import Bottleneck, ResNetBase


class SASABottleneck(Bottleneck):
    """A bottleneck whose spatial op is :class:`SASA` (named ``sasa``)."""

    heads: int = 8
    kernel_size: int = 7

    def spatial(self, x: jax.Array, *, train: bool) -> jax.Array:
        """(B, H, W, planes) -> (B, ceil(H/s), ceil(W/s), planes) by local self-attention."""
        del train  # SASA has no batch statistics
        return SASA(self.planes, heads=self.heads, kernel_size=self.kernel_size, stride=self.strides,
                    dtype=self.dtype, param_dtype=self.param_dtype, name="sasa")(x)


class SASAResNet(ResNetBase):
    """ResNet-50 whose ``sasa_stages`` (0-based, 0..3) replace the bottleneck
    3x3 conv by SASA with ``heads`` heads over a ``kernel_size`` window; see the
    module docstring. Returns the model contract's dict (:class:`ResNetBase`)."""

    sasa_stages: Sequence[int] = (3,)
    heads: int = 8
    kernel_size: int = 7

    NEW_MODULES: ClassVar[tuple[str, ...]] = ("sasa",)

    def __post_init__(self) -> None:
        if any(s not in (0, 1, 2, 3) for s in self.sasa_stages):
            raise ValueError(f"sasa_stages={tuple(self.sasa_stages)}: expected stage indices in 0..3")
        # Fail at construction (not at the first trace) for heads that cannot
        # split a SASA stage's channels; SASA itself checks again when built.
        for stage in sorted(set(self.sasa_stages)):
            check_sasa(self.width * 2**stage, self.heads, self.kernel_size)
        super().__post_init__()

    def make_block(self, stage: int, index: int, planes: int, strides: int) -> nn.Module:
        kw = dict(strides=strides, downsample=index == 0, name=f"layer{stage + 1}_{index}", dtype=self.dtype,
                  param_dtype=self.param_dtype)
        if stage in self.sasa_stages:
            return SASABottleneck(planes, heads=self.heads, kernel_size=self.kernel_size, **kw)
        return Bottleneck(planes, **kw)


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

# One of the paper's comparison networks (Table 2, Fig. 3). SASA in the last stage
# "following the implementation in section 5.1": as StRA-ResNet-50.
register_model("sasa_resnet50", SASAResNet, stage_sizes=(3, 4, 6, 3), sasa_stages=(3,), heads=8, kernel_size=7,
               last_stride=1, embedding_dim=512)
