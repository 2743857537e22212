"""Non-local ResNet-50 (Wang et al., embedded Gaussian): STUB, being written."""
from __future__ import annotations

from typing import Sequence

from stra_jax.models.resnet import ResNetBase


class NonLocalResNet(ResNetBase):
    """ResNet-50 with non-local blocks: ``nonlocal_blocks[s]`` blocks in stage s,
    each inserted before one of the stage's last residual blocks."""

    nonlocal_blocks: Sequence[int] = (0, 0, 1, 0)
    nonlocal_reduction: int = 2
