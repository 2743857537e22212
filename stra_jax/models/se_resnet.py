"""SE-ResNet-50 (Hu et al., squeeze-and-excitation) in Cadene's layout, NHWC.

The layout of Cadene's ``pretrainedmodels.senet.se_resnet50`` (which torchreid
uses, and whose ImageNet weights it loads). It is a ResNet-50 with these
differences from torchvision's:

* stem ``layer0``: 7x7/2 conv (pad 3, no bias), BN, ReLU, then a 3x3/2 max-pool
  with *no* padding and ``ceil_mode=True`` (torchvision: padding 1, floor).
  Ceil mode is -inf padding on the bottom/right only, as much as it needs
  (:func:`max_pool_ceil`): it matters where the conv output is even (34 -> 17,
  floor mode would give 16), and the size differs from torchvision's where it
  is odd (19 -> 9, torchvision 10). A 67x38 image: conv 34x19, pool 17x9;
* ``SEResNetBottleneck`` puts the stride on ``conv1`` (the 1x1), not on
  ``conv2`` (the 3x3, pad 1, stride 1): torchvision's v1.5 moved it;
* a squeeze-and-excitation module (``se``, reduction ``se_reduction``, 16)
  recalibrates the ``bn3`` output before the shortcut is added;
* ``downsample``: 1x1 conv at the block's stride (no bias) + BN, as
  torchvision's (Cadene's ``downsample_kernel_size=1, downsample_padding=0``
  for se_resnet50);
* head: Cadene's ``avg_pool`` (AvgPool2d(7) at 224x224, i.e. GAP) and
  ``last_linear``; here the ResNet heads (``models/heads.py``), registered with
  ``embedding_dim=None`` (the GAP feature is the embedding) and last stride 2.

Parameters at full size with 1000 classes: 28,088,024 (as Cadene's
se_resnet50; torchvision's ResNet-50 has 25,557,032, so SE adds 2,530,992).

Shapes (B, H, W, C), width 64: image (B, H, W, 3) -> stem (B, H/4, W/4, 64)
-> layer1 (.., 256) -> layer2 (B, H/8, W/8, 512) -> layer3 (B, H/16, W/16, 1024)
-> layer4 (B, H/32, W/32, 2048) (H/16 with ``last_stride=1``) -> embedding
(B, 2048); sizes are approximate (each stride rounds up, the pool as above).

Flax names: stem ``conv1``, ``bn1`` (PyTorch ``layer0.conv1``, ``layer0.bn1``);
blocks ``layer{S}_{B}`` with ``conv1`` .. ``bn3``, ``se/fc1``, ``se/fc2``,
``downsample_conv``, ``downsample_bn`` (``convert/se_resnet.py`` maps them).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers.norm import batch_norm
from stra_jax.layers.se import SqueezeExcitation, check_se_reduction
from stra_jax.models.resnet import ResNetBase, _conv


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
    """PyTorch's ``MaxPool2d(window, stride, padding=0, ceil_mode=True)`` on (B, H, W, C).

    Output size ceil((n - window) / stride) + 1 per spatial axis: the last
    window may run past the bottom/right edge, so those edges get -inf padding
    (``nn.max_pool``'s pad value), never the top/left. With no padding every
    window starts inside the image, so PyTorch drops no window here.
    """
    pads = []
    for n in x.shape[1:3]:
        if n < window:
            raise ValueError(f"max_pool_ceil: spatial size {n} < window {window} (input shape {x.shape})")
        out = -(-(n - window) // stride) + 1
        pads.append((0, (out - 1) * stride + window - n))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=tuple(pads))


class SEBottleneck(nn.Module):
    """Cadene's ``SEResNetBottleneck`` on (B, H, W, C_in) -> (B, H/s, W/s, 4*planes):
    1x1 (stride s) -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1 (4x) -> BN -> SE,
    + shortcut, ReLU.

    ``frozen=True`` keeps the block's BatchNorms in inference mode while
    training (as :class:`~stra_jax.models.resnet.Bottleneck`); SE has no
    BatchNorm and is pretrained, so it is frozen with its stage by the mask.
    """

    planes: int
    strides: int = 1
    downsample: bool = False
    se_reduction: int = 16
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, frozen: bool = False) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bn_train = train and not frozen
        out = _conv(self.planes, 1, self.strides, "conv1", **kw)(x)  # Cadene: the stride is here
        out = nn.relu(batch_norm(bn_train, name="bn1", **kw)(out))
        out = _conv(self.planes, 3, 1, "conv2", **kw)(out)
        out = nn.relu(batch_norm(bn_train, name="bn2", **kw)(out))
        out = _conv(self.planes * 4, 1, 1, "conv3", **kw)(out)
        out = batch_norm(bn_train, name="bn3", **kw)(out)
        out = SqueezeExcitation(self.se_reduction, name="se", **kw)(out)
        shortcut = x
        if self.downsample:
            shortcut = _conv(self.planes * 4, 1, self.strides, "downsample_conv", **kw)(x)
            shortcut = batch_norm(bn_train, name="downsample_bn", **kw)(shortcut)
        return nn.relu(out + shortcut)


class SEResNet(ResNetBase):
    """SE-ResNet: every bottleneck recalibrates its channels (reduction ``se_reduction``).

    ``se_reduction`` must be a positive int no larger than the narrowest SE
    input (layer1's 4 * ``width`` channels); otherwise construction fails
    naming that block, its channels and the reduction. SE is in Cadene's
    ImageNet weights, so nothing is new (``NEW_MODULES`` is empty) and a frozen
    stage freezes its SE modules too.
    """

    se_reduction: int = 16

    NEW_MODULES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # Fail in create_model, not at the first apply: layer1_0's SE has the fewest channels.
        check_se_reduction("layer1_0/se", 4 * self.width, self.se_reduction)
        super().__post_init__()

    def stem(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Cadene's ``layer0``: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool without padding, ceil mode."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _conv(self.width, 7, 2, "conv1", **kw)(x)
        x = nn.relu(batch_norm(train, name="bn1", **kw)(x))
        return max_pool_ceil(x, 3, 2)

    def make_block(self, stage: int, index: int, planes: int, strides: int) -> nn.Module:
        """SE bottleneck ``index`` of ``stage`` (0-based), named ``layer{stage+1}_{index}``."""
        return SEBottleneck(planes, strides=strides, downsample=index == 0, se_reduction=self.se_reduction,
                            name=f"layer{stage + 1}_{index}", dtype=self.dtype, param_dtype=self.param_dtype)


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

# One of the paper's comparison networks (Table 2, Fig. 3), registered as its
# original paper defines it (ImageNet-style head: last stride 2, GAP feature); the
# ReID config ``:se`` gives it StRA's head (last stride 1, 512-d BN embedding),
# so that Table 2's rows differ only in the attention.
register_model("se_resnet50", SEResNet, stage_sizes=(3, 4, 6, 3), se_reduction=16)
