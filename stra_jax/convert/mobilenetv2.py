"""torchvision's MobileNetV2 names: STUB, being written."""
from __future__ import annotations
