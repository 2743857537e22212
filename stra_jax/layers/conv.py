"""Convolution helpers with the authors' (PyTorch) initialisation.

The authors initialise every convolution with ``kaiming_normal_(mode='fan_out',
nonlinearity='relu')``: an *untruncated* normal with std sqrt(2 / fan_out), where
fan_out = out_channels * kh * kw (PyTorch does not divide by groups; neither does
Flax's ``variance_scaling`` on a (kh, kw, in/groups, out) kernel). Biases start at 0.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # plain (untruncated) normal
# PyTorch nn.Linear in the authors' code: normal(0, 0.01) weights, zero bias.
linear_init = nn.initializers.normal(stddev=0.01)


def conv1x1(
    features: int,
    *,
    groups: int = 1,
    use_bias: bool = False,
    strides: int = 1,
    name: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
) -> nn.Conv:
    """A (grouped) 1x1 convolution on NHWC input.

    With ``groups=G`` the output channels are G contiguous blocks and block g is
    computed only from input block g, exactly like PyTorch's ``groups=G``.
    """
    return nn.Conv(
        features,
        kernel_size=(1, 1),
        strides=(strides, strides),
        padding="VALID",
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=kaiming_fan_out,
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )
