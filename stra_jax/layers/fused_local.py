"""Eq. 4 on shifted maps with a hand-written backward pass (``implementation="fused"``).

Forward it is exactly the ``"shift"`` formulation: softmax over the window of
``omega + nu(neighbour)``, then the weighted sum of the K*K shifted value maps.
Autodiff of that program is slow on XLA:CPU for two reasons (at the
last-stage shape (32, 16, 8, 512), G 8, K 3; benchmarks/attention.py, figures
in docs/results.md):

* the cotangent of each shifted slice is its own padded copy of the value map,
  summed and transposed twice (once per consumer): about three quarters of
  the module's forward+backward time;
* d(weights) is K*K separate reductions over the head's channels, each
  re-reading the cotangent and the values (about a tenth of it).

Here the backward pass stores only the weights and the values and computes

* d(values)_j = sum_k w_k(j - d_k) dy(j - d_k): the *reverse* shifts of one
  padded dy and one padded w, one fused loop (stride 1; stride 2 places each
  window entry back with an interior-padded ``lax.pad``);
* d(weights)_k = sum_n dy * shift_k(values): one variadic reduction with K*K
  outputs, so dy and the values are read once;
* the softmax backward dl = w * (dw - sum_k w dw), d(omega) = dl and
  d(nu) = the reverse-shifted sum of dl.

Everything accumulates in at least float32, like the forward.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from stra_jax.layers.window import local_attention_weights, shifted_neighbours, window_padding
from stra_jax.layers.precision import accum_dtype, upcast


def _reverse_shift_sum(maps: list[jax.Array], shape: tuple[int, ...], kernel_size: int, stride: int,
                       dilation: int) -> jax.Array:
    """The transpose of :func:`shifted_neighbours`: sum_k shift_k^T(maps[k]), of ``shape``
    (the input's (B, H, W, ...)). All pads and slices, so it shards like the input."""
    kk = kernel_size * kernel_size
    if stride == 1:
        # shift_k^T is the shift by the opposite offset, i.e. entry K*K-1-k of the
        # same window: slices of one padded copy per map, fused into one loop.
        shifted = [shifted_neighbours(m, kernel_size, 1, dilation)[kk - 1 - k] for k, m in enumerate(maps)]
        return functools.reduce(jnp.add, shifted)
    # Strided: place map k back on its input nodes (interior padding s-1, offset k*d)
    # inside the padded frame, sum, then crop the frame.
    pad = window_padding(kernel_size, dilation, stride)
    h, w = shape[1], shape[2]
    hp, wp = h + 2 * pad, w + 2 * pad
    total = None
    for k, m in enumerate(maps):
        ky, kx = divmod(k, kernel_size)
        ho, wo = m.shape[1], m.shape[2]
        span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
        config = [(0, 0, 0), (ky * dilation, hp - ky * dilation - span_h, stride - 1),
                  (kx * dilation, wp - kx * dilation - span_w, stride - 1)] + [(0, 0, 0)] * (m.ndim - 3)
        placed = jax.lax.pad(m, jnp.zeros((), m.dtype), config)
        total = placed if total is None else total + placed
    return total[:, pad:pad + h, pad:pad + w]


def _forward(nu, omega, values, kernel_size, stride, dilation):
    nu_neighbours = jnp.stack(shifted_neighbours(nu, kernel_size, stride, dilation), axis=-1)
    weights = local_attention_weights(omega, nu_neighbours)
    out = jnp.zeros(omega.shape[:-1] + values.shape[-1:], accum_dtype(values.dtype))
    for k, value in enumerate(shifted_neighbours(values, kernel_size, stride, dilation)):
        out = out + weights[..., k, None] * upcast(value)
    return out.astype(values.dtype), weights


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def attend_shifted(nu: jax.Array, omega: jax.Array, values: jax.Array, kernel_size: int, stride: int,
                   dilation: int) -> jax.Array:
    """Eq. 4 for G heads: s_i^g = sum_k softmax_k(omega_ik^g + nu_{i+k}^g) u_{i+k}^g.

    nu: (B, H, W, G) at input resolution; omega: (B, H', W', G, K*K) at the
    window centres; values: (B, H, W, G, n). Returns (B, H', W', G, n) in the
    values' dtype (H' = ceil(H/stride)). Zero-padded neighbours take part with
    nu = 0 and value 0, as in the authors' code.
    """
    return _forward(nu, omega, values, kernel_size, stride, dilation)[0]


def _attend_fwd(nu, omega, values, kernel_size, stride, dilation):
    out, weights = _forward(nu, omega, values, kernel_size, stride, dilation)
    # Zero-size arrays carry the input dtypes to the backward pass.
    return out, (weights, values, jnp.zeros((0,), nu.dtype), jnp.zeros((0,), omega.dtype))


def _attend_bwd(kernel_size, stride, dilation, residuals, dy):
    weights, values, nu_like, omega_like = residuals
    dy = upcast(dy)
    value_maps = shifted_neighbours(values, kernel_size, stride, dilation)
    products = tuple(dy * upcast(v) for v in value_maps)
    zeros = tuple(jnp.zeros((), dy.dtype) for _ in products)
    # One variadic reduction: dy and the values are read once for all K*K outputs.
    d_weights = jax.lax.reduce(products, zeros, lambda a, b: tuple(x + y for x, y in zip(a, b)),
                               (dy.ndim - 1,))
    d_weights = jnp.stack(d_weights, axis=-1)
    d_logits = weights * (d_weights - jnp.sum(weights * d_weights, axis=-1, keepdims=True))

    kk = kernel_size * kernel_size
    if stride == 1:
        # d(values)_j = sum_k w_k(j - d_k) dy(j - d_k), from one padded w and one padded dy.
        w_maps = shifted_neighbours(weights, kernel_size, 1, dilation)
        dy_maps = shifted_neighbours(dy, kernel_size, 1, dilation)
        d_values = functools.reduce(jnp.add, [w_maps[kk - 1 - k][..., k, None] * dy_maps[kk - 1 - k]
                                              for k in range(kk)])
    else:
        d_values = _reverse_shift_sum([weights[..., k, None] * dy for k in range(kk)], values.shape,
                                      kernel_size, stride, dilation)
    d_nu = _reverse_shift_sum([d_logits[..., k] for k in range(kk)], values.shape[:-1],
                              kernel_size, stride, dilation)
    return d_nu.astype(nu_like.dtype), d_logits.astype(omega_like.dtype), d_values.astype(values.dtype)


attend_shifted.defvjp(_attend_fwd, _attend_bwd)
