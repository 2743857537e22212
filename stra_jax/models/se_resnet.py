"""SE-ResNet-50 (Hu et al., squeeze-and-excitation): STUB, being written."""
from __future__ import annotations

from stra_jax.models.resnet import ResNetBase


class SEResNet(ResNetBase):
    """SE-ResNet: every bottleneck recalibrates its channels (reduction ``se_reduction``)."""

    se_reduction: int = 16
