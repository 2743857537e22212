"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), written from the paper's description.

All N = num_query + num_gallery items are treated as one set with the joint
distance matrix ``[[q_q, q_g], [q_g^T, g_g]]``; each row is divided by its
maximum (the usual implementation divides columns and transposes, which is the
same for symmetric q_q / g_g).  Then, per item p:

1. ``N(p, k)``: its k nearest items (itself included; ties by index, i.e. a stable
   sort).  The k-reciprocal set ``R(p, k1) = {g in N(p, k1) : p in N(g, k1)}``.
2. Expansion: for each ``c in R(p, k1)`` add ``R(c, round(k1 / 2))`` when at least
   2/3 of it already lies in ``R(p, k1)`` (strictly more than 2/3, as usual).
3. ``V_p``: weights ``exp(-d(p, g))`` on the expanded set, normalised to sum to 1.
4. Local query expansion: ``V_p <- mean of V_g over g in N(p, k2)``.
5. Jaccard distance ``1 - sum_j min(V_p, V_g) / sum_j max(V_p, V_g)``.

The result is ``jaccard * (1 - lambda) + d_normalised * lambda`` for the query x
gallery block.  The distances are used as given: the widely copied reference code
squares its input first, so passing ``sqeuclidean`` distances here matches that
code fed with ``euclidean`` ones.  ``V`` is kept sparse (at most a few dozen
non-zeros per row before step 4) and the Jaccard block is written into the
float32 result a few query rows at a time.

Two entry points share steps 1-5 (``_stable_topk``, ``_reciprocal_mask``,
``_expanded_set``, ``_weights``, ``_sparse_v``, ``_local_expansion``, ``_finish``):

* :func:`re_ranking` takes the three distance matrices and reads the joint matrix
  in row blocks (two passes: neighbours, then the weights of step 3).
