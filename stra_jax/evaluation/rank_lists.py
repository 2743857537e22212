"""Ranked lists of a query x gallery distance matrix: which gallery items each
query retrieves, its average precision, and which queries to look at
(torchreid's ``visrank``, pure NumPy).

The protocol is :mod:`stra_jax.evaluation.reid`'s (Market-1501): per query the
gallery is ranked by ascending distance with ties broken by gallery index (a
stable sort), gallery items with the query's pid *and* camera are removed
("junk"), and the kept items with the query's pid are its matches. A query
without a match is invalid (skipped by mAP): its AP is NaN here. The mean of the
valid APs equals ``evaluate_rank``'s mAP.

Memory: queries are ranked in chunks of about ``2**22 / num_gallery`` rows (a
chunk's copy, stable argsort and masks: ~20 bytes per element, ~80 MB).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from numpy.typing import ArrayLike

from stra_jax.evaluation.reid import _check_distmat, _labels  # the protocol's own input checks

_CHUNK_ELEMENTS = 1 << 22


def _inputs(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
            g_camids: ArrayLike) -> tuple[np.ndarray, ...]:
    """The checks of :mod:`stra_jax.evaluation.reid`, plus finite distances (junk is
    sorted last as +inf, so an inf distance would be confused with it)."""
    dist = _check_distmat(distmat)
    if not np.isfinite(dist).all():
        r, c = np.argwhere(~np.isfinite(dist))[0]
        raise ValueError(f"distmat contains non-finite values (first at [{r}, {c}]); expected finite distances")
    n_q, n_g = dist.shape
    return (dist, _labels("q_pids", q_pids, n_q, "distmat rows"), _labels("g_pids", g_pids, n_g, "distmat columns"),
            _labels("q_camids", q_camids, n_q, "distmat rows"), _labels("g_camids", g_camids, n_g, "distmat columns"))


def _ranked_chunks(dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                   g_camids: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of queries starting at row ``r0``: ``(r0, order (B, G), matches (B, G), n_kept (B,))``.

    ``order[i]`` is the stable ascending order of row i with its junk moved to the
    end; only the first ``n_kept[i]`` entries are ranked items. ``matches`` is
    aligned with ``order`` (False past ``n_kept``).
    """
    n_q, n_g = dist.shape
    chunk = max(1, _CHUNK_ELEMENTS // n_g)
    work = np.result_type(dist.dtype, np.float32)
    for r0 in range(0, n_q, chunk):
        r1 = min(n_q, r0 + chunk)
        same_pid = g_pids[None, :] == q_pids[r0:r1, None]
        junk = same_pid & (g_camids[None, :] == q_camids[r0:r1, None])
        block = np.array(dist[r0:r1], dtype=work)
        block[junk] = np.inf  # every kept item is finite: junk sorts last, kept order unchanged
        order = np.argsort(block, axis=1, kind="stable")
        n_kept = n_g - junk.sum(axis=1)
        kept = np.arange(n_g)[None, :] < n_kept[:, None]
        matches = np.take_along_axis(same_pid, order, axis=1) & kept
        yield r0, order, matches, n_kept


def _ap(matches: np.ndarray) -> np.ndarray:
    """(B,) AP of ranked match rows (B, G); NaN for a row without a match."""
    hits = np.cumsum(matches, axis=1)
    ranks = np.arange(1, matches.shape[1] + 1)
    n_pos = matches.sum(axis=1)
    total = np.where(matches, hits / ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, total / n_pos, np.nan)


def rank_gallery_with_ap(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                         g_camids: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rank_gallery` and :func:`average_precision_per_query` in one pass (one sort).

    Returns ``(indices (Q, k) int64, matches (Q, k) bool, ap (Q,) float64)``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    dist, q_pids, g_pids, q_camids, g_camids = _inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    n_q, n_g = dist.shape
    width = min(k, n_g)
    indices = np.full((n_q, k), -1, dtype=np.int64)
    top_matches = np.zeros((n_q, k), dtype=bool)
    ap = np.empty(n_q, dtype=np.float64)
    for r0, order, matches, n_kept in _ranked_chunks(dist, q_pids, g_pids, q_camids, g_camids):
        r1 = r0 + len(order)
        shown = np.arange(width)[None, :] < n_kept[:, None]
        indices[r0:r1, :width] = np.where(shown, order[:, :width], -1)
        top_matches[r0:r1, :width] = matches[:, :width]
        ap[r0:r1] = _ap(matches)
    return indices, top_matches, ap


def rank_gallery(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                 g_camids: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top-k gallery items under the ReID protocol.

    Args:
      distmat: (Q, G) finite distances, smaller = more similar.
      q_pids, q_camids: (Q,) labels of the queries; g_pids, g_camids: (G,) of the gallery.
      k: list length (>= 1).

    Returns:
      ``indices`` (Q, k) int64: gallery indices by ascending distance (ties by
      index), same-pid-same-camera items excluded; -1 where fewer than k items
      are kept. ``matches`` (Q, k) bool: the item has the query's pid (False for -1).
    """
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
