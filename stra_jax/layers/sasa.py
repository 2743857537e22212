"""Stand-alone local self-attention (SASA; Ramachandran et al., NeurIPS 2019), NHWC.

The StRA paper's Eq. 3 (its Section 4.1, after Ramachandran et al.): each node i
attends over its K x K neighbourhood N_K(i),

    s_i = sum_{j in N_K(i)} a_ij u(x_j),
    a_ij = softmax_j( q(x_i)^T k(x_j) + q(x_i)^T r_{j-i} ),

per head: the C_out channels of q, k, u and r are split depthwise into
``heads`` groups of C_out/heads, each with its own softmax. q, k, u are 1x1
projections without bias. r_{j-i} is Ramachandran's factorised relative
embedding (Sec. 3.1): for the offset (a, b) = (row, column) of j from i, the
concatenation of a row embedding ``rel_rows[a]`` and a column embedding
``rel_cols[b]``, C_out/2 channels each (rows first), split into heads like q and
k: with 8 heads, heads 0-3 see only row offsets and heads 4-7 only column
offsets. This is the common PyTorch layout (``rel_h`` (C/2, 1, 1, K, 1),
``rel_w`` (C/2, 1, 1, 1, K)), which ``stra_jax.convert`` maps onto
``rel_rows`` / ``rel_cols``.

Neighbours outside the image are left out of the softmax (see
:func:`local_self_attention`). Stride 2 is Ramachandran's "2x2 average pooling
with stride 2 following the attention layer", in ceil mode so the output is
ceil(H/2) x ceil(W/2) like the bottleneck's strided 1x1 shortcut.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.layers import checks
from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.precision import accum_dtype


def check_sasa(features: Any, heads: Any, kernel_size: Any, stride: Any = 1) -> None:
    """SASA's hyper-parameters; ``ValueError`` naming SASA, the channels and the heads.

    ``features`` (C_out) must split into ``heads`` equal groups and into equal
    row / column halves of the relative embedding.
    """
    checks.check_positive_int("heads", heads)
    checks.check_kernel_size(kernel_size)
    checks.check_stride(stride)
    checks.check_positive_int("features", features)
    if features % heads:
        raise ValueError(f"SASA: channels={features} is not divisible by heads={heads}: each head takes "
                         f"channels/heads of q, k, v and the relative embedding")
    if features % 2:
        raise ValueError(f"SASA: channels={features} (heads={heads}) must be even: the relative embedding is "
                         f"channels/2 row-offset plus channels/2 column-offset channels")


def relative_embeddings(rel_rows: jax.Array, rel_cols: jax.Array) -> jax.Array:
    """(K, C/2) row and (K, C/2) column embeddings -> r (K*K, C).

    Entry k = ky*K + kx (row-major, the order of :func:`gather_neighbours`) is
    concat(rel_rows[ky], rel_cols[kx]): the neighbour at offset
    (ky - K//2, kx - K//2) from the centre.
    """
    k = rel_rows.shape[0]
    return jnp.concatenate([jnp.repeat(rel_rows, k, axis=0), jnp.tile(rel_cols, (k, 1))], axis=-1)


def _neighbour_index(height: int, width: int, kernel_size: int) -> np.ndarray:
    """(H*W*K*K,) flat indices into the (H+2p) x (W+2p) zero-padded map, p = K//2:
    entry ((y*W + x)*K + ky)*K + kx is the node (y + ky, x + kx) of the padded map,
    i.e. the neighbour at offset (ky - p, kx - p) of (y, x)."""
    padded_w = width + 2 * (kernel_size // 2)
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rows = ys[:, :, None, None] + np.arange(kernel_size)[:, None]
    cols = xs[:, :, None, None] + np.arange(kernel_size)[None, :]
    return (rows * padded_w + cols).reshape(-1)


def gather_neighbours(x: jax.Array, kernel_size: int) -> jax.Array:
    """(B, H, W, C) -> (B, H, W, K*K, C): the K x K zero-padded window of every
    node, entry k = ky*K + kx (row-major, as ``window.shifted_neighbours``).

    One pad and one gather with a static index (backward: one scatter-add).
    Stacking K*K shifted slices gives the same array, but XLA:CPU compiles those
    49 slices + concatenate ~20x slower and runs them ~2x slower (measured at
    K=7 on (64, 16, 8, 512)).
    """
    b, h, w, c = x.shape
    p = kernel_size // 2
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))).reshape(b, (h + 2 * p) * (w + 2 * p), c)
    return jnp.take(xp, _neighbour_index(h, w, kernel_size), axis=1).reshape(b, h, w, kernel_size**2, c)


def valid_neighbours(height: int, width: int, kernel_size: int) -> np.ndarray:
    """(H, W, K*K) bool: whether neighbour k of node (y, x) lies inside the image.

    Static (shapes only), so it is a constant of the compiled program.
    """
    p = kernel_size // 2
    inside = np.pad(np.ones((height, width), bool), p).reshape(-1)
    return inside[_neighbour_index(height, width, kernel_size)].reshape(height, width, kernel_size**2)


def local_self_attention(q: jax.Array, key_neighbours: jax.Array, value_neighbours: jax.Array,
                         rel: jax.Array, valid: jax.Array | np.ndarray, heads: int) -> jax.Array:
    """Eq. 3 (StRA paper; Ramachandran et al.): s_i = sum_{j in N_K(i)} a_ij u(x_j),
    a_ij = softmax_j( q(x_i)^T k(x_j) + q(x_i)^T r_{j-i} ), per head.

    q: (B, H, W, C); key_neighbours, value_neighbours: (B, H, W, K*K, C), k(x_j)
    and u(x_j) for the K*K neighbours j of each node; rel: (K*K, C), r_{j-i};
    valid: (H, W, K*K), False for neighbours outside the image. Channels
    c = g * C/heads + n belong to head g. Returns (B, H, W, C) in q's dtype.

    Neighbours outside the image get a logit of -inf (weight 0): zero padding
    alone would not remove them, since a zero key still scores q_i . r_{j-i}
    and would take part of the attention mass (its zero value then shrinking
    the output near the borders). The centre is always inside, so every
    softmax has a finite entry. Logits and softmax are float32 (or wider)
    whatever the inputs' dtype.
    """
    b, h, w, c = q.shape
    kk = rel.shape[0]
    n = c // heads
    acc = accum_dtype(q.dtype)
    qh = q.reshape(b, h, w, heads, n)
    content = jnp.einsum("bhwgn,bhwkgn->bhwgk", qh, key_neighbours.reshape(b, h, w, kk, heads, n),
                         preferred_element_type=acc)                       # q_i . k_j
    position = jnp.einsum("bhwgn,kgn->bhwgk", qh, rel.astype(q.dtype).reshape(kk, heads, n),
                          preferred_element_type=acc)                      # q_i . r_{j-i}
    logits = jnp.where(jnp.asarray(valid)[None, :, :, None, :], content + position, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhwgk,bhwkgn->bhwgn", weights.astype(value_neighbours.dtype),
                     value_neighbours.reshape(b, h, w, kk, heads, n), preferred_element_type=acc)
    return out.reshape(b, h, w, c).astype(q.dtype)


def avg_pool_2x2_ceil(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C): 2x2 average pooling with
    stride 2; an odd last row / column is averaged over its valid pixels only
    (PyTorch's ``avg_pool2d(x, 2, 2, ceil_mode=True)``)."""
    b, h, w, c = x.shape
    ph, pw = h % 2, w % 2
    xp = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    sums = xp.reshape(b, (h + ph) // 2, 2, (w + pw) // 2, 2, c).sum(axis=(2, 4), dtype=accum_dtype(x.dtype))
    count = np.pad(np.ones((h, w), np.float32), ((0, ph), (0, pw)))
    count = count.reshape((h + ph) // 2, 2, (w + pw) // 2, 2).sum(axis=(1, 3))
    return (sums / count[None, :, :, None]).astype(x.dtype)


class SASA(nn.Module):
    """Stand-alone local self-attention replacing a K x K convolution.

    (B, H, W, C_in) -> (B, ceil(H/stride), ceil(W/stride), ``features``).
    Parameters: ``query``, ``key``, ``value`` (``nn.Dense`` without bias, kernel
    (C_in, features), Kaiming-normal fan_out like the network's convolutions)
    and ``rel_rows``, ``rel_cols`` (K, features/2), normal(0, 1). No output
    projection: in a bottleneck, bn2 follows. ``stride=2`` average-pools 2x2
    after attending at full resolution (Ramachandran et al.).
    """

    features: int
    heads: int = 8
    kernel_size: int = 7
    stride: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_sasa(self.features, self.heads, self.kernel_size, self.stride)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_sasa(self.features, self.heads, self.kernel_size, self.stride)
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 4 or shape[1] < 1 or shape[2] < 1:
            raise ValueError(f"SASA: input shape {shape}: expected a (batch, height, width, channels) NHWC "
                             "array with height and width >= 1")
        c, k = self.features, self.kernel_size
        dense = dict(use_bias=False, kernel_init=kaiming_fan_out, dtype=self.dtype, param_dtype=self.param_dtype)
        q = nn.Dense(c, name="query", **dense)(x)
        keys = nn.Dense(c, name="key", **dense)(x)
        values = nn.Dense(c, name="value", **dense)(x)
        rel_rows = self.param("rel_rows", nn.initializers.normal(1.0), (k, c // 2), self.param_dtype)
        rel_cols = self.param("rel_cols", nn.initializers.normal(1.0), (k, c // 2), self.param_dtype)

        # K x K windows of the projected keys / values (zero padding K//2, masked
        # out below). Projecting before padding is exact: the projections have no bias.
        key_nb = gather_neighbours(keys, k)                                 # (B, H, W, K*K, C)
        value_nb = gather_neighbours(values, k)
        valid = valid_neighbours(x.shape[1], x.shape[2], k)
        out = local_self_attention(q, key_nb, value_nb, relative_embeddings(rel_rows, rel_cols), valid,
                                   self.heads)
        # Ramachandran et al.: attend at full resolution, then 2x2 average pooling,
        # so every position's attention output reaches the downsampled map (a
        # strided query grid would keep one position in four).
        return avg_pool_2x2_ceil(out) if self.stride == 2 else out
