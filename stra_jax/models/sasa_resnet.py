"""SASA-ResNet-50 (Ramachandran et al., stand-alone self-attention): STUB, being written."""
from __future__ import annotations

from typing import Sequence

from stra_jax.models.resnet import ResNetBase


class SASAResNet(ResNetBase):
    """ResNet-50 whose ``sasa_stages`` replace the bottleneck 3x3 conv by SASA."""

    sasa_stages: Sequence[int] = (3,)
    heads: int = 8
    kernel_size: int = 7
