"""Cadene's SE-ResNet-50 names: STUB, being written."""
from __future__ import annotations