* :func:`re_ranking_features` takes the features and never holds the joint matrix
  (27 GB for MSMT17's g_g alone).  One pass over row blocks of the joint matrix,
  computed from the features, keeps each row's k1 + 1 nearest items and its
  maximum; the query x gallery block is written straight into the result (3.8 GB
  at MSMT17) on the way, as the gallery rows' query part and the original-distance
  term read it from there.  Step 3's weights are computed for just the
  (item, expanded item) pairs (:func:`~stra_jax.evaluation.distance_tiles.distance_pairs`),
  and step 5 overwrites the result one query block at a time.  Memory: the result
  + the features + O(block x N) + V.  Every distance goes through the tiled
  products of :mod:`~stra_jax.evaluation.distance_tiles`, so a row block, a pair
  and ``compute_distance``'s matrix give the same bits, and the result equals
  ``re_ranking(compute_distance(q, g), compute_distance(q, q), compute_distance(g, g))``
  exactly.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse

from stra_jax.evaluation.distance_tiles import (TILE, Metric, Prepared, check_features, check_metric,
                                               distance_pairs, distance_rows, prepare, working_dtype)

_BLOCK_ELEMENTS = 1 << 23  # joint-matrix elements per row block (matrix version)
_FEATURE_BLOCK_ELEMENTS = 1 << 21  # joint elements per row block from features (>= one tile of rows)
_JACCARD_ELEMENTS = 1 << 20  # float64 query x gallery Jaccard elements held at once
_EXPANSION_ITEMS = 8 * TILE  # items whose step-3 pairs are computed together


# ----------------------------------------------------------------------------- shared steps

def _check_params(k1: int, k2: int, lambda_value: float, n: int) -> None:
    if isinstance(k1, bool) or not isinstance(k1, (int, np.integer)) or not 1 <= k1 < n:
        raise ValueError(f"k1 must be an integer in [1, {n - 1}] (num_query + num_gallery - 1), got {k1!r}")
    if isinstance(k2, bool) or not isinstance(k2, (int, np.integer)) or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2 must be an integer in [1, k1 + 1 = {k1 + 1}], got {k2!r}")
    if (isinstance(lambda_value, bool) or not isinstance(lambda_value, (int, float, np.integer, np.floating))
            or not 0.0 <= lambda_value <= 1.0):
        raise ValueError(f"lambda_value must be a number in [0, 1], got {lambda_value!r}")


def _normalize_rows(block: np.ndarray) -> np.ndarray:
    """Divide each row of a joint-row block by its maximum, in place; returns the (B,) maxima."""
    row_max = block.max(axis=1, keepdims=True)
    block /= np.where(row_max > 0, row_max, np.float32(1.0))
    return row_max[:, 0]


def _stable_topk(block: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries per row, in stable-argsort order. (B, N) -> (B, k)."""
    threshold = np.partition(block, k - 1, axis=1)[:, k - 1:k]
    rows, cols = np.nonzero(block <= threshold)  # >= k per row; more only with ties at the threshold
    order = np.lexsort((block[rows, cols], rows))  # by (row, value), columns already ascending: stable
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=block.shape[0])
    within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    return cols[within < k].reshape(block.shape[0], k)


def _reciprocal_mask(topk: np.ndarray, k: int) -> np.ndarray:
    """mask[p, j] = p is among the k nearest of its j-th nearest item topk[p, j]; shape (N, k)."""
    n = topk.shape[0]
    out = np.empty((n, k), dtype=bool)
    step = max(1, _BLOCK_ELEMENTS // (k * k))
    for s in range(0, n, step):
        nbrs = topk[s:s + step, :k]
        out[s:s + step] = (topk[nbrs, :k] == np.arange(s, s + len(nbrs))[:, None, None]).any(axis=2)
    return out


def _expanded_set(p: int, topk: np.ndarray, recip: np.ndarray, recip_half: np.ndarray, k_half: int) -> np.ndarray:
    """Steps 1-2 for item p: R(p, k1) plus the accepted R(c, k1 / 2), sorted unique indices."""
    r_p = topk[p][recip[p]]
    cand = topk[r_p, :k_half]  # each c's half-size neighbourhood, masked to its reciprocal part
    cand_mask = recip_half[r_p]
    overlap = (np.isin(cand, r_p) & cand_mask).sum(axis=1)
    accept = overlap > (2.0 / 3.0) * cand_mask.sum(axis=1)
    return np.unique(np.concatenate([r_p, cand[accept][cand_mask[accept]]]))


def _weights(normalized: np.ndarray) -> np.ndarray:
    """Step 3: exp(-d) of the (float32, row-normalised) distances to the expanded set, summing to 1."""
    weight = np.exp(-normalized.astype(np.float64))
    return weight / weight.sum()


def _sparse_v(indices: list[np.ndarray], data: list[np.ndarray], indptr: list[int], n: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(n, n))


def _local_expansion(v: sparse.csr_matrix, topk: np.ndarray, k2: int) -> sparse.csr_matrix:
    """Step 4: each row of V replaced by the mean of its k2 nearest items' rows."""
    if k2 == 1:
        return v
    n = v.shape[0]
    rows = np.repeat(np.arange(n), k2)
    mean_op = sparse.csr_matrix((np.full(n * k2, 1.0 / k2), (rows, topk[:, :k2].ravel())), shape=(n, n))
    return (mean_op @ v).tocsr()


def _finish(out: np.ndarray, v: sparse.csr_matrix, original: Callable[[int, int], np.ndarray],
            lambda_value: float, progress: _Progress | None = None) -> np.ndarray:
    """Step 5 and the mix, written into ``out`` (n_q, n_g) float32 a query block at a time;
    ``original(r0, r1)`` gives the float32 row-normalised distances of queries r0:r1 (read
    before the block is overwritten, so it may read ``out`` itself)."""
    n_q, n_g = out.shape
    # sum_j min(V_q, V_g) via the gallery's columns that are non-zero in V_q; rows of V sum
    # to 1, so sum max = 2 - sum min.
    v_gallery = v[n_q:].tocsc()
    step = max(1, _JACCARD_ELEMENTS // n_g)
    for r0 in range(0, n_q, step):
        r1 = min(n_q, r0 + step)
        jaccard = np.empty((r1 - r0, n_g), dtype=np.float64)
        for i in range(r0, r1):
            row = v.getrow(i)
            sub = v_gallery[:, row.indices]
            sub.data = np.minimum(sub.data, np.repeat(row.data, np.diff(sub.indptr)))
            inter = np.asarray(sub.sum(axis=1)).ravel()
            jaccard[i - r0] = 1.0 - inter / (2.0 - inter)
        out[r0:r1] = (jaccard * (1.0 - lambda_value) + original(r0, r1) * lambda_value).astype(np.float32)
        if progress:
            progress.update(r1)
    return out


class _Progress:
    """One line on stderr, rewritten in place: stage, done / total, elapsed, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.start = enabled, time.perf_counter()
        self.stage, self.total, self.stage_start, self.shown = "", 1, self.start, 0.0

    def __bool__(self) -> bool:
        return self.enabled

    def begin(self, stage: str, total: int) -> None:
        self.stage, self.total, self.stage_start, self.shown = stage, max(1, total), time.perf_counter(), 0.0
        self.update(0)

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.shown < 0.5 and done < self.total):
            return
        self.shown, spent = now, now - self.stage_start
        eta = f"{spent * (self.total - done) / done:7.0f}s" if done else "      ?"
        sys.stderr.write(f"\rre-ranking: {self.stage:<10} {done:>7}/{self.total:<7} elapsed {now - self.start:7.0f}s"
                         f"  stage ETA {eta}" + ("\n" if done >= self.total else ""))
        sys.stderr.flush()


# ----------------------------------------------------------------------------- from distance matrices

def _matrix(name: str, x: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} (shape {arr.shape}) must contain finite, non-negative distances")
    return arr


def _joint_rows(r0: int, r1: int, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> np.ndarray:
    """Rows r0:r1 of [[q_q, q_g], [q_g^T, g_g]] as float32, shape (r1 - r0, N)."""
    n_q = q_q.shape[0]
    parts = []
    if r0 < n_q:
        e = min(r1, n_q)
        parts.append(np.concatenate([q_q[r0:e], q_g[r0:e]], axis=1))
    if r1 > n_q:
        s, e = max(r0, n_q) - n_q, r1 - n_q
        parts.append(np.concatenate([q_g[:, s:e].T, g_g[s:e]], axis=1))
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def _normalized_rows(r0: int, r1: int, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> np.ndarray:
    block = _joint_rows(r0, r1, q_g, q_q, g_g)
    _normalize_rows(block)
    return block


def re_ranking(q_g_dist: ArrayLike, q_q_dist: ArrayLike, g_g_dist: ArrayLike, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranked query x gallery distances.

    Args:
      q_g_dist: (num_query, num_gallery) distances; q_q_dist: (num_query, num_query);
        g_g_dist: (num_gallery, num_gallery); all finite and non-negative, q_q / g_g symmetric.
      k1: size of the k-reciprocal neighbourhood (1 <= k1 < num_query + num_gallery).
      k2: size of the local query expansion (1 <= k2 <= k1 + 1; 1 disables it).
      lambda_value: weight of the original distance, in [0, 1].

    Returns:
      (num_query, num_gallery) float32 re-ranked distances.
    """
    q_g = np.asarray(q_g_dist)
    if q_g.ndim != 2 or 0 in q_g.shape:
        raise ValueError(f"q_g_dist must be a non-empty 2-D (num_query, num_gallery) matrix, got shape {q_g.shape}")
    n_q, n_g = q_g.shape
    n = n_q + n_g
    q_g = _matrix("q_g_dist", q_g, (n_q, n_g))
    q_q = _matrix("q_q_dist", q_q_dist, (n_q, n_q))
    g_g = _matrix("g_g_dist", g_g_dist, (n_g, n_g))
    _check_params(k1, k2, lambda_value, n)

    block_rows = max(1, _BLOCK_ELEMENTS // n)
    k_full, k_half = k1 + 1, int(np.around(k1 / 2.0)) + 1  # neighbour counts include the item itself
    topk = np.concatenate([_stable_topk(_normalized_rows(s, min(n, s + block_rows), q_g, q_q, g_g), k_full)
                           for s in range(0, n, block_rows)])
    recip, recip_half = _reciprocal_mask(topk, k_full), _reciprocal_mask(topk, k_half)

    # Sparse V: one row of expansion weights per item (second pass over the joint rows).
    indptr, indices, data = [0], [], []
    for s in range(0, n, block_rows):
        block = _normalized_rows(s, min(n, s + block_rows), q_g, q_q, g_g)
        for p in range(s, min(n, s + block_rows)):
            expanded = _expanded_set(p, topk, recip, recip_half, k_half)
            indices.append(expanded)
            data.append(_weights(block[p - s, expanded]))
            indptr.append(indptr[-1] + len(expanded))
    v = _local_expansion(_sparse_v(indices, data, indptr, n), topk, k2)

    q_row_max = np.maximum(q_q.max(axis=1), q_g.max(axis=1)).astype(np.float32)[:, None]
    q_row_max = np.where(q_row_max > 0, q_row_max, np.float32(1.0))
    return _finish(np.empty((n_q, n_g), np.float32), v,
                   lambda r0, r1: q_g[r0:r1].astype(np.float32) / q_row_max[r0:r1], lambda_value)


# ----------------------------------------------------------------------------- from features

def _neighbour_pass(q: Prepared, g: Prepared, out: np.ndarray, k: int, rows: int, metric: Metric,
                    progress: _Progress) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the joint rows, ``rows`` at a time: each row's k nearest (stable) and
    its maximum; the query x gallery distances land in ``out`` on the way (query rows
    first, so the gallery rows read their query part from there)."""
    n_q, n_g = out.shape
    n = n_q + n_g
    topk, row_max = np.empty((n, k), np.intp), np.empty(n, np.float32)
    joint = np.empty((min(rows, max(n_q, n_g)), n), np.float32)
    progress.begin("neighbours", n)
    for r0 in range(0, n_q, rows):
        r1 = min(n_q, r0 + rows)
        blk = joint[:r1 - r0]
        distance_rows(q, q, r0, r1, metric, out=blk[:, :n_q])
        distance_rows(q, g, r0, r1, metric, out=out[r0:r1])
        blk[:, n_q:] = out[r0:r1]
        row_max[r0:r1] = _normalize_rows(blk)
        topk[r0:r1] = _stable_topk(blk, k)
        progress.update(r1)
    for s0 in range(0, n_g, rows):
        s1 = min(n_g, s0 + rows)
        blk = joint[:s1 - s0]
        blk[:, :n_q] = out[:, s0:s1].T
        distance_rows(g, g, s0, s1, metric, out=blk[:, n_q:])
        row_max[n_q + s0:n_q + s1] = _normalize_rows(blk)
        topk[n_q + s0:n_q + s1] = _stable_topk(blk, k)
        progress.update(n_q + s1)
    return topk, row_max


def _joint_pairs(q: Prepared, g: Prepared, out: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 metric: Metric) -> np.ndarray:
    """Joint-matrix entries (rows[k], cols[k]) as float32: q-q and g-g pairs from the features,
    q-g and g-q ones from the query x gallery block in ``out`` (d(q_j, g_s) is out[j, s])."""
    n_q = out.shape[0]
    vals = np.empty(len(rows), np.float32)
    row_q, col_q = rows < n_q, cols < n_q
    for sel, left, right, shift in ((row_q & col_q, q, q, 0), (~row_q & ~col_q, g, g, n_q)):
        vals[sel] = distance_pairs(left, right, rows[sel] - shift, cols[sel] - shift, metric)
    sel = row_q & ~col_q
    vals[sel] = out[rows[sel], cols[sel] - n_q]
    sel = ~row_q & col_q
    vals[sel] = out[cols[sel], rows[sel] - n_q]
    return vals


def re_ranking_features(query_feats: ArrayLike, gallery_feats: ArrayLike, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, *, metric: Metric = "euclidean", normalize: bool = False,
                        block_rows: int | None = None, progress: bool = False) -> np.ndarray:
    """k-reciprocal re-ranking straight from features, in bounded memory.

    Equal (bit for bit) to ``re_ranking(compute_distance(q, g, metric, normalize),
    compute_distance(q, q, ...), compute_distance(g, g, ...), k1, k2, lambda_value)``
    without ever holding the (num_query + num_gallery)^2 joint matrix: memory is the
    float32 result + the features + O(block_rows x (num_query + num_gallery)) + the
    sparse V (module docstring).  At MSMT17 size (11,659 x 82,161, 2048-d) that is
    under 8 GB, and the time is dominated by one (q + g)^2 x d product pass.

    Args:
      query_feats: (num_query, dim) features; gallery_feats: (num_gallery, dim); real and
        finite (promoted together to float64 if either is float64, else float32).
      k1, k2, lambda_value: as :func:`re_ranking`.
      metric, normalize: as :func:`~stra_jax.evaluation.distances.compute_distance`.
      block_rows: joint rows per block of the neighbour pass (rounded up to a multiple of
        256); default: about 2M joint elements per block, at least 256 rows.
      progress: print a progress line (stage, rows done / total, elapsed, ETA) to stderr.

    Returns:
      (num_query, num_gallery) float32 re-ranked distances.
    """
    q, g = check_features("query_feats", query_feats), check_features("gallery_feats", gallery_feats)
    if 0 in q.shape or 0 in g.shape:
        raise ValueError(f"query_feats and gallery_feats must be non-empty, got shapes {q.shape} and {g.shape}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dims differ: query_feats has shape {q.shape}, gallery_feats has shape "
                         f"{g.shape}; expected the same feature_dim")
    check_metric(metric)
    n_q, n_g = len(q), len(g)
    n = n_q + n_g
    _check_params(k1, k2, lambda_value, n)
    if block_rows is None:
        block_rows = max(TILE, _FEATURE_BLOCK_ELEMENTS // n // TILE * TILE)
    elif isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
        raise ValueError(f"block_rows must be None or a positive integer, got {block_rows!r}")
    rows = -(-int(block_rows) // TILE) * TILE
    bar = _Progress(progress)

    dtype = working_dtype(q, g)
    qp, gp = prepare(q, dtype, metric, normalize), prepare(g, dtype, metric, normalize)
    out = np.empty((n_q, n_g), np.float32)  # the query x gallery distances, then the result
    k_full, k_half = k1 + 1, int(np.around(k1 / 2.0)) + 1
    topk, row_max = _neighbour_pass(qp, gp, out, k_full, rows, metric, bar)
    recip, recip_half = _reciprocal_mask(topk, k_full), _reciprocal_mask(topk, k_half)
    safe_max = np.where(row_max > 0, row_max, np.float32(1.0))

    indptr, indices, data = [0], [], []
    bar.begin("expansion", n)
    for s in range(0, n, _EXPANSION_ITEMS):
        sets = [_expanded_set(p, topk, recip, recip_half, k_half) for p in range(s, min(n, s + _EXPANSION_ITEMS))]
        lengths = np.array([len(e) for e in sets])
        pair_rows = np.repeat(np.arange(s, s + len(sets)), lengths)
        vals = _joint_pairs(qp, gp, out, pair_rows, np.concatenate(sets), metric)
        vals /= safe_max[pair_rows]
        for expanded, normalized in zip(sets, np.split(vals, np.cumsum(lengths)[:-1])):
            indices.append(expanded)
            data.append(_weights(normalized))
            indptr.append(indptr[-1] + len(expanded))
        bar.update(s + len(sets))
    del qp, gp, recip, recip_half
    v = _local_expansion(_sparse_v(indices, data, indptr, n), topk, k2)
    del indices, data

    bar.begin("jaccard", n_q)
    return _finish(out, v, lambda r0, r1: out[r0:r1] / safe_max[r0:r1, None], lambda_value, bar)
