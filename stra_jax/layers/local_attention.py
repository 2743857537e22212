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

Neighbours are gathered either as K*K shifted maps (default, cheap forward and
backward) or by unfolding with ``jax.lax.conv_general_dilated_patches``; both
are tested against the same NumPy reference.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks
from stra_jax.layers.conv import conv1x1
from stra_jax.layers.fused_local import attend_shifted
from stra_jax.layers.window import local_attention_weights, shifted_neighbours, window_padding
from stra_jax.layers.norm import batch_norm
from stra_jax.layers.precision import accum_dtype, upcast


def unfold_neighbourhoods(
    x: jax.Array, kernel_size: int, stride: int, dilation: int
) -> jax.Array:
    """(B, H, W, C) -> (B, H', W', C, K*K) with ``conv_general_dilated_patches``.

    Same windows and order as :func:`shifted_neighbours`, materialised at once.
    XLA lowers it to a convolution with a one-hot kernel, whose cost grows with
    C*K^4 and whose backward pass is slow on CPU (see benchmarks/attention.py).
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


def aggregate_neighbours(weights: jax.Array, value_neighbours: jax.Array) -> jax.Array:
    """Eq. 4 (sum) on unfolded values: s_i^g = sum_j a_ij^g u(x_j)^g.

    weights: (B, H', W', G, K*K); value_neighbours: (B, H', W', G, n, K*K).
    Returns (B, H', W', G * n) in the values' dtype, channel c = g*n + j.
    """
    out = jnp.einsum(
        "bhwgk,bhwgnk->bhwgn",
        weights.astype(value_neighbours.dtype),
        value_neighbours,
        preferred_element_type=accum_dtype(value_neighbours.dtype),
    )
    b, h, w, g, n = out.shape
    return out.reshape(b, h, w, g * n).astype(value_neighbours.dtype)


def aggregate_shifted(weights: jax.Array, shifted_values: list[jax.Array]) -> jax.Array:
    """Eq. 4 (sum) on shifted maps: s_i^g = sum_k a_ik^g u(x_{i+k})^g.

    weights: (B, H', W', G, K*K); shifted_values: K*K maps (B, H', W', C) from
    :func:`shifted_neighbours`. Accumulates in at least float32; returns
    (B, H', W', C) in the values' dtype, channel c = g*n + j.
    """
    b, h, w, g, _ = weights.shape
    c = shifted_values[0].shape[-1]
    total = jnp.zeros((b, h, w, g, c // g), accum_dtype(shifted_values[0].dtype))
    for k, value in enumerate(shifted_values):
        total = total + weights[..., k, None] * upcast(value).reshape(b, h, w, g, c // g)
    return total.reshape(b, h, w, c).astype(shifted_values[0].dtype)


# What implementation="auto" picks per backend. CPU measured (benchmarks/attention.py:
# "fused" 3-4x faster forward+backward than "shift", "patches" far slower); GPU and
# TPU not measured yet: "fused" stores less for the backward pass, so it is used there
# too until a measurement says otherwise.
AUTO_ATTENTION = {"cpu": "fused", "gpu": "fused", "tpu": "fused"}


def resolve_attention(implementation: str) -> str:
    """``"auto"`` -> the local-attention formulation for the default backend."""
    checks.check_implementation(implementation)
    return checks.for_backend(implementation, AUTO_ATTENTION)


class LocalAttention(nn.Module):
    """Multi-head local attention (Eq. 4) replacing a K x K convolution.

    Input (B, H, W, C), C divisible by ``heads``; output (B, ceil(H/s), ceil(W/s), C).
    Parameters: ``logit_conv1`` (grouped 1x1 C -> C/reduction, bias), ``logit_bn1``,
    ``logit_conv2`` (grouped 1x1 -> heads*(1+K*K), bias), ``logit_bn2``,
    ``value_conv`` (grouped 1x1 C -> C, no bias).

    ``implementation`` (how neighbours are gathered; all give the same numbers):
    ``"fused"`` sums K*K shifted value maps with a hand-written backward pass
    (:mod:`stra_jax.layers.fused_local`); ``"shift"`` is the same forward left to
    autodiff; ``"patches"`` unfolds with ``jax.lax.conv_general_dilated_patches``;
    ``"auto"`` (default) picks per backend (``AUTO_ATTENTION``). ``grouped_conv``:
    how the grouped 1x1 convolutions run (``"auto"``, ``"einsum"``, ``"conv"``,
    see :func:`stra_jax.layers.conv.conv1x1`); parameters are the same for all.
    """

    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    stride: int = 1
    dilation: int = 1
    implementation: str = "auto"
    grouped_conv: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        checks.check_local_attention(self.heads, self.kernel_size, self.reduction, self.stride,
                                     self.dilation, self.implementation)
        checks.check_grouped_conv(self.grouped_conv)
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
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, implementation=self.grouped_conv)
        x = x.astype(self.dtype)
        implementation = resolve_attention(self.implementation)

        # Logit branch T: grouped 1x1 -> BN -> tanh -> grouped 1x1 -> BN.
        t = conv1x1(hidden, groups=heads, use_bias=True, name="logit_conv1", **kw)(x)
        bn = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        t = jnp.tanh(batch_norm(train, name="logit_bn1", **bn)(t))
        t = conv1x1(heads * (1 + k * k), groups=heads, use_bias=True, name="logit_conv2", **kw)(t)
        t = batch_norm(train, name="logit_bn2", **bn)(t)

        nu = t[..., :heads]  # one logit per head and node: nu(x_j)
        omega = t[:, ::s, ::s, heads:]  # K*K logits per head at window centres
        _, ho, wo, _ = omega.shape
        omega = omega.reshape(b, ho, wo, heads, k * k)
        values = conv1x1(channels, groups=heads, use_bias=False, name="value_conv", **kw)(x)

        if implementation == "fused":
            out = attend_shifted(nu, omega, values.reshape(*values.shape[:3], heads, channels // heads),
                                 k, s, self.dilation)
            return out.reshape(b, ho, wo, channels)
        if implementation == "patches":
            weights = local_attention_weights(omega, unfold_neighbourhoods(nu, k, s, self.dilation))
            value_neighbours = unfold_neighbourhoods(values, k, s, self.dilation)
            value_neighbours = value_neighbours.reshape(b, ho, wo, heads, channels // heads, k * k)
            return aggregate_neighbours(weights, value_neighbours)
        nu_neighbours = jnp.stack(shifted_neighbours(nu, k, s, self.dilation), axis=-1)
        weights = local_attention_weights(omega, nu_neighbours)
        return aggregate_shifted(weights, shifted_neighbours(values, k, s, self.dilation))
