"""Person re-ID metrics: CMC, mAP and mINP under the Market-1501 protocol.

Protocol (torchreid's pure-Python ``eval_market1501``): per query the gallery is
ranked by ascending distance, ties broken by gallery index (a stable argsort;
torchreid's default argsort leaves tie order unspecified); gallery items with the
query's pid *and* camera are removed; the remaining items with the query's pid
are its positives, and queries without one are skipped.  With 1-based ranks
among the kept items, ``AP = mean_k (k / rank_k)`` over the positives,
``INP = n_pos / rank_last`` and ``CMC[r] = [rank_first <= r + 1]``, averaged
over the valid queries.  The CMC always has ``max_rank`` entries: past the
number of kept items every valid query has hit, so the entries are 1
(torchreid truncates to the gallery size instead; the common prefix is equal).

No argsort of the gallery: all of the above depends only on the positives'
ranks, so per chunk of queries the distance *values* are sorted in place (a SIMD
sort, ~15x faster than a stable argsort) and every positive's rank is found by a
vectorised binary search.  Only rows where a positive ties in value with a kept
non-positive need the index order; those (rare for real-valued distances) are
ranked exactly with a packed (value bits, index) key sort, or a stable argsort
for float64.

Memory: chunks of ``2**23 // n_gallery`` queries (at least 1).  Temporaries are
the chunk's private copy (4 bytes/element for float32 input, 8 for float64)
plus small per-positive arrays, and for tie rows an exact pass of ~26
bytes/element over at most a quarter chunk: 40-70 MB whatever the problem size
(MSMT17: 102 queries per chunk; tracemalloc peak measured at ~42 MB).

Ranked lists (:func:`rank_gallery_with_ap`, torchreid's ``visrank``) need the
order itself: the same junk removal and per-query AP, with the exact stable
ordering of every row.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from stra_jax.evaluation.distances import Metric, retrieval_distances

_CHUNK_ELEMENTS = 1 << 23  # elements of distmat handled per chunk (see module docstring)


@dataclasses.dataclass(frozen=True, eq=False)
class ReIDResult:
    """Summary of one evaluation.  ``cmc`` has shape (max_rank,); ``cmc[r - 1]`` is rank-r accuracy.

    mAP, mINP and the CMC values are fractions in [0, 1]; scale for percentages.
    """

    mAP: float
    mINP: float
    cmc: np.ndarray
    num_valid_queries: int
    num_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy (1-based k); ValueError if k exceeds the evaluated max_rank."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k={k} is outside the evaluated CMC range 1..{len(self.cmc)} (max_rank)")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        return self.rank(5)

    @property
    def rank10(self) -> float:
        return self.rank(10)

    @property
    def rank20(self) -> float:
        return self.rank(20)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain floats / ints / lists); rank-k keys only for k <= max_rank."""
        out: dict[str, Any] = {"mAP": float(self.mAP), "mINP": float(self.mINP)}
        out.update({f"rank{k}": self.rank(k) for k in (1, 5, 10, 20) if k <= len(self.cmc)})
        out.update(cmc=[float(c) for c in self.cmc], num_valid_queries=int(self.num_valid_queries),
                   num_queries=int(self.num_queries))
        return out


# ----------------------------------------------------------------------------- validation

