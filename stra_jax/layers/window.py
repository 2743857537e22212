"""The K x K window of local attention: K*K shifted maps and the Eq. 4 weights over them."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from stra_jax.layers.precision import upcast


def window_padding(kernel_size: int, dilation: int, stride: int) -> int:
    """Zero padding p = ((K-1)*d + 2 - s) // 2, giving ceil(H/s) centred windows."""
    return ((kernel_size - 1) * dilation + 2 - stride) // 2


def shifted_neighbours(x: jax.Array, kernel_size: int, stride: int, dilation: int) -> list[jax.Array]:
    """The K*K zero-padded neighbour maps of (B, H, W, ...) (any trailing axes),
    each (B, ceil(H/s), ceil(W/s), ...).

    Entry k = ky*K + kx (row-major, PyTorch ``nn.Unfold`` order) holds, at output
    node o, the input node s*o + ((ky, kx) - (K-1)/2) * d. Built from one pad and
    K*K strided slices: no K*K-times larger tensor is needed by the caller, and
    the backward pass is a pad/add, unlike an identity-kernel convolution.
    """
    pad = window_padding(kernel_size, dilation, stride)
    h, w = x.shape[1], x.shape[2]
    ho, wo = -(-h // stride), -(-w // stride)
    xp = jnp.pad(x, [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 3))
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    return [
        xp[:, ky * dilation: ky * dilation + span_h: stride, kx * dilation: kx * dilation + span_w: stride]
        for ky in range(kernel_size)
        for kx in range(kernel_size)
    ]


def local_attention_weights(omega: jax.Array, nu_neighbours: jax.Array) -> jax.Array:
    """Eq. 4: a_ij = softmax over the window j of (omega(x_i)_j + nu(x_j)).

    omega, nu_neighbours: (B, H', W', G, K*K). Zero-padded neighbours take part
    with nu = 0, as in the authors' code. Returns weights (at least float32) summing to 1
    over the last axis.
    """
    logits = upcast(omega) + upcast(nu_neighbours)
    return jax.nn.softmax(logits, axis=-1)
