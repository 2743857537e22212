"""Average query expansion (alpha-QE) of retrieval features, before any distance.

alpha-QE (Radenovic, Tolias and Chum, "Fine-tuning CNN Image Retrieval with No
Human Annotation", TPAMI 2018, Sec. 5.2) replaces a descriptor by the weighted
sum of itself and its nearest neighbours, weights cosine^alpha; alpha = 0 is the
plain average QE of Chum et al. (ICCV 2007). fast-reid (JDAI-CV/fast-reid,
``fastreid/evaluation/query_expansion.py``, ``TEST.AQE``: ``QE_TIME 1``,
``QE_K 5``, ``ALPHA 3.0``) applies it to the query *and* the gallery, with the
pool of neighbours being query + gallery; so does this module (one round).

Where this differs from fast-reid's code, on purpose:

* the neighbours' *L2-normalised* features are summed and the result is
  re-normalised (the paper's descriptors are unit vectors); fast-reid averages
  the raw features with the weights of their cosines and returns them unnormalised.
  With its default cosine metric only the raw norms of the neighbours differ.
* weights are ``max(cos, 0) ** alpha``: a negative cosine (rare, and only
  ever among the k nearest for tiny pools) counts 0, where fast-reid's
  ``cos ** alpha`` turns negative (odd alpha) or NaN (fractional alpha).
* the item itself is always one of its k (weight 1) and ties are broken by
  pool index (query rows first, then gallery rows, lower index first), where
  fast-reid's ``argpartition`` leaves both to chance for duplicates.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

# Elements of a (rows, pool) similarity block handled at once: ~18 bytes each in
# temporaries (similarities, the partition copy, masks, the tie count) -> ~75 MB.
_BLOCK_ELEMENTS = 1 << 22


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def _check(name: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"average_query_expansion: {name} must be a non-empty 2-D (num_items, feature_dim) "
                         f"array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"average_query_expansion: {name} has dtype {arr.dtype}, expected real-valued features")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"average_query_expansion: {name} (shape {arr.shape}) contains non-finite values "
                         "(in float32)")
    return arr


def _top_k_mask(sims: np.ndarray, k: int) -> np.ndarray:
    """(B, N) bool, exactly ``k`` True per row: the ``k`` largest values, ties
    going to the lower column index. O(N) per row (a partition, no sort)."""
    n = sims.shape[1]
    kth = np.partition(sims, n - k, axis=1)[:, n - k, None]  # the k-th largest value of each row
    above = sims > kth
    tied = sims == kth
    # Of the items equal to the k-th value, the first (k - #above) by index make up the k.
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))


def average_query_expansion(qf: ArrayLike, gf: ArrayLike, k: int = 5, alpha: float = 3.0,
                            block_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery features after one round of alpha-weighted average query expansion.

    With ``x_i`` the L2-normalised rows of the pool ``[qf; gf]`` (N = Nq + Ng items),
    ``s_ij = x_i . x_j`` and ``N_i`` = item i plus the k - 1 other items of largest
    ``s_ij`` (ties: lower pool index first)::

        y_i = sum_{j in N_i} w_ij x_j,   w_ii = 1,  w_ij = max(s_ij, 0) ** alpha,
        x_i' = y_i / ||y_i||

    (Radenovic et al., TPAMI 2018; fast-reid's ``aqe`` with ``qe_times=1``; see the
    module docstring for the differences.) ``alpha = 0`` is the plain average of
    the k; a larger alpha trusts the closest neighbours more. A zero feature stays
    zero for ``alpha > 0``.

    Args:
      qf: (Nq, D) query features; gf: (Ng, D) gallery features (any real dtype).
      k: neighbours per item, itself included (1 <= k <= Nq + Ng); k = 1 only normalises.
      alpha: weight exponent, >= 0.
      block_size: pool rows per block (default: ~4M similarity elements per block);
        memory is O(block_size * N + N * D), the result does not depend on it.

    Returns:
      ``(qf' (Nq, D), gf' (Ng, D))`` float32, unit rows (zero rows excepted).
    """
    q, g = _check("qf", qf), _check("gf", gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"average_query_expansion: feature dims differ: qf has shape {q.shape}, gf has shape "
                         f"{g.shape}; expected the same feature_dim")
    n = q.shape[0] + g.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"average_query_expansion: k must be an integer in [1, {n}] (num_query + num_gallery), "
                         f"got {k!r}")
    if (isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating))
            or not math.isfinite(alpha) or alpha < 0):
        raise ValueError(f"average_query_expansion: alpha must be a finite number >= 0, got {alpha!r}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
                                   or block_size < 1):
        raise ValueError(f"average_query_expansion: block_size must be a positive integer or None, "
                         f"got {block_size!r}")
    pool = _unit_rows(np.concatenate([q, g], axis=0))
    rows = int(block_size) if block_size else max(1, _BLOCK_ELEMENTS // max(n, k * pool.shape[1]))
    out = np.empty_like(pool)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        sims = pool[r0:r1] @ pool.T  # (B, N) cosines
        # Self first whatever the rounding or duplicates: 2 > any cosine; clipped to weight 1 below.
        sims[np.arange(r1 - r0), np.arange(r0, r1)] = 2.0
        _, cols = np.nonzero(_top_k_mask(sims, k))  # row-major: k per row, ascending pool index
        cols = cols.reshape(r1 - r0, k)
        weights = np.clip(np.take_along_axis(sims, cols, axis=1), 0.0, 1.0) ** np.float32(alpha)
        out[r0:r1] = np.einsum("bk,bkd->bd", weights, pool[cols])
    out = _unit_rows(out)
    return out[: q.shape[0]], out[q.shape[0]:]
