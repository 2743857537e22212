"""k-reciprocal re-ranking from features (``re_ranking_features``) in bounded memory:
bit-equal to the matrix version on the same distances, bad input, a memory bound,
progress output, and ``retrieval_distances`` / ``evaluate`` choosing either path."""
from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from stra_jax.evaluation import compute_distance, evaluate, re_ranking, re_ranking_features
from stra_jax.evaluation import distances as distances_module
from stra_jax.evaluation.distances import retrieval_distances
from tests.test_reid_metrics import naive_rerank


def clustered(rng, n, n_ids, dim, noise, dtype=np.float32):
    centers = rng.normal(size=(n_ids, dim))
    return (centers[rng.integers(0, n_ids, n)] + noise * rng.normal(size=(n, dim))).astype(dtype)


def matrix_version(q, g, metric="euclidean", normalize=False, **kw):
    d = {(a, b): compute_distance(x, y, metric, normalize) for a, x in (("q", q), ("g", g)) for b, y in (("q", q), ("g", g))}
    return re_ranking(d["q", "g"], d["q", "q"], d["g", "g"], **kw)


def _random(rng):
    return rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(150, 16)).astype(np.float32)


def _small_clusters(rng):  # clusters of ~4 items, far below k1 = 20
    return clustered(rng, 30, 40, 8, 0.3), clustered(rng, 130, 40, 8, 0.3)


def _across_tiles(rng):  # more than one 256-row tile on both sides, partial last tiles
    return clustered(rng, 300, 25, 24, 0.6), clustered(rng, 530, 25, 24, 0.6)


def _duplicates(rng):  # exact copies inside the gallery and between query and gallery
    q, g = clustered(rng, 25, 8, 12, 0.5), clustered(rng, 90, 8, 12, 0.5)
    g[10:16] = g[3]
    q[:4] = g[3]
    g[40:45] = q[7]
    return q, g


def _integer_ties(rng):  # small integer features: every distance exact, ties everywhere
    return rng.integers(-2, 3, size=(30, 5)).astype(np.float32), rng.integers(-2, 3, size=(120, 5)).astype(np.float32)


def _float64(rng):
    return clustered(rng, 35, 10, 16, 0.5, np.float64), clustered(rng, 100, 10, 16, 0.5, np.float64)


CASES = [
    ("random", _random, {}, {}),
    ("small clusters, cosine", _small_clusters, dict(metric="cosine"), dict(k1=20, k2=6)),
    ("across tiles, sqeuclidean normalised", _across_tiles, dict(metric="sqeuclidean", normalize=True),
     dict(k1=7, k2=1, lambda_value=0.0)),
    ("duplicates", _duplicates, {}, dict(k1=10, k2=4, lambda_value=0.5)),
    ("integer ties", _integer_ties, {}, dict(k1=20, k2=21, lambda_value=1.0)),
    ("integer ties, sqeuclidean", _integer_ties, dict(metric="sqeuclidean"), dict(k1=3, k2=2)),
    ("float64", _float64, dict(metric="cosine"), dict(k1=12, k2=3, lambda_value=0.2)),
]


@pytest.mark.parametrize("name, make, dist_kw, rr_kw", CASES, ids=[c[0] for c in CASES])
def test_equals_matrix_version(name, make, dist_kw, rr_kw):
    q, g = make(np.random.default_rng(len(name)))
    want = matrix_version(q, g, **dist_kw, **rr_kw)
    got = re_ranking_features(q, g, **dist_kw, **rr_kw)
    assert got.shape == (len(q), len(g)) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_block_rows_do_not_change_the_result():
    q, g = _across_tiles(np.random.default_rng(3))
    want = re_ranking_features(q, g, k1=6, k2=3)
    np.testing.assert_array_equal(re_ranking_features(q, g, k1=6, k2=3, block_rows=1), want)  # one tile a block
    np.testing.assert_array_equal(re_ranking_features(q, g, k1=6, k2=3, block_rows=10_000), want)  # one block


def test_matches_the_paper_oracle():
    """Independently of the shared steps: the dense, one-item-at-a-time oracle of
    tests/test_reid_metrics.py on the same distance matrices."""
    q, g = _duplicates(np.random.default_rng(5))
    args = compute_distance(q, g), compute_distance(q, q), compute_distance(g, g)
    np.testing.assert_allclose(re_ranking_features(q, g, k1=12, k2=3, lambda_value=0.4),
                               naive_rerank(*args, 12, 3, 0.4), atol=2e-6)


