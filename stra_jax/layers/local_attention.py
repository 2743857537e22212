"""Local attention (paper Eq. 4), NHWC.

Each node i attends over its K x K neighbourhood N_K(i) with weights

    a_ij = softmax_j( omega(x_i)_j + nu(x_j) ),      s_i = sum_j a_ij u(x_j)

computed independently for each of G heads. omega (K*K logits per head) and nu
(one logit per head) come from one two-layer grouped 1x1 logit branch; u is a
grouped 1x1 value convolution. The channel layout follows the authors' released
network (see ``docs``/stra-reference "Local attention"): the logit branch emits
G * (1 + K*K) channels of which the first G are nu (one per head) and the rest,
head-major, are omega -- a split that is deliberately *not* aligned with the
convolution groups.

Stride 2 (the authors only ran stride 1) is defined here as a strided 3x3 conv
would be: nu and the values are computed at input resolution and unfolded with
stride s, so output o looks at the window centred on input node s*o, and omega is
read at those centres. The output is ceil(H/s) x ceil(W/s).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks
from stra_jax.layers.conv import conv1x1
from stra_jax.layers.norm import batch_norm


def window_padding(kernel_size: int, dilation: int, stride: int) -> int:
    """Zero padding p = ((K-1)*d + 2 - s) // 2, giving ceil(H/s) centred windows."""
    return ((kernel_size - 1) * dilation + 2 - stride) // 2


def unfold_neighbourhoods(
    x: jax.Array, kernel_size: int, stride: int, dilation: int
) -> jax.Array:
    """(B, H, W, C) -> (B, H', W', C, K*K): each node's zero-padded K x K window.

    Kernel positions are row-major (k = ky*K + kx), the order of PyTorch's
    ``nn.Unfold``. H' = ceil(H / stride).
    """
    pad = window_padding(kernel_size, dilation, stride)
    patches = jax.lax.conv_general_dilated_patches(
        x,
        filter_shape=(kernel_size, kernel_size),
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "OIHW", "NHWC"),
    )
    # The patch feature axis is channel-major: c * K*K + k.
    b, h, w, _ = patches.shape
    return patches.reshape(b, h, w, x.shape[-1], kernel_size * kernel_size)


def local_attention_weights(omega: jax.Array, nu_neighbours: jax.Array) -> jax.Array:
    """Eq. 4: a_ij = softmax over the window j of (omega(x_i)_j + nu(x_j)).

    omega, nu_neighbours: (B, H', W', G, K*K). Zero-padded neighbours take part
    with nu = 0, as in the authors' code. Returns float32 weights summing to 1
    over the last axis.
    """
    logits = omega.astype(jnp.float32) + nu_neighbours.astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1)


def aggregate_neighbours(weights: jax.Array, value_neighbours: jax.Array) -> jax.Array:
    """Eq. 4 (sum): s_i^g = sum_j a_ij^g u(x_j)^g.

    weights: (B, H', W', G, K*K); value_neighbours: (B, H', W', G, n, K*K).
    Returns (B, H', W', G * n) in the values' dtype, channel c = g*n + j.
    """
    out = jnp.einsum(
        "bhwgk,bhwgnk->bhwgn",
        weights.astype(value_neighbours.dtype),
        value_neighbours,
        preferred_element_type=jnp.float32,
    )
    b, h, w, g, n = out.shape
    return out.reshape(b, h, w, g * n).astype(value_neighbours.dtype)


class LocalAttention(nn.Module):
    """Multi-head local attention (Eq. 4) replacing a K x K convolution.

    Input (B, H, W, C), C divisible by ``heads``; output (B, ceil(H/s), ceil(W/s), C).
    Parameters: ``logit_conv1`` (grouped 1x1 C -> C/reduction, bias), ``logit_bn1``,
    ``logit_conv2`` (grouped 1x1 -> heads*(1+K*K), bias), ``logit_bn2``,
    ``value_conv`` (grouped 1x1 C -> C, no bias).
    """

    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    stride: int = 1
    dilation: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        checks.check_positive_int("heads", self.heads)
        checks.check_kernel_size(self.kernel_size)
        checks.check_positive_int("reduction", self.reduction)
        checks.check_stride(self.stride)
        checks.check_positive_int("dilation", self.dilation)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        checks.check_feature_map(x, self.heads, "LocalAttention")
        b, _, _, channels = x.shape
        heads, k, s = self.heads, self.kernel_size, self.stride
        hidden = channels // self.reduction
        if hidden < 1 or hidden % heads != 0:
            raise ValueError(
                f"LocalAttention: reduction={self.reduction} gives channels // reduction = {hidden} "
                f"logit channels for channels={channels}; expected a positive multiple of heads={heads}"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = x.astype(self.dtype)

        # Logit branch T: grouped 1x1 -> BN -> tanh -> grouped 1x1 -> BN.
        t = conv1x1(hidden, groups=heads, use_bias=True, name="logit_conv1", **kw)(x)
        t = jnp.tanh(batch_norm(train, name="logit_bn1", **kw)(t))
        t = conv1x1(heads * (1 + k * k), groups=heads, use_bias=True, name="logit_conv2", **kw)(t)
        t = batch_norm(train, name="logit_bn2", **kw)(t)

        nu = t[..., :heads]  # one logit per head and node: nu(x_j)
        omega = t[:, ::s, ::s, heads:]  # K*K logits per head at window centres
        _, ho, wo, _ = omega.shape
        omega = omega.reshape(b, ho, wo, heads, k * k)
        nu_neighbours = unfold_neighbourhoods(nu, k, s, self.dilation)
        weights = local_attention_weights(omega, nu_neighbours)

        values = conv1x1(channels, groups=heads, use_bias=False, name="value_conv", **kw)(x)
        value_neighbours = unfold_neighbourhoods(values, k, s, self.dilation)
        value_neighbours = value_neighbours.reshape(b, ho, wo, heads, channels // heads, k * k)
        return aggregate_neighbours(weights, value_neighbours)
