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
non-zeros per row) and the joint matrix is only ever materialised in row blocks.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse

_BLOCK_ELEMENTS = 1 << 23  # joint-matrix elements per row block


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
    row_max = block.max(axis=1, keepdims=True)
    return block / np.where(row_max > 0, row_max, np.float32(1.0))


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
    if not isinstance(k1, (int, np.integer)) or not 1 <= k1 < n:
        raise ValueError(f"k1 must be an integer in [1, {n - 1}] (num_query + num_gallery - 1), got {k1!r}")
    if not isinstance(k2, (int, np.integer)) or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2 must be an integer in [1, k1 + 1 = {k1 + 1}], got {k2!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")

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
            r_p = topk[p][recip[p]]
            cand = topk[r_p, :k_half]  # each c's half-size neighbourhood, masked to its reciprocal part
            cand_mask = recip_half[r_p]
            overlap = (np.isin(cand, r_p) & cand_mask).sum(axis=1)
            accept = overlap > (2.0 / 3.0) * cand_mask.sum(axis=1)
            expanded = np.unique(np.concatenate([r_p, cand[accept][cand_mask[accept]]]))
            weight = np.exp(-block[p - s, expanded].astype(np.float64))
            indices.append(expanded)
            data.append(weight / weight.sum())
            indptr.append(indptr[-1] + len(expanded))
    v = sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(n, n))
    if k2 > 1:
        rows = np.repeat(np.arange(n), k2)
        mean_op = sparse.csr_matrix((np.full(n * k2, 1.0 / k2), (rows, topk[:, :k2].ravel())), shape=(n, n))
        v = (mean_op @ v).tocsr()

    # Jaccard, query rows vs gallery rows: sum_j min(V_q, V_g) via the gallery's columns that
    # are non-zero in V_q.  Rows of V sum to 1, so sum max = 2 - sum min.
    v_gallery = v[n_q:].tocsc()
    jaccard = np.empty((n_q, n_g), dtype=np.float64)
    for i in range(n_q):
        row = v.getrow(i)
        sub = v_gallery[:, row.indices]
        sub.data = np.minimum(sub.data, np.repeat(row.data, np.diff(sub.indptr)))
        inter = np.asarray(sub.sum(axis=1)).ravel()
        jaccard[i] = 1.0 - inter / (2.0 - inter)

    q_row_max = np.maximum(q_q.max(axis=1), q_g.max(axis=1)).astype(np.float32)[:, None]
    original = q_g.astype(np.float32) / np.where(q_row_max > 0, q_row_max, np.float32(1.0))
    return (jaccard * (1.0 - lambda_value) + original * lambda_value).astype(np.float32)
