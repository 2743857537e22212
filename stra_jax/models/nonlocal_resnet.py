"""Non-local ResNet-50 (Wang et al., "Non-local neural networks", CVPR 2018), NHWC.

The torchvision ResNet-50 trunk (``models/resnet.py``) with embedded-Gaussian
non-local blocks (``layers/nonlocal_block.py``) between residual blocks:

    z_i = BN(W_z y_i) + x_i,   y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j)

(Wang Eq. 1, 3 and 6; theta, phi, g: 1x1 convs C -> C/2; the BN after W_z is
zero-initialised, so the network starts as the plain ResNet-50).

Placement: ``nonlocal_blocks[s] = n`` puts n non-local blocks in stage s, one
right *before* each of the stage's last n residual blocks (after blocks
len-n-1 .. len-2, 0-based), named ``nonlocal{s+1}_{k}`` with k = 0.. in order.
A non-local block therefore always has a residual block after it, so n <= the
stage's block count - 1.

* ``(0, 0, 1, 0)``, the registered default: Wang et al.'s image configuration
  (their COCO Mask R-CNN backbone, Sec. 6): "one non-local block right before
  the last residual block of res4". The StRA paper compares attention networks
  with "the network configuration in the original papers", and ReID inputs are
  single images; Wang's 5- and 10-block configurations are for video (C2D /
  I3D on Kinetics).
* ``(0, 2, 3, 0)``: the block counts of fast-reid's / AGW's ReID network
  (2 in res3, 3 in res4). fast-reid puts each block *after* one of the last n
  residual blocks (its last one after the stage's final block); this rule puts
  them one residual block earlier. Its tensors load (same names ``NL_3.k.*``,
  same shapes; ``convert/resnet.py``), but its blocks divide by N (dot-product
  form) where ours take a softmax, so a fast-reid checkpoint is not the same
  function here.

The non-local blocks are top-level modules, not inside a residual block: the
``frozen`` groups (``layer3`` ...) never freeze them or their BatchNorm (they are
new, not ImageNet-pretrained), and they train their BN with ``train``.

Parameters at full size (``abstract_variables``, measured):
``nonlocal_resnet50`` with 1000 classes: 27,658,792 (torchvision's ResNet-50,
25,557,032, plus 2,101,760 for the one block at C = 1024); with
``num_classes=0``: 25,609,792.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import jax

from stra_jax.layers.nonlocal_block import NonLocalBlock
from stra_jax.models.resnet import ResNetBase


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class NonLocalResNet(ResNetBase):
    """ResNet-50 with non-local blocks: ``nonlocal_blocks[s]`` blocks in stage s,
    each inserted before one of the stage's last residual blocks;
    ``nonlocal_reduction``: C / C' inside each block (Wang: 2)."""

    nonlocal_blocks: Sequence[int] = (0, 0, 1, 0)
    nonlocal_reduction: int = 2

    def __post_init__(self) -> None:
        blocks = self.nonlocal_blocks
        blocks = tuple(blocks) if isinstance(blocks, (list, tuple)) else blocks
        sizes = tuple(self.stage_sizes)
        if not isinstance(blocks, tuple) or len(blocks) != 4 or not all(_is_int(n) and n >= 0 for n in blocks):
            raise ValueError(f"nonlocal_blocks={blocks}: expected 4 non-negative block counts, one per stage")
        if len(sizes) == 4 and any(n > size - 1 for n, size in zip(blocks, sizes)):
            raise ValueError(f"nonlocal_blocks={blocks} with stage_sizes={sizes}: at most stage_sizes[s] - 1 "
                             "non-local blocks in stage s (each goes before one of the stage's residual blocks, "
                             "so a residual block must follow it)")
        reduction = self.nonlocal_reduction
        if not _is_int(reduction) or reduction < 1:
            raise ValueError(f"nonlocal_reduction={reduction!r}: expected a positive integer")
        super().__post_init__()  # checks stage_sizes itself

    def after_block(self, stage: int, index: int, x: jax.Array, *, train: bool) -> jax.Array:
        """After residual block ``index`` of ``stage``: a non-local block if the next
        block is one of the stage's last ``nonlocal_blocks[stage]`` blocks. x: (B, H, W, C)."""
        first = self.stage_sizes[stage] - self.nonlocal_blocks[stage] - 1  # index of the block before the first NL
        if first <= index < self.stage_sizes[stage] - 1:
            block = NonLocalBlock(self.nonlocal_reduction, name=f"nonlocal{stage + 1}_{index - first}",
                                  dtype=self.dtype, param_dtype=self.param_dtype)
            x = block(x, train=train)
        return x


# The built-in architectures of this family (``create_model(name)``), registered beside
# it; the registry imports no family: importing stra_jax.models runs these lines.
from stra_jax.models.registry import register_model  # noqa: E402

# One of the paper's comparison networks (Table 2, Fig. 3), as its paper defines it
# (ImageNet-style head; the ReID config ``:nonlocal`` gives it StRA's head). Wang et
# al.'s image (COCO) configuration: one block before the last block of res4.
register_model("nonlocal_resnet50", NonLocalResNet, stage_sizes=(3, 4, 6, 3), nonlocal_blocks=(0, 0, 1, 0))