def _labels(name: str, values: ArrayLike, expected: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != expected:
        raise ValueError(f"{name} has shape {arr.shape}, expected ({expected},) to match {what}")
    return arr


def _check_inputs(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                  g_camids: ArrayLike) -> tuple[np.ndarray, ...]:
    """``(dist (Q, G), q_pids (Q,), g_pids (G,), q_camids (Q,), g_camids (G,))`` as arrays, checked."""
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {dist.shape}")
    if dist.shape[0] == 0 or dist.shape[1] == 0:
        raise ValueError(f"distmat has shape {dist.shape}: expected at least one query and one gallery item")
    if not (np.issubdtype(dist.dtype, np.floating) or np.issubdtype(dist.dtype, np.integer)):
        raise ValueError(f"distmat has dtype {dist.dtype}, expected real (floating or integer) distances")
    n_q, n_g = dist.shape
    what = "distmat.shape[{}] (distmat has shape %s)" % (dist.shape,)
    q_pids, q_camids = (_labels(k, v, n_q, what.format(0)) for k, v in (("q_pids", q_pids), ("q_camids", q_camids)))
    g_pids, g_camids = (_labels(k, v, n_g, what.format(1)) for k, v in (("g_pids", g_pids), ("g_camids", g_camids)))
    return dist, q_pids, g_pids, q_camids, g_camids


def _private_copy(block: np.ndarray, work: np.dtype, row0: int) -> np.ndarray:
    """A copy of the rows ``block`` (starting at query ``row0``) in ``work``
    precision, to overwrite and sort; non-finite distances are refused (junk is
    sorted last as +inf, so an inf distance would be confused with it)."""
    buf = np.array(block, dtype=work)
    if not np.isfinite(buf).all():
        r, c = np.argwhere(~np.isfinite(buf))[0]
        raise ValueError(f"distmat contains non-finite values (first at [{row0 + r}, {c}] = {buf[r, c]}); "
                         "expected finite distances")
    return buf


# ----------------------------------------------------------------------------- ranking core

def _same_pid_pairs(q_pids: np.ndarray, g_index: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of every same-pid pair via the pid-sorted gallery, without a (B, G) comparison."""
    order, sorted_pids = g_index
    lo = np.searchsorted(sorted_pids, q_pids, side="left")
    counts = np.searchsorted(sorted_pids, q_pids, side="right") - lo
    rows = np.repeat(np.arange(len(q_pids)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, order[np.repeat(lo, counts) + offsets]


def _count_sorted(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray, inclusive: bool) -> np.ndarray:
    """Per value, how many entries of its ascending row ``sorted_rows[rows[i]]`` are < (or <=) it.

    Branch-free binary search over all values at once: ~log2(G) vectorised steps
    (NumPy's searchsorted is 1-D only and the rows cannot share one sorted key).
    """
    n_cols = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    base = rows.astype(np.int64) * n_cols - 1
    count = np.zeros(len(rows), dtype=np.int64)
    compare = np.less_equal if inclusive else np.less
    step = 1 << (n_cols.bit_length() - 1)
    while step:  # invariant: the first `count` entries of the row are below the value
        cand = count + step
        ok = cand <= n_cols
        ok &= compare(flat[base + np.minimum(cand, n_cols)], values)
        count[ok] = cand[ok]
        step >>= 1
    return count


def _stable_order(block: np.ndarray) -> np.ndarray:
    """Row-wise argsort with ties broken by column index (== np.argsort(kind="stable"))."""
    n_cols = block.shape[1]
    if block.dtype != np.float32 or n_cols > 1 << 31:
        return np.argsort(block, axis=1, kind="stable")
    # Pack (order-preserving float bits, column) into one int64 key: the default
    # (SIMD) sort of the keys is ~8x faster than a stable argsort of the values.
    bits = np.add(block, np.float32(0.0)).view(np.int32)  # + 0.0 maps -0.0 to +0.0: they must tie
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: reverse magnitude order
    shift = max(1, (n_cols - 1).bit_length())
    keys = (bits.astype(np.int64) + (1 << 31)) << shift
    keys |= np.arange(n_cols, dtype=np.int64)
    keys.sort(axis=1)
    keys &= (1 << shift) - 1
    return keys


def _stable_ranking(sub: np.ndarray, rows: np.ndarray, cols: np.ndarray, junk: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The exact ranking of the rows of ``sub`` (B, G) (a private copy; modified):
    ``(order (B, G), hit (B, G))``, order = ascending distance, ties by index,
    junk last; hit = the item at that place is a positive. ``(rows, cols)``:
    the same-pid pairs, ``junk``: which of them share the query's camera."""
    sub[rows[junk], cols[junk]] = np.inf  # junk sorts after every kept (finite) item
    pos = np.zeros(sub.shape, dtype=bool)
    pos[rows[~junk], cols[~junk]] = True
    order = _stable_order(sub)
    return order, np.take_along_axis(pos, order, axis=1)


def _exact_ranks(sub: np.ndarray, rows: np.ndarray, cols: np.ndarray, junk: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of positives via a full stable ordering of the rows of ``sub`` (private copy; modified)."""
    out_rows, idx = np.nonzero(_stable_ranking(sub, rows, cols, junk)[1])  # row-major: ranks ascending per row
    return out_rows, idx + 1


def _query_scores(rows: np.ndarray, ranks: np.ndarray, n_rows: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query of a chunk, from every positive's (row, 1-based rank), sorted
    by (row, rank): ``(valid (B,), AP (B,), INP (B,), first-hit rank (B,))``;
    AP and INP are NaN and the rank 0 for a query without a positive."""
    n_pos = np.bincount(rows, minlength=n_rows)
    valid = n_pos > 0
    start = np.cumsum(n_pos) - n_pos
    k = np.arange(len(rows)) - start[rows] + 1  # 1-based index of the positive within its query
    ap_sum = np.bincount(rows, weights=k / ranks, minlength=n_rows)
    ap, inp, first = np.full(n_rows, np.nan), np.full(n_rows, np.nan), np.zeros(n_rows, np.int64)
    ap[valid] = ap_sum[valid] / n_pos[valid]
    inp[valid] = n_pos[valid] / ranks[(start + n_pos - 1)[valid]]
    first[valid] = ranks[start[valid]]
    return valid, ap, inp, first


def _chunk_ranks(block: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray,
                 g_index: tuple[np.ndarray, np.ndarray], work: np.dtype, row0: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For the chunk ``block`` (B, G): (row, 1-based rank among kept items) of every positive, sorted by (row, rank)."""
    n_rows, n_cols = block.shape
    buf = _private_copy(block, work, row0)  # junk is overwritten, then sorted in place
    rows, cols = _same_pid_pairs(q_pids, g_index)
    junk = g_camids[cols] == q_camids[rows]
    buf[rows[junk], cols[junk]] = np.inf  # sorts after every kept item, so it never counts in a rank
    p_rows, p_cols = rows[~junk], cols[~junk]
    vals = buf[p_rows, p_cols]
    order = np.lexsort((vals, p_rows))
    p_rows, vals = p_rows[order], vals[order]
    buf.sort(axis=1)
    below = _count_sorted(buf, p_rows, vals, inclusive=False)
    ties = _count_sorted(buf, p_rows, vals, inclusive=True) - below  # kept items equal in value (incl. itself)
    del buf
    # Positives sharing a value occupy the ranks below+1 .. below+m in some order; the
    # multiset of ranks (all AP/INP/CMC need) is index-independent unless a kept
    # non-positive sits in the same tie group -- then the index order matters.
    new = np.ones(len(p_rows), dtype=bool)
    new[1:] = (p_rows[1:] != p_rows[:-1]) | (vals[1:] != vals[:-1])
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(p_rows)))
    ranks = below + (np.arange(len(p_rows)) - starts[gid]) + 1
    mixed = np.unique(p_rows[ties > sizes[gid]])
    if mixed.size == 0:
        return p_rows, ranks
    keep = ~np.isin(p_rows, mixed)
    out_rows, out_ranks = [p_rows[keep]], [ranks[keep]]
    sub_rows = max(1, _CHUNK_ELEMENTS // (4 * n_cols))  # the exact pass needs ~26 bytes/element
    for s in range(0, len(mixed), sub_rows):
        sel = mixed[s:s + sub_rows]
        local = np.full(n_rows, -1)
        local[sel] = np.arange(len(sel))
        in_sel = local[rows] >= 0
        sub = np.asarray(block[sel], dtype=work)  # fancy indexing already copied
        r, k = _exact_ranks(sub, local[rows[in_sel]], cols[in_sel], junk[in_sel])
        out_rows.append(sel[r])
        out_ranks.append(k)
    p_rows, ranks = np.concatenate(out_rows), np.concatenate(out_ranks)
    order = np.argsort(p_rows * (n_cols + 1) + ranks)
    return p_rows[order], ranks[order]


def _evaluate_rank(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                   g_camids: ArrayLike, max_rank: int, chunk_size: int | None,
                   ) -> tuple[np.ndarray, float, float, int]:
    dist, q_pids, g_pids, q_camids, g_camids = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    n_q, n_g = dist.shape
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    work = np.result_type(dist.dtype, np.float32)  # float16 -> float32 exactly; float64 stays float64
    chunk = int(chunk_size) if chunk_size else max(1, _CHUNK_ELEMENTS // n_g)
    g_order = np.argsort(g_pids, kind="stable")
    g_index = (g_order, g_pids[g_order])
    aps, inps, firsts = [], [], []
    for r0 in range(0, n_q, chunk):
        r1 = min(n_q, r0 + chunk)
        rows, ranks = _chunk_ranks(dist[r0:r1], q_pids[r0:r1], q_camids[r0:r1], g_camids, g_index, work, r0)
        valid, ap, inp, first = _query_scores(rows, ranks, r1 - r0)
        aps.append(ap[valid])
        inps.append(inp[valid])
        firsts.append(first[valid])
    first = np.concatenate(firsts)
    if first.size == 0:
        raise ValueError("evaluate_rank: no query has a valid match in the gallery (every query's pid is absent "
                         "from the gallery or only appears under the query's own camera); cannot compute CMC/mAP")
    # CMC = cumulative histogram of first-hit ranks; length max_rank (see module docstring).
    hist = np.bincount(np.minimum(first, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / first.size
    return cmc, float(np.mean(np.concatenate(aps))), float(np.mean(np.concatenate(inps))), int(first.size)


def evaluate_rank(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                  g_camids: ArrayLike, max_rank: int = 50, return_minp: bool = False, *,
                  chunk_size: int | None = None) -> tuple[np.ndarray, float] | tuple[np.ndarray, float, float]:
    """CMC and mAP (and mINP) of a query x gallery distance matrix, Market-1501 protocol.

    Args:
      distmat: (num_query, num_gallery) finite distances, smaller = more similar.
      q_pids, q_camids: (num_query,) identity / camera labels of the queries.
      g_pids, g_camids: (num_gallery,) labels of the gallery.
      max_rank: length of the returned CMC (entries past the gallery size are 1).
      return_minp: also return mINP.
      chunk_size: queries per chunk; default keeps a chunk near 2**23 distmat elements.

    Returns:
      ``(cmc, mAP)`` or ``(cmc, mAP, mINP)``: cmc float64 (max_rank,), fractions in [0, 1].

    Raises:
      ValueError: on malformed input, or if no query has a valid match in the gallery.
    """
    cmc, m_ap, m_inp, _ = _evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size)
    return (cmc, m_ap, m_inp) if return_minp else (cmc, m_ap)


def rank_gallery_with_ap(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                         g_camids: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's top-``k`` gallery items and its AP, under the protocol above.

    Args:
      distmat: (Q, G) finite distances, smaller = more similar.
      q_pids, q_camids: (Q,) labels of the queries; g_pids, g_camids: (G,) of the gallery.
      k: list length (>= 1).

    Returns:
      ``indices`` (Q, k) int64: gallery indices by ascending distance (ties by
      index), same-pid-same-camera items excluded, -1 where fewer than k items
      are kept; ``matches`` (Q, k) bool: the item has the query's pid (False
      for -1); ``ap`` (Q,) float64: the query's AP, NaN without a match (the
      mean of the others is :func:`evaluate_rank`'s mAP).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    dist, q_pids, g_pids, q_camids, g_camids = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    n_q, n_g = dist.shape
    work = np.result_type(dist.dtype, np.float32)
    g_order = np.argsort(g_pids, kind="stable")
    g_index = (g_order, g_pids[g_order])
    width = min(k, n_g)
    indices = np.full((n_q, k), -1, dtype=np.int64)
    matches = np.zeros((n_q, k), dtype=bool)
    ap = np.empty(n_q, dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (4 * n_g))  # the exact ranking needs ~26 bytes/element
    for r0 in range(0, n_q, chunk):
        r1 = min(n_q, r0 + chunk)
        rows, cols = _same_pid_pairs(q_pids[r0:r1], g_index)
        junk = g_camids[cols] == q_camids[r0:r1][rows]
        order, hit = _stable_ranking(_private_copy(dist[r0:r1], work, r0), rows, cols, junk)
        n_kept = n_g - np.bincount(rows[junk], minlength=r1 - r0)
        shown = np.arange(width)[None, :] < n_kept[:, None]
        indices[r0:r1, :width] = np.where(shown, order[:, :width], -1)
        matches[r0:r1, :width] = hit[:, :width]  # junk is never a hit
        hit_rows, places = np.nonzero(hit)
        ap[r0:r1] = _query_scores(hit_rows, places + 1, r1 - r0)[1]
    return indices, matches, ap


def evaluate(qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
             g_camids: ArrayLike, metric: Metric = "euclidean", normalize: bool = False, rerank: bool = False,
             max_rank: int = 50, aqe: tuple[int, float] | None = None) -> ReIDResult:
    """Features -> (optionally query-expanded) distances (optionally k-reciprocal
    re-ranked, k1=20, k2=6, lambda=0.3) -> ReIDResult.

    qf: (num_query, dim), gf: (num_gallery, dim); label arrays as in :func:`evaluate_rank`.
    ``aqe = (k, alpha)``: average query expansion of query and gallery first
    (:func:`~stra_jax.evaluation.query_expansion.average_query_expansion`).
    With ``rerank`` the q-q and g-g distances use the same metric and are used as they
    are (no squaring): :func:`~stra_jax.evaluation.rerank.re_ranking` on the three
    matrices when they fit in memory, else :func:`~stra_jax.evaluation.rerank.re_ranking_features`
    (MSMT17 size), with the same result
    (:func:`~stra_jax.evaluation.distances.retrieval_distances`).
    """
    distmat = retrieval_distances(qf, gf, metric=metric, normalize=normalize, rerank=rerank, aqe=aqe)
    cmc, m_ap, m_inp, n_valid = _evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, None)
    return ReIDResult(mAP=m_ap, mINP=m_inp, cmc=cmc, num_valid_queries=n_valid, num_queries=distmat.shape[0])
