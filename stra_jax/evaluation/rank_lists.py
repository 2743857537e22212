"""Ranked lists of a query x gallery distance matrix: which gallery items each
query retrieves, its average precision, and which queries to look at
(torchreid's ``visrank``, pure NumPy).

The protocol is :mod:`stra_jax.evaluation.reid`'s (Market-1501), implemented
there once: per query the gallery is ranked by ascending distance with ties
broken by gallery index (a stable sort), gallery items with the query's pid
*and* camera are removed ("junk"), and the kept items with the query's pid are
its matches. A query without a match is invalid (skipped by mAP): its AP is NaN
here. The mean of the valid APs equals ``evaluate_rank``'s mAP.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from stra_jax.evaluation.reid import rank_gallery_with_ap

__all__ = ["average_precision_per_query", "rank_gallery", "rank_gallery_with_ap", "select_queries"]


def rank_gallery(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                 g_camids: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top-k gallery items under the ReID protocol: ``(indices (Q, k)
    int64, -1 past the kept items; matches (Q, k) bool)`` of :func:`rank_gallery_with_ap`
    (``distmat`` (Q, G), labels (Q,) and (G,), as there)."""
    indices, matches, _ = rank_gallery_with_ap(distmat, q_pids, g_pids, q_camids, g_camids, k)
    return indices, matches


def average_precision_per_query(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                                q_camids: ArrayLike, g_camids: ArrayLike) -> np.ndarray:
    """(Q,) float64 AP of every query (``mean_j j / rank_j`` over its matches, ranks
    1-based among the kept gallery items); NaN for a query without a match. The
    mean over the non-NaN entries is :func:`~stra_jax.evaluation.reid.evaluate_rank`'s mAP."""
    return rank_gallery_with_ap(distmat, q_pids, g_pids, q_camids, g_camids, 1)[2]


def select_queries(ap: ArrayLike, num_worst: int, num_random: int, seed: int = 0) -> list[int]:
    """Queries to draw: the ``num_worst`` lowest-AP ones (ascending AP, ties by
    index), then ``num_random`` others drawn without replacement with
    ``np.random.default_rng(seed)`` (in index order). Queries with NaN AP (no
    match, not in mAP) are never selected; fewer are returned if too few are valid.

    Args:
      ap: (Q,) per-query AP, NaN = invalid.
    Returns:
      Query indices, worst first; the two groups are disjoint.
    """
    ap = np.asarray(ap, dtype=np.float64)
    if ap.ndim != 1:
        raise ValueError(f"ap has shape {ap.shape}, expected (num_query,)")
    for name, n in (("num_worst", num_worst), ("num_random", num_random)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {n!r}")
    valid = np.flatnonzero(~np.isnan(ap))
    worst = valid[np.lexsort((valid, ap[valid]))][:num_worst]
    rest = np.setdiff1d(valid, worst)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(rest, size=min(num_random, len(rest)), replace=False)) if len(rest) else rest
    return [int(i) for i in worst] + [int(i) for i in picked]
