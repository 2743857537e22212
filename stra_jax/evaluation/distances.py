"""Query x gallery distances of retrieval features (ReID evaluation): Euclidean,
squared Euclidean or cosine, optionally after average query expansion and
optionally k-reciprocal re-ranked.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from stra_jax.evaluation.query_expansion import average_query_expansion
from stra_jax.evaluation.rerank import re_ranking

Metric = Literal["euclidean", "sqeuclidean", "cosine"]
_METRICS = ("euclidean", "sqeuclidean", "cosine")


def _features(name: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items, feature_dim), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} has dtype {arr.dtype}, expected real-valued features")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} (shape {arr.shape}) contains non-finite values")
    return arr


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norm, np.finfo(x.dtype).tiny)  # zero vectors stay zero (cosine distance 1)


def compute_distance(qf: ArrayLike, gf: ArrayLike, metric: Metric = "euclidean", normalize: bool = False,
                     chunk_size: int = 1024) -> np.ndarray:
    """Query x gallery distance matrix, computed in row blocks of ``chunk_size`` queries.

    Args:
      qf: (num_query, dim) features; gf: (num_gallery, dim) features.
      metric: "euclidean" (L2), "sqeuclidean" (squared L2) or "cosine" (1 - cosine similarity).
      normalize: L2-normalise the features first (cosine always does).
      chunk_size: query rows per block; only a block is ever held in float64.

    Returns:
      (num_query, num_gallery) float32.  Computed in float32 (float64 if either input is
      float64) via ||q||^2 + ||g||^2 - 2 q.g, clamped at 0; float32 cancellation limits the
      accuracy of tiny distances to ~sqrt(eps) * ||x||.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    q, g = _features("qf", qf), _features("gf", gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dims differ: qf has shape {q.shape}, gf has shape {g.shape}; "
                         "expected the same feature_dim")
    dtype = np.float64 if np.float64 in (q.dtype, g.dtype) else np.float32
    q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)
    if normalize or metric == "cosine":
        q, g = _l2_normalize(q), _l2_normalize(g)
    q_sq, g_sq = np.einsum("ij,ij->i", q, q), np.einsum("ij,ij->i", g, g)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for r0 in range(0, q.shape[0], chunk_size):
        r1 = min(q.shape[0], r0 + chunk_size)
        blk = np.matmul(q[r0:r1], g.T, out=out[r0:r1] if dtype == np.float32 else None)
        if metric == "cosine":
            np.subtract(1.0, blk, out=blk)
            np.clip(blk, 0.0, 2.0, out=blk)  # rounding leaves ~-1e-7 for identical directions
        else:
            blk *= -2.0
            blk += q_sq[r0:r1, None]
            blk += g_sq[None, :]
            np.maximum(blk, 0.0, out=blk)  # rounding can push ~0 distances below 0
            if metric == "euclidean":
                np.sqrt(blk, out=blk)
        if blk.dtype != np.float32:
            out[r0:r1] = blk
    return out


def retrieval_distances(qf: ArrayLike, gf: ArrayLike, metric: Metric = "euclidean", normalize: bool = False,
                        rerank: bool = False, aqe: tuple[int, float] | None = None) -> np.ndarray:
    """(num_query, num_gallery) distances as :func:`evaluate` ranks them: with
    ``aqe = (k, alpha)`` the features are first replaced by their average query
    expansion (:func:`~stra_jax.evaluation.query_expansion.average_query_expansion`,
    unit rows), then ``metric`` after optional L2 normalisation, optionally
    k-reciprocal re-ranked (the q-q and g-g distances of the same, expanded
    features with the same metric, passed to ``re_ranking`` as they are)."""
    if aqe is not None:
        if not isinstance(aqe, (tuple, list)) or len(aqe) != 2:
            raise ValueError(f"aqe must be None or a pair (k, alpha), got {aqe!r}")
        qf, gf = average_query_expansion(qf, gf, k=aqe[0], alpha=aqe[1])
    distmat = compute_distance(qf, gf, metric=metric, normalize=normalize)
    if rerank:
        distmat = re_ranking(distmat, compute_distance(qf, qf, metric=metric, normalize=normalize),
                             compute_distance(gf, gf, metric=metric, normalize=normalize))
    return distmat
