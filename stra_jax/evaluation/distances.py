"""Query x gallery distances of retrieval features (ReID evaluation): Euclidean,
squared Euclidean or cosine, optionally after average query expansion and
optionally k-reciprocal re-ranked.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from numpy.typing import ArrayLike

from stra_jax.evaluation.distance_tiles import (TILE, Metric, check_features, check_metric, distance_rows, prepare,
                                               working_dtype)
from stra_jax.evaluation.query_expansion import average_query_expansion
from stra_jax.evaluation.rerank import re_ranking, re_ranking_features

# Re-ranking from the three distance matrices while their float32 bytes stay within this
# fraction of the available memory (re_ranking needs about as much again in blocks and V);
# past it, re_ranking_features.  RERANK_MATRIX_BYTES when the available memory is unknown.
RERANK_MATRIX_FRACTION = 0.25
RERANK_MATRIX_BYTES = 4 << 30


def compute_distance(qf: ArrayLike, gf: ArrayLike, metric: Metric = "euclidean", normalize: bool = False,
                     chunk_size: int = 1024) -> np.ndarray:
    """Query x gallery distance matrix, computed in row blocks of about ``chunk_size`` queries.

    Args:
      qf: (num_query, dim) features; gf: (num_gallery, dim) features.
      metric: "euclidean" (L2), "sqeuclidean" (squared L2) or "cosine" (1 - cosine similarity).
      normalize: L2-normalise the features first (cosine always does).
      chunk_size: query rows per block (rounded up to a multiple of 256); only a block is
        ever held in float64.

    Returns:
      (num_query, num_gallery) float32.  Computed in float32 (float64 if either input is
      float64) via ||q||^2 + ||g||^2 - 2 q.g, clamped at 0; float32 cancellation limits the
      accuracy of tiny distances to ~sqrt(eps) * ||x||.  The products run in fixed-shape
      tiles (:mod:`~stra_jax.evaluation.distance_tiles`), so the result does not depend on
      ``chunk_size`` and equals, bit for bit, the same entries computed from row blocks or
      pairs (as :func:`~stra_jax.evaluation.rerank.re_ranking_features` does).
    """
    check_metric(metric)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    q, g = check_features("qf", qf), check_features("gf", gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dims differ: qf has shape {q.shape}, gf has shape {g.shape}; "
                         "expected the same feature_dim")
    dtype = working_dtype(q, g)
    a, b = prepare(q, dtype, metric, normalize), prepare(g, dtype, metric, normalize)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    step = -(-chunk_size // TILE) * TILE
    for r0 in range(0, q.shape[0], step):
        r1 = min(q.shape[0], r0 + step)
        distance_rows(a, b, r0, r1, metric, out=out[r0:r1])
    return out


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux ``MemAvailable``; else free physical pages),
    or None when neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _rerank_from_matrices(n_q: int, n_g: int, max_bytes: int | None) -> bool:
    """Whether the matrix re-ranking's float32 q_g + q_q + g_g fit in ``max_bytes``
    (default: RERANK_MATRIX_FRACTION of the available memory, else RERANK_MATRIX_BYTES)."""
    if max_bytes is None:
        available = available_memory_bytes()
        max_bytes = RERANK_MATRIX_BYTES if available is None else int(available * RERANK_MATRIX_FRACTION)
    return 4 * (n_q * n_g + n_q * n_q + n_g * n_g) <= max_bytes


def retrieval_distances(qf: ArrayLike, gf: ArrayLike, metric: Metric = "euclidean", normalize: bool = False,
                        rerank: bool = False, aqe: tuple[int, float] | None = None, *,
                        rerank_max_bytes: int | None = None) -> np.ndarray:
    """(num_query, num_gallery) distances as :func:`evaluate` ranks them: with
    ``aqe = (k, alpha)`` the features are first replaced by their average query
    expansion (:func:`~stra_jax.evaluation.query_expansion.average_query_expansion`,
    unit rows), then ``metric`` after optional L2 normalisation, optionally
    k-reciprocal re-ranked (the q-q and g-g distances of the same, expanded
    features with the same metric, used as they are).

    Re-ranking goes through :func:`~stra_jax.evaluation.rerank.re_ranking` on the three
    distance matrices when their float32 bytes fit in ``rerank_max_bytes`` (default
    :data:`RERANK_MATRIX_FRACTION` of the available memory), else through
    :func:`~stra_jax.evaluation.rerank.re_ranking_features` in bounded memory (MSMT17
    size); both give the same bits.  The two feature arrays are first promoted to one
    dtype, so that q-q, g-g and q-g are computed alike on both paths.
    """
    if aqe is not None:
        if not isinstance(aqe, (tuple, list)) or len(aqe) != 2:
            raise ValueError(f"aqe must be None or a pair (k, alpha), got {aqe!r}")
        qf, gf = average_query_expansion(qf, gf, k=aqe[0], alpha=aqe[1])
    if not rerank:
        return compute_distance(qf, gf, metric=metric, normalize=normalize)
    if rerank_max_bytes is not None and (isinstance(rerank_max_bytes, bool)
                                         or not isinstance(rerank_max_bytes, (int, np.integer))):
        raise ValueError(f"rerank_max_bytes must be None or an integer number of bytes, got {rerank_max_bytes!r}")
    q, g = check_features("qf", qf), check_features("gf", gf)
    dtype = working_dtype(q, g)
    q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)
    if not _rerank_from_matrices(len(q), len(g), rerank_max_bytes):
        # Minutes at MSMT17 size: say why this path, and show its progress (stderr).
        print(f"re-ranking {len(q)} queries x {len(g)} gallery items from the features in bounded memory "
              "(the distance matrices would not fit)", file=sys.stderr, flush=True)
        return re_ranking_features(q, g, metric=metric, normalize=normalize, progress=True)
    return re_ranking(compute_distance(q, g, metric=metric, normalize=normalize),
                      compute_distance(q, q, metric=metric, normalize=normalize),
                      compute_distance(g, g, metric=metric, normalize=normalize))
