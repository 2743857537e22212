"""Tests for stra_jax.evaluation: Market-1501 CMC/mAP/mINP, distances, k-reciprocal re-ranking.

Every metric is checked against hand-worked cases and against a plain per-query
loop written here straight from the protocol (stable argsort, drop same pid +
same camera, skip queries without a match), independent of the vectorised code.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from stra_jax.evaluation import ReIDResult, compute_distance, evaluate, evaluate_rank, re_ranking


def loop_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """The protocol, one query at a time; CMC padded with 1 past the kept gallery items.

    Returns None when no query has a valid match."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = (g_pids[order][keep] == q_pids[i]).astype(np.int64)
        if not matches.any():
            continue
        cmc = np.minimum(np.cumsum(matches), 1)
        cmcs.append(np.concatenate([cmc, np.ones(max(0, max_rank - len(cmc)))])[:max_rank])
        hits = np.cumsum(matches)
        aps.append(np.sum(hits / np.arange(1, len(matches) + 1) * matches) / matches.sum())
        inps.append(matches.sum() / (np.flatnonzero(matches)[-1] + 1))
    if not aps:
        return None
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps))


def one_query(dists, pids, cams, q_pid=1, q_cam=0, **kw):
    d = np.asarray([dists], dtype=kw.pop("dtype", np.float32))
    return evaluate_rank(d, np.array([q_pid]), np.asarray(pids), np.array([q_cam]), np.asarray(cams),
                         return_minp=True, **kw)


# ----------------------------------------------------------------------------- hand-worked cases

def test_hand_two_positives():
    # Ranked: pid 1, 2, 1, 0, 3 -> positives at ranks 1 and 3.
    # AP = (1/1 + 2/3) / 2 = 5/6; INP = 2 positives / last at rank 3 = 2/3; CMC = 1 from rank 1.
    cmc, m_ap, m_inp = one_query([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 1, 0, 3], [1] * 5, max_rank=5)
    assert m_ap == pytest.approx(5 / 6)
    assert m_inp == pytest.approx(2 / 3)
    np.testing.assert_array_equal(cmc, [1, 1, 1, 1, 1])


def test_hand_junk_removed_and_distractor():
    # Gallery (already in distance order): pid1/cam0 (same pid + camera as the query -> removed),
    # pid0 distractor, pid1/cam1, pid2, pid1/cam2.  Kept ranks: distractor 1, positive 2, pid2 3,
    # positive 4.  AP = (1/2 + 2/4) / 2 = 1/2; INP = 2/4; CMC = [0, 1, 1, 1].
    # Keeping the junk item would give (1/1 + 2/3 + 3/5) / 3 instead.
    cmc, m_ap, m_inp = one_query([0.05, 0.1, 0.2, 0.3, 0.4], [1, 0, 1, 2, 1], [0, 1, 1, 1, 2], max_rank=4)
    assert m_ap == pytest.approx(0.5)
    assert m_inp == pytest.approx(0.5)
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1])


def test_hand_ties_follow_gallery_index():
    # All distances equal: order = gallery index.  pids 2,1,3,1 -> positives at ranks 2 and 4:
    # AP = (1/2 + 2/4) / 2 = 1/2, CMC[0] = 0.  Reversed pids 1,3,1,2 -> ranks 1, 3: AP = (1 + 2/3) / 2.
    cmc, m_ap, _ = one_query([0.5] * 4, [2, 1, 3, 1], [1] * 4, max_rank=2)
    assert m_ap == pytest.approx(0.5) and list(cmc) == [0, 1]
    _, m_ap, _ = one_query([0.5] * 4, [1, 3, 1, 2], [1] * 4)
    assert m_ap == pytest.approx(5 / 6)
    # Partial tie: stable order is idx1 (0.1, pid 2), idx2 (0.1, pid 1), idx3 (0.2), idx0 (0.3):
    # positives at ranks 2, 3, 4 -> AP = (1/2 + 2/3 + 3/4) / 3, INP = 3/4.
    _, m_ap, m_inp = one_query([0.3, 0.1, 0.1, 0.2], [1, 2, 1, 1], [1] * 4)
    assert m_ap == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3) and m_inp == pytest.approx(3 / 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_signed_zero_ties(dtype):
    # -0.0 == 0.0, so the tie goes by index: the distractor (index 0) comes first, AP = 1/2.
    _, m_ap, _ = one_query([0.0, -0.0], [2, 1], [1, 1], dtype=dtype)
    assert m_ap == pytest.approx(0.5)


def test_float64_order_is_not_rounded_to_float32():
    # Distinct in float64, equal in float32: the positive (index 0) is truly second -> AP = 1/2.
    _, m_ap, _ = one_query([1.0 + 1e-12, 1.0], [1, 2], [1, 1], dtype=np.float64)
    assert m_ap == pytest.approx(0.5)


def test_query_without_valid_match_is_skipped():
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.1, 0.3]], dtype=np.float32)
    g_pids, g_cams = np.array([5, 1, 1]), np.array([1, 0, 1])
    # Query 0 (pid 1, cam 1): gallery idx2 (pid 1, cam 1) is junk; positive idx1 at kept rank 2.
    # Query 1 (pid 9) has no match at all; query 2 (pid 5, cam 1) only matches junk (idx0, cam 1).
    cmc, m_ap, m_inp = evaluate_rank(d, np.array([1, 9, 5]), g_pids, np.array([1, 0, 1]), g_cams,
                                     max_rank=3, return_minp=True)
    assert m_ap == pytest.approx(0.5) and m_inp == pytest.approx(0.5)
    np.testing.assert_array_equal(cmc, [0, 1, 1])
    result = evaluate(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), [1, 9, 5], g_pids, [1, 0, 1],
                      g_cams, max_rank=3)
    assert (result.num_valid_queries, result.num_queries) == (1, 3)