def test_bad_input():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    cases = [
        ((q[0], g), {}, "query_feats must be 2-D (num_items, feature_dim), got shape (8,)"),
        ((q, g[:, :5]), {}, "feature dims differ: query_feats has shape (4, 8), gallery_feats has shape (6, 5)"),
        ((q[:0], g), {}, "query_feats and gallery_feats must be non-empty, got shapes (0, 8) and (6, 8)"),
        ((q, np.full_like(g, np.inf)), {}, "gallery_feats (shape (6, 8)) contains non-finite values"),
        ((q.astype(str), g), {}, "query_feats has dtype <U"),
        ((q, g), dict(k1=10), "k1 must be an integer in [1, 9] (num_query + num_gallery - 1), got 10"),
        ((q, g), dict(k1=0), "k1 must be an integer in [1, 9]"),
        ((q, g), dict(k1=True), "k1 must be an integer in [1, 9]"),
        ((q, g), dict(k1=4, k2=6), "k2 must be an integer in [1, k1 + 1 = 5], got 6"),
        ((q, g), dict(k1=4, k2=0), "k2 must be an integer in [1, k1 + 1 = 5], got 0"),
        ((q, g), dict(k1=4, k2=2, lambda_value=1.5), "lambda_value must be a number in [0, 1], got 1.5"),
        ((q, g), dict(k1=4, k2=2, lambda_value=float("nan")), "lambda_value must be a number in [0, 1], got nan"),
        ((q, g), dict(k1=4, k2=2, metric="manhattan"), "metric must be one of"),
        ((q, g), dict(k1=4, k2=2, block_rows=0), "block_rows must be None or a positive integer, got 0"),
        ((q, g), dict(k1=4, k2=2, block_rows=2.5), "block_rows must be None or a positive integer, got 2.5"),
    ]
    for args, kw, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            re_ranking_features(*args, **kw)


def test_peak_memory_stays_below_the_joint_matrix():
    """6,000 items: the float32 joint matrix alone is 144 MB; the call stays under 60 MB
    (result 20 MB + row blocks + sparse V), as NumPy reports its buffers to tracemalloc."""
    rng = np.random.default_rng(1)
    q, g = clustered(rng, 1000, 300, 32, 0.5), clustered(rng, 5000, 300, 32, 0.5)
    n = len(q) + len(g)
    bound = 60 * 2**20
    assert 4 * n * n > 2 * bound
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = re_ranking_features(q, g)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.shape == (1000, 5000) and np.isfinite(out).all()
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB"


def test_progress_line(capsys):
    q, g = _small_clusters(np.random.default_rng(2))
    re_ranking_features(q, g, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    for stage, total in (("neighbours", len(q) + len(g)), ("expansion", len(q) + len(g)), ("jaccard", len(q))):
        assert re.search(rf"re-ranking: {stage} +{total}/{total} +elapsed +\d+s +stage ETA", captured.err), captured.err
    assert "\r" in captured.err


def test_retrieval_distances_takes_either_path_with_the_same_result(monkeypatch):
    calls = []
    monkeypatch.setattr(distances_module, "re_ranking_features",
                        lambda *a, **kw: calls.append(kw) or re_ranking_features(*a, **kw))
    q, g = _duplicates(np.random.default_rng(4))
    for kw in (dict(metric="euclidean"), dict(metric="cosine", aqe=(3, 3.0)), dict(metric="sqeuclidean", normalize=True)):
        matrices = retrieval_distances(q, g, rerank=True, rerank_max_bytes=1 << 40, **kw)
        assert not calls
        features = retrieval_distances(q, g, rerank=True, rerank_max_bytes=0, **kw)
        assert len(calls) == 1 and calls.pop()["metric"] == kw["metric"]
        np.testing.assert_array_equal(features, matrices)
    with pytest.raises(ValueError, match="rerank_max_bytes must be None or an integer number of bytes, got '1GB'"):
        retrieval_distances(q, g, rerank=True, rerank_max_bytes="1GB")


def test_evaluate_switches_when_the_matrices_would_not_fit(monkeypatch):
    """``evaluate(..., rerank=True)`` (and so the ReID evaluator and eval.py) decides by the
    available memory: with none to spare it re-ranks from features, with the same mAP."""
    rng = np.random.default_rng(6)
    q, g = clustered(rng, 30, 10, 16, 0.8), clustered(rng, 120, 10, 16, 0.8)
    q_pids, g_pids = np.arange(30) % 10, np.arange(120) % 10
    args = (q, g, q_pids, g_pids, np.zeros(30, int), np.ones(120, int))
    monkeypatch.setattr(distances_module, "available_memory_bytes", lambda: 1 << 40)
    fits = evaluate(*args, rerank=True)
    monkeypatch.setattr(distances_module, "available_memory_bytes", lambda: 0)
    monkeypatch.setattr(distances_module, "re_ranking", None)  # the matrix path would fail
    features = evaluate(*args, rerank=True)
    assert (features.mAP, features.mINP) == (fits.mAP, fits.mINP)
    np.testing.assert_array_equal(features.cmc, fits.cmc)
