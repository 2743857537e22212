"""MobileNetV2 (torchvision layout) and StRA-MobileNetV2: STUB, being written."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MobileNetV2(nn.Module):
    num_classes: int = 0
    width_mult: float = 1.0
    stage_blocks: Sequence[int] = (1, 2, 3, 4, 3, 3, 1)
    last_stride: int = 2
    stra_stages: Sequence[int] = ()
    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    gate: str = "sigmoid"
    mode_attention: bool = True
    mode_interaction: bool = True
    attention_implementation: str = "auto"
    attention_grouped_conv: str = "auto"
    embedding_dim: int | None = None
    classifier: str = "linear"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
