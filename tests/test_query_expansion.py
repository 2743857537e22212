"""Average query expansion (alpha-QE) and the ReID evaluator's aqe / flip settings:
hand-computed 2-D cases, an explicit-loop oracle, ties, blocks, a ranking AQE
fixes, the settings' checks, ranks.json, and the flip-averaged feature by hand."""
from __future__ import annotations

import json
import math
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stra_jax.data.reid.common import Record, ReIDDataset
from stra_jax.evaluation.distances import retrieval_distances
from stra_jax.evaluation.query_expansion import average_query_expansion
from stra_jax.evaluation.reid import evaluate
from stra_jax.evaluation.rerank import re_ranking


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else list(v)


def _aqe_by_loops(qf, gf, k, alpha):
    """The definition, one item and one neighbour at a time (float64): self first,
    then the other items by descending cosine, ties by pool index."""
    pool = [_unit([float(x) for x in row]) for row in list(qf) + list(gf)]
    out = []
    for i, xi in enumerate(pool):
        sims = [sum(a * b for a, b in zip(xi, xj)) for xj in pool]
        chosen = sorted(range(len(pool)), key=lambda j: (j != i, -sims[j], j))[:k]
        y = [0.0] * len(xi)
        for j in chosen:
            w = 1.0 if j == i else max(sims[j], 0.0) ** alpha
            y = [a + w * b for a, b in zip(y, pool[j])]
        out.append(_unit(y))
    out = np.array(out)
    return out[: len(qf)], out[len(qf):]


# ----------------------------------------------------------------------------- the function