def test_all_queries_invalid_raises():
    with pytest.raises(ValueError, match="no query has a valid match in the gallery"):
        evaluate_rank(np.ones((2, 3)), np.array([7, 8]), np.array([1, 2, 7]), np.array([0, 1]),
                      np.array([0, 0, 0]))


def test_cmc_padded_past_gallery_size():
    # 3 gallery items, max_rank 6: the first hit is at rank 2, entries past the gallery stay 1.
    cmc, _ = one_query([0.1, 0.2, 0.3], [2, 1, 3], [1, 1, 1], max_rank=6)[:2]
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1, 1, 1])


# ----------------------------------------------------------------------------- equality with the loop

@pytest.mark.parametrize("max_rank", [1, 5, 50, 500])
@pytest.mark.parametrize("kind", ["tied-float32", "tied-float64", "continuous", "negative"])
def test_matches_plain_loop(kind, max_rank):
    rng = np.random.default_rng(max_rank)
    n_q, n_g = 30, 200
    if kind == "continuous":
        d = rng.random((n_q, n_g), dtype=np.float32)
    elif kind == "negative":
        d = (rng.integers(-3, 3, (n_q, n_g)) * 0.5).astype(np.float32)
    else:  # few distinct values: many ties between positives and non-positives
        d = rng.integers(0, 6, (n_q, n_g)).astype(np.float32 if kind == "tied-float32" else np.float64)
    q_pids, g_pids = rng.integers(0, 8, n_q), rng.integers(0, 8, n_g)
    q_cams, g_cams = rng.integers(0, 4, n_q), rng.integers(0, 4, n_g)
    q_pids[0] = 99  # a query without any match
    ref_cmc, ref_ap, ref_inp = loop_eval(d, q_pids, g_pids, q_cams, g_cams, max_rank)
    for chunk in (None, 1, 7):
        cmc, m_ap, m_inp = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank,
                                         return_minp=True, chunk_size=chunk)
        assert cmc.shape == (max_rank,) and cmc.dtype == np.float64
        np.testing.assert_allclose(cmc, ref_cmc, rtol=0, atol=1e-12)
        assert m_ap == pytest.approx(ref_ap, abs=1e-12) and m_inp == pytest.approx(ref_inp, abs=1e-12)


def test_random_shapes_match_loop():
    rng = np.random.default_rng(123)
    for _ in range(40):
        n_q, n_g = rng.integers(1, 25), rng.integers(1, 60)
        d = rng.integers(0, rng.integers(1, 5), (n_q, n_g)).astype(np.float32)
        q_pids, g_pids = rng.integers(0, 4, n_q), rng.integers(0, 4, n_g)
        q_cams, g_cams = rng.integers(0, 2, n_q), rng.integers(0, 2, n_g)
        ref = loop_eval(d, q_pids, g_pids, q_cams, g_cams, 10)
        if ref is None:
            with pytest.raises(ValueError, match="no query has a valid match"):
                evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
            continue
        got = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10, return_minp=True)
        np.testing.assert_allclose(got[0], ref[0], atol=1e-12)
        assert got[1:] == pytest.approx(ref[1:], abs=1e-12)


# ----------------------------------------------------------------------------- distances

@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(53, 16)).astype(np.float32)


def test_distances_against_float64_loop(feats):
    qf, gf = feats
    q64, g64 = qf.astype(np.float64), gf.astype(np.float64)
    eu = np.array([[np.linalg.norm(a - b) for b in g64] for a in q64])
    cos = np.array([[1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in g64] for a in q64])
    qn, gn = q64 / np.linalg.norm(q64, axis=1, keepdims=True), g64 / np.linalg.norm(g64, axis=1, keepdims=True)
    eu_n = np.array([[np.linalg.norm(a - b) for b in gn] for a in qn])
    for got, want in [(compute_distance(qf, gf), eu), (compute_distance(qf, gf, "sqeuclidean"), eu ** 2),
                      (compute_distance(qf, gf, "cosine"), cos), (compute_distance(qf, gf, normalize=True), eu_n),
                      (compute_distance(q64, g64), eu)]:
        assert got.dtype == np.float32 and got.shape == (37, 53)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    for metric in ("euclidean", "sqeuclidean", "cosine"):  # self-distances: rounding must not go below 0
        assert compute_distance(qf, qf, metric).min() >= 0


