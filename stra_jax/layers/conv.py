"""Convolution helpers with the authors' (PyTorch) initialisation.

The authors initialise every convolution with ``kaiming_normal_(mode='fan_out',
nonlinearity='relu')``: an *untruncated* normal with std sqrt(2 / fan_out), where
fan_out = out_channels * kh * kw (PyTorch does not divide by groups; neither does
Flax's ``variance_scaling`` on a (kh, kw, in/groups, out) kernel). Biases start at 0.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks

kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # plain (untruncated) normal
# PyTorch nn.Linear in the authors' code: normal(0, 0.01) weights, zero bias.
linear_init = nn.initializers.normal(stddev=0.01)


# What "auto" picks per backend. Measured on CPU (benchmarks/attention.py
# --grouped-convs einsum conv): XLA:CPU
# runs feature_group_count convolutions 10x+ slower forward+backward than the same
# contraction as an einsum. GPU and TPU are not measured yet: einsum there too (a
# batched matmul, which both compile well); run the benchmark and override if not.
AUTO_GROUPED = {"cpu": "einsum", "gpu": "einsum", "tpu": "einsum"}


def resolve_grouped(implementation: str) -> str:
    """``"auto"`` -> the formulation for the default backend; others unchanged."""
    checks.check_grouped_conv(implementation)
    return checks.for_backend(implementation, AUTO_GROUPED)


class GroupedConv1x1(nn.Module):
    """A grouped 1x1 convolution written as an einsum over (B, H, W, G, C/G).

    Same parameters as ``nn.Conv(features, (1, 1), feature_group_count=groups)``
    (``kernel`` (1, 1, C/G, features), ``bias`` (features,), created in that
    order with the same initialisers, so initial values and checkpoints are
    interchangeable) and the same outputs: output block g (features/G contiguous
    channels) is computed from input block g only.
    """

    features: int
    groups: int = 1
    use_bias: bool = False
    strides: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = kaiming_fan_out
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels, g = x.shape[-1], self.groups
        if channels % g or self.features % g:
            raise ValueError(f"GroupedConv1x1: channels={channels} and features={self.features} must both be "
                             f"divisible by groups={g}")
        kernel = self.param("kernel", self.kernel_init, (1, 1, channels // g, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides]
        *lead, _ = x.shape
        y = jnp.einsum("...gi,igo->...go", x.reshape(*lead, g, channels // g),
                       kernel.reshape(channels // g, g, self.features // g))
        y = y.reshape(*lead, self.features)
        return y + bias if bias is not None else y


def conv1x1(
    features: int,
    *,
    groups: int = 1,
    use_bias: bool = False,
    strides: int = 1,
    name: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    implementation: str = "auto",
) -> nn.Module:
    """A (grouped) 1x1 convolution on NHWC input.

    With ``groups=G`` the output channels are G contiguous blocks and block g is
    computed only from input block g, exactly like PyTorch's ``groups=G``.
    ``implementation``: ``"einsum"`` (:class:`GroupedConv1x1`), ``"conv"``
    (``nn.Conv`` with ``feature_group_count``) or ``"auto"`` (per backend, see
    ``AUTO_GROUPED``); all three hold the same parameters.
    """
    if resolve_grouped(implementation) == "einsum":
        return GroupedConv1x1(features, groups=groups, use_bias=use_bias, strides=strides, dtype=dtype,
                              param_dtype=param_dtype, name=name)
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