@pytest.mark.parametrize("alpha", [1.0, 3.0, 0.0])
def test_hand_computed_2d(alpha):
    """Pool (after normalising) x0 = (1, 0) | x1 = (0.6, 0.8), x2 = (0, 1), x3 = (-1, 0);
    cosines: x0.x1 = 0.6, x1.x2 = 0.8, x0.x2 = 0, x0.x3 = -1, x1.x3 = -0.6, x2.x3 = 0.
    k = 2: x0 takes x1, x1 takes x2, x2 takes x1, x3 takes x2 (cosine 0, the largest;
    weight 0 ** alpha: nothing for alpha > 0, 1 for alpha = 0)."""
    qf = np.array([[2.0, 0.0]], np.float32)
    gf = np.array([[0.6, 0.8], [0.0, 2.0], [-3.0, 0.0]], np.float32)
    w6, w8, w0 = 0.6 ** alpha, 0.8 ** alpha, (1.0 if alpha == 0 else 0.0)
    y = [(1 + w6 * 0.6, w6 * 0.8), (0.6, 0.8 + w8), (w8 * 0.6, 1 + w8 * 0.8), (-1.0, w0)]
    want = np.array([(a / math.hypot(a, b), b / math.hypot(a, b)) for a, b in y])
    if alpha == 1.0:  # spelled out once: (1.36, 0.48) / sqrt(2.08)
        assert want[0] == pytest.approx([1.36 / math.sqrt(2.08), 0.48 / math.sqrt(2.08)])
    q2, g2 = average_query_expansion(qf, gf, k=2, alpha=alpha)
    assert q2.dtype == g2.dtype == np.float32 and q2.shape == (1, 2) and g2.shape == (3, 2)
    np.testing.assert_allclose(np.concatenate([q2, g2]), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k,alpha", [(1, 3.0), (3, 3.0), (4, 0.5), (5, 0.0), (18, 2.0)])
def test_matches_explicit_loops(k, alpha):
    rng = np.random.default_rng(k)
    qf, gf = rng.standard_normal((7, 6)).astype(np.float32), rng.standard_normal((11, 6)).astype(np.float32)
    q2, g2 = average_query_expansion(qf, gf, k=k, alpha=alpha)
    wq, wg = _aqe_by_loops(qf, gf, k, alpha)
    np.testing.assert_allclose(q2, wq, rtol=0, atol=2e-6)
    np.testing.assert_allclose(g2, wg, rtol=0, atol=2e-6)
    if k == 1:  # only itself: the L2-normalised input
        np.testing.assert_allclose(q2, qf / np.linalg.norm(qf, axis=1, keepdims=True), atol=1e-6)


def test_ties_go_to_the_lower_pool_index_and_self_comes_first():
    """(1, 1) is as close to (0, 1) as to (1, 0): k = 2 takes whichever comes first in
    query + gallery order. A duplicate of an item never displaces the item itself."""
    q = np.array([[1.0, 1.0]], np.float32)
    c = 0.5 ** 0.5
    for gallery, neighbour in (([[0.0, 1.0], [1.0, 0.0]], (0.0, 1.0)), ([[1.0, 0.0], [0.0, 1.0]], (1.0, 0.0))):
        q2, _ = average_query_expansion(q, np.array(gallery, np.float32), k=2, alpha=3.0)
        y = [c + c ** 3 * neighbour[0], c + c ** 3 * neighbour[1]]
        np.testing.assert_allclose(q2[0], _unit(y), atol=1e-6)
    # Near-duplicates whose float32 cosine with an item rounds above the item's own
    # (0.99999994 < 1.0 happens): k = 1 still keeps each item itself.
    rng = np.random.default_rng(0)
    near = (rng.standard_normal(4) + 1e-4 * rng.standard_normal((40, 4))).astype(np.float32)
    sims = (near / np.linalg.norm(near, axis=1, keepdims=True)) @ (near / np.linalg.norm(near, axis=1)[:, None]).T
    assert (sims > np.diag(sims)[:, None]).any()  # the case is really there
    q2, g2 = average_query_expansion(near[:10], near[10:], k=1)
    np.testing.assert_allclose(np.concatenate([q2, g2]), near / np.linalg.norm(near, axis=1, keepdims=True),
                               rtol=0, atol=1e-7)


def test_blockwise_equals_one_block():
    rng = np.random.default_rng(0)
    qf, gf = rng.standard_normal((13, 16)), rng.standard_normal((29, 16))  # float64 in: float32 out
    whole = average_query_expansion(qf, gf, k=5, alpha=3.0, block_size=42)
    for block in (1, 5, 41, None):
        part = average_query_expansion(qf, gf, k=5, alpha=3.0, block_size=block)
        for a, b in zip(part, whole):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_bad_arguments():
    q, g = np.ones((2, 3), np.float32), np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\] \(num_query \+ num_gallery\), got 6"):
        average_query_expansion(q, g, k=6)
    with pytest.raises(ValueError, match="k must be an integer"):
        average_query_expansion(q, g, k=2.0)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
        average_query_expansion(q, g, alpha=-1)
    with pytest.raises(ValueError, match="feature dims differ"):
        average_query_expansion(q, np.ones((3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        average_query_expansion(np.full((2, 3), np.nan), g)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        average_query_expansion(q, g, block_size=0)
    with pytest.raises(ValueError, match=r"aqe must be None or a pair \(k, alpha\)"):
        retrieval_distances(q, g, aqe=5)


# ----------------------------------------------------------------------------- through evaluate


def _angles(degrees):
    return np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees], np.float32)


# One query (pid 1, camera 0) at 0 degrees. Its nearest gallery item, a wrong pid at
# 10 degrees, sits beside its own identity (20, 22, 24); pid 1 lies at -12, -13, -14.
# Alone, the query ranks the distractor first (matches at ranks 2, 3, 4). With AQE
# (k 4, alpha 3) the query moves to about -3.6 degrees (itself, 10, -12, -13), the
# distractor to about 12.9 (itself, 0, 20, 22) and pid 1 to about -9.9: matches first.
RANKING = dict(q=[0], g=[10, -12, -13, -14, 20, 22, 24], q_pids=[1], g_pids=[2, 1, 1, 1, 2, 2, 2], q_cams=[0],
               g_cams=[1, 1, 2, 3, 1, 2, 3])


def test_aqe_fixes_a_ranking_through_evaluate():
    r = RANKING
    qf, gf = _angles(r["q"]), _angles(r["g"])
    labels = (r["q_pids"], r["g_pids"], r["q_cams"], r["g_cams"])
    plain = evaluate(qf, gf, *labels)
    assert plain.rank(1) == 0 and plain.mAP == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    expanded = evaluate(qf, gf, *labels, aqe=(4, 3.0))
    assert expanded.rank(1) == 1 and expanded.mAP == pytest.approx(1.0)
    q2, g2 = _aqe_by_loops(qf, gf, 4, 3.0)
    deg = np.degrees(np.arctan2(np.r_[q2[:, 1], g2[:, 1]], np.r_[q2[:, 0], g2[:, 0]]))
    np.testing.assert_allclose(deg[:3], [-3.6, 12.9, -9.9], atol=0.05)
    assert evaluate(qf, gf, *labels, aqe=(3, 3.0)).mAP == pytest.approx(plain.mAP)  # k 3: one match only


def test_aqe_comes_before_the_distances_and_re_ranking():
    rng = np.random.default_rng(1)
    qf, gf = rng.standard_normal((9, 5)).astype(np.float32), rng.standard_normal((17, 5)).astype(np.float32)
    q2, g2 = (x.astype(np.float32) for x in _aqe_by_loops(qf, gf, 5, 3.0))
    d = {(a, b): np.array([[np.linalg.norm(x - y) for y in ys] for x in xs])
         for (a, xs), (b, ys) in [(("q", q2), ("g", g2)), (("q", q2), ("q", q2)), (("g", g2), ("g", g2))]}
    np.testing.assert_allclose(retrieval_distances(qf, gf, aqe=(5, 3.0)), d["q", "g"], atol=2e-6)
    want = re_ranking(d["q", "g"], d["q", "q"], d["g", "g"])
    np.testing.assert_allclose(retrieval_distances(qf, gf, rerank=True, aqe=(5, 3.0)), want, atol=1e-4)


# ----------------------------------------------------------------------------- the evaluator


def _dataset(root, degrees_q, degrees_g, r) -> tuple[ReIDDataset, dict[str, np.ndarray]]:
    """Records with tiny PNGs (the ranked-list pictures need files) and the feature of each path."""
    feats, records = {}, {"query": [], "gallery": []}
    for split, degrees, pids, cams in (("query", degrees_q, r["q_pids"], r["q_cams"]),
                                        ("gallery", degrees_g, r["g_pids"], r["g_cams"])):
        for n, (deg, pid, cam) in enumerate(zip(degrees, pids, cams)):
            path = root / split / f"{pid:04d}_c{cam + 1}_{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 4, 3), 40 * n % 256, np.uint8)).save(path)
            feats[str(path)] = _angles([deg])[0]
            records[split].append(Record(str(path), pid, cam))
    return ReIDDataset("angles", str(root), (), tuple(records["query"]), tuple(records["gallery"])), feats


def _evaluator(dataset, **settings):
    from stra_jax.evaluation.evaluators import build_evaluators

    (ev,) = build_evaluators({"reid": dict(type="reid_retrieval", image_size=(8, 4), batch_size=4, **settings)},
                             {"reid_dataset": dataset})
    return ev


def test_evaluator_aqe_in_run_distances_and_ranks_json(tmp_path, monkeypatch):
    r = RANKING
    dataset, feats = _dataset(tmp_path / "data", r["q"], r["g"], r)
    fake = types.ModuleType("stra_jax.evaluation.features")  # no TensorFlow: features by path
    fake.extract_features = lambda model, variables, paths, **kw: np.stack([feats[p] for p in paths])
    monkeypatch.setitem(sys.modules, "stra_jax.evaluation.features", fake)
    variables = {"params": {}, "batch_stats": {}}
    results = {}
    for aqe in (False, True):
        ev = _evaluator(dataset, aqe=aqe, aqe_k=4, aqe_alpha=3.0)
        metrics = ev.run(object(), variables)
        results[aqe] = metrics
        qf, gf = _angles(r["q"]), _angles(r["g"])
        np.testing.assert_array_equal(ev.distances(qf, gf), retrieval_distances(qf, gf, aqe=(4, 3.0) if aqe else None))
        index = json.loads((ev.write_rank_lists(object(), variables, tmp_path / f"ranks{aqe}", k=3, num_worst=1,
                                                num_random=0)[-1]).read_text())
        assert (index["aqe"], index["aqe_k"], index["aqe_alpha"]) == ((True, 4, 3.0) if aqe else (False, None, None))
        assert index["mAP"] == pytest.approx(metrics["mAP"], abs=1e-12)
        assert [e["pid"] for e in index["queries"][0]["ranked"]] == ([1, 1, 1] if aqe else [2, 1, 1])
        table = ev.table(metrics)
        assert table.splitlines()[1].split() == ["mAP", "mINP", "R-1", "R-5", "R-10", "R-20"]
    assert results[False]["rank1"] == 0 and results[True]["rank1"] == 1
    assert results[True]["mAP"] == pytest.approx(1.0) and results[False]["mAP"] == pytest.approx(23 / 36)


@pytest.mark.parametrize("key,value,message", [
    ("aqe", 1, r"config.evals.reid.aqe=1: expected True or False"),
    ("aqe", "yes", r"config.evals.reid.aqe='yes': expected True or False"),
    ("aqe_k", 0, r"config.evals.reid.aqe_k=0: expected a positive integer"),
    ("aqe_k", 2.5, r"config.evals.reid.aqe_k=2.5: expected a positive integer"),
    ("aqe_k", True, r"config.evals.reid.aqe_k=True: expected a positive integer"),
    ("aqe_alpha", -1.0, r"config.evals.reid.aqe_alpha=-1.0: expected a finite number >= 0"),
    ("aqe_alpha", float("inf"), r"config.evals.reid.aqe_alpha=inf: expected a finite number >= 0"),
    ("aqe_alpha", "3", r"config.evals.reid.aqe_alpha='3': expected a finite number >= 0"),
    ("aqe_q", 1, r"config.evals.reid: unknown setting\(s\) \['aqe_q'\]; valid settings: \[.*'aqe', 'aqe_alpha', "
                 r"'aqe_k'"),
])
def test_settings_are_checked(tmp_path, key, value, message):
    dataset, _ = _dataset(tmp_path, [0], [10], dict(q_pids=[1], g_pids=[1], q_cams=[0], g_cams=[1]))
    with pytest.raises(ValueError, match=message):
        _evaluator(dataset, **{key: value})
    from stra_jax.evaluation.reid_retrieval import DEFAULTS

    assert (DEFAULTS["aqe"], DEFAULTS["aqe_k"], DEFAULTS["aqe_alpha"]) == (False, 5, 3.0)  # fast-reid's TEST.AQE
    ev = _evaluator(dataset, aqe=True, aqe_k=np.int64(3), aqe_alpha=0)  # an int alpha is a number
    assert ev.settings["aqe_k"] == 3


# ----------------------------------------------------------------------------- flip, by hand


class ColumnNet(nn.Module):
    """embedding[b, j] = sum_{h, w, c} x[b, h, w, c] K[h, w, c, j]: a fixed map that is not
    mirror-symmetric, so the flip-averaged feature differs from the plain one."""

    @nn.compact
    def __call__(self, images, *, train, frozen=()):
        e = nn.Dense(3, use_bias=False, name="embed")(images.reshape(images.shape[0], -1))
        return {"embedding": e, "features": e}


def test_reid_evaluator_flip_feature_by_hand(tmp_path):
    """flip=True: each feature is (K x + K mirror(x)) / 2 of the ImageNet-normalised
    pixels, as the ranked lists' distances show; worked out with explicit loops."""
    from stra_jax.data.images import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(0)
    h, w = 4, 2
    pixels, records = {}, {"query": [], "gallery": []}
    for split, pids, cams in (("query", [1, 2], [0, 0]), ("gallery", [1, 2, 1, 2], [1, 1, 2, 2])):
        for n, (pid, cam) in enumerate(zip(pids, cams)):
            path = tmp_path / split / f"{pid:04d}_c{cam + 1}_{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels[str(path)] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels[str(path)]).save(path)
            records[split].append(Record(str(path), pid, cam))
    dataset = ReIDDataset("flip", str(tmp_path), (), tuple(records["query"]), tuple(records["gallery"]))
    model = ColumnNet()
    variables = dict(model.init(jax.random.key(3), jnp.zeros((1, h, w, 3)), train=False))
    variables.setdefault("batch_stats", {})
    kernel = np.asarray(variables["params"]["embed"]["kernel"], np.float64).reshape(h, w, 3, 3)

    def by_hand(px):
        x = [[[(px[i, j, c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in range(3)] for j in range(w)]
             for i in range(h)]
        plain, mirror = [0.0] * 3, [0.0] * 3
        for i in range(h):
            for j in range(w):
                for c in range(3):
                    for d in range(3):
                        plain[d] += x[i][j][c] * kernel[i, j, c, d]
                        mirror[d] += x[i][w - 1 - j][c] * kernel[i, j, c, d]
        return [(a + b) / 2 for a, b in zip(plain, mirror)], plain

    want = {p: by_hand(px) for p, px in pixels.items()}
    ev = _evaluator_sized(dataset, (h, w), flip=True)
    ev.run(model, variables)
    index = json.loads(ev.write_rank_lists(model, variables, tmp_path / "out", k=4, num_worst=2,
                                           num_random=0)[-1].read_text())
    assert index["flip"] is True
    for q in index["queries"]:
        for e in q["ranked"]:
            fq, fg = np.array(want[q["path"]][0]), np.array(want[e["path"]][0])
            assert e["distance"] == pytest.approx(float(np.linalg.norm(fq - fg)), rel=1e-4, abs=1e-5)
    # Not vacuous: the mirror changes the features, so the plain distances differ.
    p0, p1 = (str(r.path) for r in dataset.query)
    assert not np.allclose(want[p0][0], want[p0][1], atol=1e-3)


def _evaluator_sized(dataset, size, **settings):
    from stra_jax.evaluation.evaluators import build_evaluators

    (ev,) = build_evaluators({"reid": dict(type="reid_retrieval", image_size=size, batch_size=2, **settings)},
                             {"reid_dataset": dataset})
    return ev
