"""Feature distances computed in fixed-shape tiles, so that an entry has the same
bits however it is reached: in a full query x gallery matrix, in a block of its
rows, or as one of a scattered set of pairs.

Why tiles: a BLAS matrix product does not round an entry the same way in every
shape.  OpenBLAS handles the edge micro-tiles of a product (and the blocks it
splits a large operand into) with other code, so ``(A @ B.T)[i, j]`` can differ
in the last bit from ``(A[rows] @ B[cols].T)`` at the same entry (measured here:
a few % of the entries of any sub-block).  Re-ranking from features
(:func:`~stra_jax.evaluation.rerank.re_ranking_features`) needs the entries of
``compute_distance``'s matrices exactly, from row blocks and from pairs, so every
product here has one shape: ``(TILE, d) @ (d, TILE)``, zero-padded, with item i
of the left operand in row ``i % TILE`` and item j of the right one in column
``j % TILE``.  An entry of such a product depends only on its two feature rows,
their slots and the shape (never on the other rows of the tile), which is what
lets :func:`distance_pairs` pack unrelated pairs into tiles and still reproduce
:func:`distance_rows` bit for bit.  The same-shape products run at the BLAS's
full speed (~200 GFLOP/s on the project's 2 cores at d 512-2048).

This rests on the BLAS rounding an entry the same way for the same shape, slot and
operand rows, whatever else the tile holds: true of OpenBLAS (what NumPy's wheels
ship; ``tests/test_rerank_features.py`` checks it end to end).  A BLAS that picks
code paths by memory alignment (MKL without its reproducibility mode) may not.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Metric = Literal["euclidean", "sqeuclidean", "cosine"]
METRICS = ("euclidean", "sqeuclidean", "cosine")
TILE = 256  # rows and columns of every product: a multiple of every OpenBLAS micro-tile
_PACK_BYTES = 1 << 26  # packed right-hand tiles per product call in distance_pairs (64 MB)


class Prepared(NamedTuple):
    """Features ready for the products: C-contiguous in the working dtype, L2-normalised
    when asked (and always for cosine), with their squared norms (None for cosine)."""
    x: np.ndarray          # (n, d)
    sq: np.ndarray | None  # (n,)


def check_features(name: str, x: ArrayLike) -> np.ndarray:
    """``x`` as a 2-D real, finite array (num_items, feature_dim), else one ValueError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items, feature_dim), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} has dtype {arr.dtype}, expected real-valued features")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} (shape {arr.shape}) contains non-finite values")
    return arr


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def working_dtype(*arrays: np.ndarray) -> type:
    """float64 if any input is float64, else float32 (integers included)."""
    return np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norm, np.finfo(x.dtype).tiny)  # zero vectors stay zero (cosine distance 1)


def prepare(x: np.ndarray, dtype: type, metric: Metric, normalize: bool) -> Prepared:
    """Cast, normalise (``normalize`` or cosine) and take the squared norms once for
    the whole array, so every block and pair uses the very same numbers."""
    x = np.ascontiguousarray(x, dtype=dtype)
    if normalize or metric == "cosine":
        x = l2_normalize(x)
    return Prepared(x, None if metric == "cosine" else np.einsum("ij,ij->i", x, x))


def _tile(x: np.ndarray, t: int) -> np.ndarray:
    """A copy of rows t*TILE .. t*TILE + TILE of x, zero-padded past the end: (TILE, d).

    Always a copy: NumPy computes ``a @ a.T`` (the same memory on both sides) with
    BLAS syrk, which rounds differently from gemm, so a left tile must never be a view
    of the right operand (d(q, q)'s diagonal tiles would otherwise differ)."""
    rows = x[t * TILE:(t + 1) * TILE]
    out = np.zeros((TILE, x.shape[1]), x.dtype)
    out[:len(rows)] = rows
    return out


def _right_tiles(x: np.ndarray) -> list[np.ndarray]:
    """x as right-hand operands: (count, d, TILE) stacks of transposed tiles, the full
    tiles as a view and the zero-padded last one on its own."""
    full = len(x) // TILE
    stacks = [x[:full * TILE].reshape(full, TILE, x.shape[1]).transpose(0, 2, 1)] if full else []
    if len(x) % TILE:
        stacks.append(_tile(x, full).T[None])
    return stacks