def test_distance_chunked_equals_unchunked(feats):
    qf, gf = feats
    for metric in ("euclidean", "sqeuclidean", "cosine"):
        full = compute_distance(qf, gf, metric, chunk_size=1000)
        np.testing.assert_allclose(compute_distance(qf, gf, metric, chunk_size=5), full, rtol=1e-6, atol=1e-6)
    d = compute_distance(qf, gf)
    pids = np.arange(53) % 9
    a = evaluate_rank(d, pids[:37], pids, np.zeros(37), np.ones(53), return_minp=True)
    b = evaluate_rank(d, pids[:37], pids, np.zeros(37), np.ones(53), return_minp=True, chunk_size=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


def test_chance_level_and_clustered():
    rng = np.random.default_rng(7)
    n_ids, n_q, n_g = 40, 200, 800
    q_pids, g_pids = rng.integers(0, n_ids, n_q), rng.integers(0, n_ids, n_g)
    q_cams, g_cams = np.zeros(n_q, int), np.ones(n_g, int)
    # Random ranking of N kept items with n positives: E[AP] = (H_N + (n-1)/(N-1) (N - H_N)) / N.
    h_n = np.sum(1.0 / np.arange(1, n_g + 1))
    n_pos = np.array([np.sum(g_pids == p) for p in q_pids])
    expected = np.mean([(h_n + (n - 1) / (n_g - 1) * (n_g - h_n)) / n_g for n in n_pos if n > 0])
    random_map = evaluate(rng.normal(size=(n_q, 64)), rng.normal(size=(n_g, 64)), q_pids, g_pids, q_cams,
                          g_cams).mAP
    assert random_map == pytest.approx(expected, rel=0.25)
    centers = rng.normal(size=(n_ids, 64)) * 3
    clustered = evaluate(centers[q_pids] + rng.normal(size=(n_q, 64)), centers[g_pids] + rng.normal(size=(n_g, 64)),
                         q_pids, g_pids, q_cams, g_cams)
    assert clustered.mAP > 0.9 > 10 * expected


def test_result_dataclass():
    rng = np.random.default_rng(3)
    pids = np.arange(30) % 6
    r = evaluate(rng.normal(size=(30, 8)), rng.normal(size=(30, 8)), pids, pids, np.zeros(30), np.ones(30),
                 max_rank=10)
    assert isinstance(r, ReIDResult) and r.cmc.shape == (10,)
    assert r.rank1 == r.cmc[0] and r.rank5 == r.cmc[4] and r.rank10 == r.cmc[9]
    with pytest.raises(ValueError, match="rank k=20"):
        _ = r.rank20
    d = json.loads(json.dumps(r.as_dict()))
    assert set(d) == {"mAP", "mINP", "rank1", "rank5", "rank10", "cmc", "num_valid_queries", "num_queries"}
    assert 0 <= d["mINP"] <= d["mAP"] <= 1 and d["num_valid_queries"] == 30


# ----------------------------------------------------------------------------- bad input

D34 = np.ones((3, 4), dtype=np.float32)
P3, P4 = np.arange(3), np.arange(4)


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(4), P3, P4, P3, P4), {}, "distmat must be 2-D.*got shape (4,)"),
    ((D34, np.arange(2), P4, P3, P4), {}, "q_pids has shape (2,), expected (3,)"),
    ((D34, P3, P4, np.arange(5), P4), {}, "q_camids has shape (5,), expected (3,)"),
    ((D34, P3, P3, P3, P4), {}, "g_pids has shape (3,), expected (4,)"),
    ((D34, P3, P4, P3, np.arange(6)), {}, "g_camids has shape (6,), expected (4,)"),
    ((np.ones((0, 4)), P3[:0], P4, P3[:0], P4), {}, "distmat has shape (0, 4)"),
    ((np.ones((3, 0)), P3, P4[:0], P3, P4[:0]), {}, "distmat has shape (3, 0)"),
    ((D34, P3, P4, P3, P4), {"max_rank": 0}, "max_rank must be an integer >= 1, got 0"),
    ((np.where(np.eye(3, 4) > 0, np.nan, 1.0), P3, P4, P3, P4), {}, "distmat contains non-finite values"),
    ((np.where(np.eye(3, 4) > 0, np.inf, 1.0), P3, P4, P3, P4), {}, "non-finite.*first at [0, 0]"),
])
def test_evaluate_rank_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match).replace(r"\.\*", ".*")):
        evaluate_rank(*args, **kwargs)


