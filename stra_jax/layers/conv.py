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
from stra_jax.layers.precision import accum_dtype

kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # plain (untruncated) normal
# PyTorch nn.Linear in the authors' code: normal(0, 0.01) weights, zero bias.
linear_init = nn.initializers.normal(stddev=0.01)


# What "auto" picks per backend. Measured on CPU (benchmarks/attention.py
# --grouped-convs split einsum conv): XLA:CPU runs feature_group_count convolutions
# 10x+ slower forward+backward than the same contraction as an einsum, and the
# einsum's batched matmul needs the group axis major, so every operand and cotangent
# is transposed, with the producers of the cotangents fused into those transposes
# (read in transposed order: 18 ms of the StRA block's 74). "split" (one matmul per
# group on its channel slice, hand-written backward) keeps the NHWC layout. GPU and
# TPU are not measured yet: einsum there (a batched matmul, which both compile
# well); run benchmarks/auto_choices.py there and override if not.
AUTO_GROUPED = {"cpu": "split", "gpu": "einsum", "tpu": "einsum"}


def resolve_grouped(implementation: str) -> str:
    """``"auto"`` -> the formulation for the default backend; others unchanged."""
    checks.check_grouped_conv(implementation)
    return checks.for_backend(implementation, AUTO_GROUPED)


def _split_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """y[..., g, :] = x[..., g, :] @ kernel[:, g, :]: (..., G, i), (i, G, o) -> (..., G, o)."""
    return jnp.stack([x[..., g, :] @ kernel[:, g, :] for g in range(x.shape[-2])], axis=-2)


@jax.custom_vjp
def grouped_matmul_split(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A grouped 1x1 convolution as one matmul per group, in the NHWC layout.

    x: (..., G, i); kernel: (i, G, o) -> (..., G, o). The backward pass is
    written out (d x = per-group dy @ kernel^T, d kernel = per-group x^T dy over
    all leading positions) because autodiff of the slices and the stack sums G
    zero-padded full-size cotangents (slower than the einsum it replaces).
    """
    return _split_matmul(x, kernel)


def _split_fwd(x, kernel):
    return _split_matmul(x, kernel), (x, kernel)


def _split_bwd(residuals, dy):
    x, kernel = residuals
    dx = _split_matmul(dy, jnp.swapaxes(kernel, 0, 2))
    # Contract every leading (position) axis; under a batch-sharded jit that sum
    # spans devices, and the kernel gradient takes the kernel's (replicated) sharding.
    leading = tuple(range(x.ndim - 2))
    dims = ((leading, leading), ((), ()))
    dk = jnp.stack([jax.lax.dot_general(x[..., g, :], dy[..., g, :], dims,
                                        preferred_element_type=accum_dtype(x.dtype),
                                        out_sharding=jax.typeof(kernel[:, g, :]).sharding)
                    for g in range(x.shape[-2])], axis=1)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


grouped_matmul_split.defvjp(_split_fwd, _split_bwd)


class GroupedConv1x1(nn.Module):
    """A grouped 1x1 convolution over (B, H, W, G, C/G) as an einsum or per-group matmuls.

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
    split: bool = False  # True: grouped_matmul_split; False: one einsum (a batched matmul)
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
        x, kernel = x.reshape(*lead, g, channels // g), kernel.reshape(channels // g, g, self.features // g)
        y = grouped_matmul_split(x, kernel) if self.split else jnp.einsum("...gi,igo->...go", x, kernel)
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
    ``implementation``: ``"split"`` (one matmul per group, :func:`grouped_matmul_split`),
    ``"einsum"`` (one batched matmul; both :class:`GroupedConv1x1`), ``"conv"``
    (``nn.Conv`` with ``feature_group_count``) or ``"auto"`` (per backend, see
    ``AUTO_GROUPED``); all hold the same parameters.
    """
    resolved = resolve_grouped(implementation)
    if resolved in ("split", "einsum"):
        return GroupedConv1x1(features, groups=groups, use_bias=use_bias, strides=strides,
                              split=resolved == "split", dtype=dtype, param_dtype=param_dtype, name=name)
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