def _transform(blk: np.ndarray, a_sq: np.ndarray | None, b_sq: np.ndarray | None, metric: Metric) -> None:
    """Inner products -> distances, in place: the same element-wise operations in the
    same order for a block (broadcast norms) and for pairs (gathered norms)."""
    if metric == "cosine":
        np.subtract(1.0, blk, out=blk)
        np.clip(blk, 0.0, 2.0, out=blk)  # rounding leaves ~-1e-7 for identical directions
        return
    blk *= -2.0
    blk += a_sq
    blk += b_sq
    np.maximum(blk, 0.0, out=blk)  # rounding can push ~0 distances below 0
    if metric == "euclidean":
        np.sqrt(blk, out=blk)


def distance_rows(a: Prepared, b: Prepared, r0: int, r1: int, metric: Metric,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Rows r0:r1 of the distance matrix d(a, b): (r1 - r0, len(b.x)) float32.

    ``r0`` must be a multiple of TILE.  ``out`` (float32, that shape, any row stride)
    receives the rows when given.
    """
    if r0 % TILE:
        raise ValueError(f"r0 must be a multiple of {TILE}, got {r0}")
    n_b = len(b.x)
    if out is None:
        out = np.empty((r1 - r0, n_b), np.float32)
    stacks = _right_tiles(b.x)
    for t0 in range(r0, r1, TILE):
        t1 = min(r1, t0 + TILE)
        left = _tile(a.x, t0 // TILE)
        # float32 products land in ``out`` directly; float64 ones in a temporary first
        blk = out[t0 - r0:t1 - r0] if a.x.dtype == np.float32 else np.empty((t1 - t0, n_b), a.x.dtype)
        c0 = 0
        for s in stacks:
            gram = np.matmul(left, s)  # (tiles, TILE, TILE)
            width = min(n_b - c0, gram.shape[0] * TILE)
            blk[:, c0:c0 + width] = gram.transpose(1, 0, 2).reshape(TILE, -1)[:t1 - t0, :width]
            c0 += width
        _transform(blk, None if a.sq is None else a.sq[t0:t1, None], None if b.sq is None else b.sq[None, :],
                   metric)
        if blk.dtype != np.float32:
            out[t0 - r0:t1 - r0] = blk
    return out


def distance_pairs(a: Prepared, b: Prepared, ia: np.ndarray, ib: np.ndarray, metric: Metric) -> np.ndarray:
    """d(a[ia[k]], b[ib[k]]) for each k, bit-identical to the same entries of
    :func:`distance_rows`: (len(ia),) float32.

    Pairs are grouped by the left tile ``ia // TILE``; each group's distinct right
    items are packed into zero tiles at their own slots ``ib % TILE`` (the i-th item
    of a slot into the i-th tile), so a group costs (its items per slot) products,
    not one per right tile.
    """
    ia, ib = np.asarray(ia, np.intp), np.asarray(ib, np.intp)
    dots = np.empty(len(ia), a.x.dtype)
    order = np.argsort(ia // TILE, kind="stable")
    tiles = ia[order] // TILE
    starts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1]]) if len(ia) else np.empty(0, np.intp)
    d = b.x.shape[1]
    per_call = max(1, _PACK_BYTES // (TILE * d * b.x.itemsize))
    for g0, g1 in zip(starts, np.r_[starts[1:], len(ia)]):
        idx = order[g0:g1]
        left = _tile(a.x, tiles[g0])
        items, inverse = np.unique(ib[idx], return_inverse=True)
        slot = items % TILE
        by_slot = np.argsort(slot, kind="stable")
        counts = np.bincount(slot, minlength=TILE)
        rank = np.empty(len(items), np.intp)
        rank[by_slot] = np.arange(len(items)) - np.repeat(np.cumsum(counts) - counts, counts)
        rank_of, slot_of, row_of = rank[inverse], slot[inverse], ia[idx] % TILE
        for p0 in range(0, int(counts.max()), per_call):
            chosen = (rank >= p0) & (rank < p0 + per_call)
            packed = np.zeros((min(per_call, int(counts.max()) - p0), TILE, d), b.x.dtype)
            packed[rank[chosen] - p0, slot[chosen]] = b.x[items[chosen]]
            gram = np.matmul(left, packed.transpose(0, 2, 1))  # (tiles, TILE, TILE)
            hit = (rank_of >= p0) & (rank_of < p0 + per_call)
            dots[idx[hit]] = gram[rank_of[hit] - p0, row_of[hit], slot_of[hit]]
    _transform(dots, None if a.sq is None else a.sq[ia], None if b.sq is None else b.sq[ib], metric)
    return dots.astype(np.float32, copy=False)