def test_distance_bad_input(feats):
    qf, gf = feats
    with pytest.raises(ValueError, match="metric must be one of.*'manhattan'"):
        compute_distance(qf, gf, metric="manhattan")
    with pytest.raises(ValueError, match=re.escape("feature dims differ: qf has shape (37, 16), gf has shape (53, 8)")):
        compute_distance(qf, gf[:, :8])
    with pytest.raises(ValueError, match=re.escape("qf must be 2-D (num_items, feature_dim), got shape (16,)")):
        compute_distance(qf[0], gf)
    with pytest.raises(ValueError, match="gf .* contains non-finite"):
        compute_distance(qf, np.full_like(gf, np.nan))
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate(qf, gf, np.arange(37), np.arange(53), np.zeros(37), np.ones(53), metric="l1")


# ----------------------------------------------------------------------------- re-ranking

def naive_rerank(q_g, q_q, g_g, k1, k2, lam):
    """The algorithm as written in the paper, dense and one item at a time."""
    d = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32)
    d = d / d.max(axis=1, keepdims=True)
    n, n_q = len(d), len(q_q)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r_i = reciprocal(i, k1)
        expanded = set(r_i)
        for c in r_i:
            r_c = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(r_c) & set(r_i)) > 2 / 3 * len(r_c):
                expanded |= set(r_c)
        idx = np.array(sorted(expanded))
        w = np.exp(-d[i, idx].astype(np.float64))
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.array([[1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum() for j in range(n_q, n)]
                    for i in range(n_q)])
    return jac * (1 - lam) + d[:n_q, n_q:] * lam


def clustered(rng, n_ids=12, per_q=2, per_g=6, noise=1.3, dim=16):
    centers = rng.normal(size=(n_ids, dim))
    q_pids, g_pids = np.repeat(np.arange(n_ids), per_q), np.repeat(np.arange(n_ids), per_g)
    qf = centers[q_pids] + noise * rng.normal(size=(len(q_pids), dim))
    gf = centers[g_pids] + noise * rng.normal(size=(len(g_pids), dim))
    return qf, gf, q_pids, g_pids


def pairwise(a, b):  # elementwise formula: bitwise-equal rows for bitwise-equal vectors
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("k1, k2, lam", [(20, 6, 0.3), (5, 3, 0.5), (4, 1, 0.0)])
def test_rerank_matches_naive(k1, k2, lam):
    qf, gf, _, _ = clustered(np.random.default_rng(k1))
    args = pairwise(qf, gf), pairwise(qf, qf), pairwise(gf, gf)
    out = re_ranking(*args, k1=k1, k2=k2, lambda_value=lam)
    assert out.shape == (len(qf), len(gf)) and out.dtype == np.float32
    np.testing.assert_allclose(out, naive_rerank(*args, k1, k2, lam), atol=2e-6)


def test_rerank_improves_clustered_and_duplicates_tie():
    rng = np.random.default_rng(11)
    qf, gf, q_pids, g_pids = clustered(rng, n_ids=30, per_q=2, per_g=8, noise=1.2, dim=32)
    gf, g_pids = np.concatenate([gf, gf[5:6]]), np.concatenate([g_pids, g_pids[5:6]])  # exact duplicate
    q_cams, g_cams = np.zeros(len(qf), int), np.ones(len(gf), int)
    q_g = pairwise(qf, gf)
    rr = re_ranking(q_g, pairwise(qf, qf), pairwise(gf, gf))
    assert rr.shape == q_g.shape
    np.testing.assert_array_equal(rr[:, 5], rr[:, -1])
    base = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams)[1]
    reranked = evaluate_rank(rr, q_pids, g_pids, q_cams, g_cams)[1]
    assert reranked >= base + 0.05, (base, reranked)
    via_evaluate = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank=True)
    assert via_evaluate.mAP == pytest.approx(reranked, abs=0.02)
    cosine = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="cosine", rerank=True)
    assert cosine.mAP >= evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="cosine").mAP


def test_rerank_bad_input():
    q_g, q_q, g_g = np.ones((2, 5)), np.zeros((2, 2)), np.zeros((5, 5))
    with pytest.raises(ValueError, match=re.escape("q_q_dist has shape (3, 3), expected (2, 2)")):
        re_ranking(q_g, np.zeros((3, 3)), g_g)
    with pytest.raises(ValueError, match=re.escape("k1 must be an integer in [1, 6]")):
        re_ranking(q_g, q_q, g_g, k1=20)
    with pytest.raises(ValueError, match="g_g_dist .* finite, non-negative"):
        re_ranking(q_g, q_q, np.full((5, 5), np.nan), k1=3, k2=2)
