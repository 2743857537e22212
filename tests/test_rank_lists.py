"""Ranked lists (torchreid's visrank): selection under the ReID protocol, the
pictures, the evaluator's write_rank_lists and eval.py's --visualize-ranks."""
from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stra_jax.evaluation.evaluators import Evaluator
from stra_jax.data.reid.common import Record, ReIDDataset
from stra_jax.evaluation.rank_figure import draw_rank_list, load_image, with_border
from stra_jax.evaluation.rank_lists import (average_precision_per_query, rank_gallery, rank_gallery_with_ap,
                                            select_queries)
from stra_jax.evaluation.reid import evaluate_rank

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 5 queries x 6 gallery. Same pid + same camera ("junk"): q0-g0, q1-g5, q2-g3.
Q_PIDS, Q_CAMS = np.array([1, 2, 3, 3, 9]), np.array([0, 0, 1, 2, 0])
G_PIDS, G_CAMS = np.array([1, 1, 2, 3, 3, 2]), np.array([0, 1, 1, 1, 0, 0])
DIST = np.array([
    [0.1, 0.5, 0.3, 0.9, 0.2, 0.7],   # junk g0; kept order g4 g2 g1 g5 g3; match g1 at rank 3
    [0.4, 0.4, 0.8, 0.1, 0.6, 0.05],  # junk g5; g3 g0 g1 (tie: by index) g4 g2; match g2 at rank 5
    [0.3, 0.6, 0.2, 0.0, 0.1, 0.9],   # junk g3; g4 g2 g0 g1 g5; match g4 at rank 1
    [0.5, 0.2, 0.6, 0.4, 0.8, 0.1],   # no junk; g5 g1 g3 g0 g2 g4; matches g3, g4 at ranks 3, 6
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # pid 9 absent from the gallery: invalid
], dtype=np.float32)
EXPECTED_ORDER = [[4, 2, 1, 5, 3], [3, 0, 1, 4, 2], [4, 2, 0, 1, 5], [5, 1, 3, 0, 2, 4], [0, 1, 2, 3, 4, 5]]
EXPECTED_AP = [1 / 3, 1 / 5, 1.0, (1 / 3 + 2 / 6) / 2, np.nan]


def test_rank_gallery_excludes_junk_and_orders_by_distance_then_index():
    indices, matches = rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, k=7)
    assert indices.shape == matches.shape == (5, 7)
    for q, order in enumerate(EXPECTED_ORDER):
        np.testing.assert_array_equal(indices[q], order + [-1] * (7 - len(order)))
        np.testing.assert_array_equal(matches[q], [G_PIDS[g] == Q_PIDS[q] for g in order] + [False] * (7 - len(order)))
    top3, m3 = rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, k=3)
    np.testing.assert_array_equal(top3, indices[:, :3])
    np.testing.assert_array_equal(m3[:, 2], [True, False, False, True, False])
    with pytest.raises(ValueError, match="g_camids has shape"):
        rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS[:5], k=3)
    with pytest.raises(ValueError, match="k must be"):
        rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, k=0)


def test_per_query_ap_by_hand_and_equal_to_the_protocol_map():
    ap = average_precision_per_query(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    np.testing.assert_allclose(ap, EXPECTED_AP, rtol=1e-12)
    _, m_ap = evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=6)
    assert np.nanmean(ap) == pytest.approx(m_ap, abs=1e-12)
    # One pass gives the same lists and APs (chunking included).
    rng = np.random.default_rng(0)
    dist = rng.random((40, 30)).astype(np.float32)
    labels = (rng.integers(0, 8, 40), rng.integers(0, 8, 30), rng.integers(0, 3, 40), rng.integers(0, 3, 30))
    _, _, ap = rank_gallery_with_ap(dist, *labels, k=5)
    _, m_ap = evaluate_rank(dist, *labels, max_rank=30)
    assert np.nanmean(ap) == pytest.approx(m_ap, abs=1e-12)


def test_select_worst_then_random():
    ap = np.array(EXPECTED_AP)
    assert select_queries(ap, 3, 0) == [1, 0, 3]          # AP 0.2, then the tie 1/3 by index, NaN never
    assert select_queries(ap, 2, 5, seed=1) == [1, 0, 2, 3]  # too few valid: all of them
    big = np.random.default_rng(0).random(50)
    big[[4, 9]] = np.nan
    picks = select_queries(big, 4, 6, seed=3)
    worst = [int(i) for i in np.argsort(np.nan_to_num(big, nan=9))[:4]]
    assert picks[:4] == worst
    assert picks == select_queries(big, 4, 6, seed=3)      # deterministic for a seed
    assert len(set(picks)) == 10 and not {4, 9} & set(picks)
    assert picks[4:] == sorted(picks[4:])
    assert picks[4:] != select_queries(big, 4, 6, seed=4)[4:]


def test_figure_writer_produces_pngs(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) for _ in range(4)]
    framed = with_border(images[0], (0, 255, 0), width=2)
    assert framed.shape == (20, 12, 3) and (framed[0, 0] == (0, 255, 0)).all()
    Image.fromarray(images[0]).save(tmp_path / "q.jpg")
    assert load_image(tmp_path / "q.jpg", (32, 16)).shape == (32, 16, 3)
    path = draw_rank_list(tmp_path / "out" / "r.png", images[0], "query", images[1:], ["#1", "#2", "#3"],
                          [True, False, True], title="a query")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        assert img.size[0] > img.size[1] > 50
    assert [p.name for p in path.parent.iterdir()] == ["r.png"]  # no temporary left behind


# ----------------------------------------------------------------------------- evaluator and eval.py

def _mean_colour_features(model, variables, paths, **kw):
    """Stands in for extract_features (no TensorFlow, no network): each image's mean colour per half."""
    feats = []
    for path in paths:
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        half = arr.shape[0] // 2
        feats.append(np.concatenate([arr[:half].mean(axis=(0, 1)), arr[half:].mean(axis=(0, 1))]))
    return np.stack(feats) * variables["params"]["scale"]


VARIABLES = {"params": {"scale": 1.0}, "batch_stats": {}}


def _tiny_dataset(root: Path) -> ReIDDataset:
    """5 pids, one colour each plus noise: queries on camera 0, gallery on 0-2 and a distractor."""
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 220, (6, 2, 3))

    def image(pid: int, cam: int, n: int, split: str) -> Record:
        arr = np.concatenate([np.broadcast_to(c, (8, 8, 3)) for c in colours[pid]], axis=0)
        arr = np.clip(arr + rng.normal(0, 25, arr.shape), 0, 255).astype(np.uint8)
        path = root / split / f"{pid:04d}_c{cam + 1}_{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        return Record(str(path), pid, cam)

    query = tuple(image(pid, 0, 0, "query") for pid in range(1, 6))
    gallery = tuple(image(pid, cam, n, "gallery") for pid in range(1, 6) for n, cam in enumerate((0, 1, 2)))
    return ReIDDataset("tiny", str(root), (), query, gallery + (image(0, 1, 0, "gallery"),))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_dataset(tmp_path_factory.mktemp("tiny_reid"))


def _evaluator(dataset: ReIDDataset):
    from stra_jax.evaluation.reid_retrieval import ReIDRetrieval

    return ReIDRetrieval("reid", dict(image_size=(16, 8), batch_size=4), {"reid_dataset": dataset})


def test_eval_run_visualize_ranks_writes_pngs_and_index(tiny, tmp_path, monkeypatch):
    """eval.run(..., visualize_ranks=3) on a stand-in task, model and feature extractor (the
    real extraction is tested in test_reid_end_to_end): the ranking of the features run()
    scored (not extracted again), pictures and index beside the JSON."""
    import stra_jax.models
    import stra_jax.models.io
    import stra_jax.tasks
    from configs import reid_synthetic

    evaluator = _evaluator(tiny)
    calls = []
    fake = types.ModuleType("stra_jax.evaluation.features")  # the real one imports TensorFlow (~10 s)
    fake.extract_features = lambda *a, **kw: calls.append(1) or _mean_colour_features(*a, **kw)
    monkeypatch.setitem(sys.modules, "stra_jax.evaluation.features", fake)

    class Task:
        def load(self):
            return "tiny"

        def evaluators(self):
            return [evaluator]

    monkeypatch.setattr(stra_jax.tasks, "make_task", lambda config, workdir: Task())
    monkeypatch.setattr(stra_jax.models, "load_model", lambda d, expect_arch=None: (object(), VARIABLES))
    monkeypatch.setattr(stra_jax.models.io, "read_model_spec", lambda d: {})
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text("{}")
    eval_py = importlib.import_module("eval")
    config = reid_synthetic.get_config("smoke")
    payload = eval_py.run(config, str(model_dir), str(tmp_path / "res" / "eval.json"), visualize_ranks=3,
                          rank_worst=2, rank_random=1)
    assert len(calls) == 2  # query + gallery, once: write_rank_lists reused run()'s features
    out = tmp_path / "res" / "ranks_reid"
    index = json.loads((out / "ranks.json").read_text())
    assert index["mAP"] == pytest.approx(payload["metrics"]["reid/mAP"], abs=1e-9)
    assert [q["selection"] for q in index["queries"]] == ["worst", "worst", "random"]
    aps = [q["ap"] for q in index["queries"]]
    assert aps[0] <= aps[1] and aps[1] <= aps[2]
    for q in index["queries"]:
        assert (out / q["png"]).read_bytes()[:8] == PNG_MAGIC
        assert len(q["ranked"]) == 3 and [r["rank"] for r in q["ranked"]] == [1, 2, 3]
        assert not any(r["pid"] == q["pid"] and r["camid"] == q["camid"] for r in q["ranked"])
        assert [r["distance"] for r in q["ranked"]] == sorted(r["distance"] for r in q["ranked"])
        assert all(r["match"] == (r["pid"] == q["pid"]) for r in q["ranked"])
        # the camera shown and indexed is the file name's (1-based), camid the protocol's 0-based one
        assert all(f"_c{e['camera']}_" in Path(e["path"]).name and e["camera"] == e["camid"] + 1
                   for e in [q] + q["ranked"])
    assert sorted(p.name for p in out.iterdir()) == sorted([q["png"] for q in index["queries"]] + ["ranks.json"])

    class NotReID(Evaluator):
        name = "face"

        def run(self, model, variables, mesh=None):
            return {}

        def table(self, metrics):
            return ""

    evaluator = NotReID()
    with pytest.raises(ValueError, match="--visualize-ranks needs a ReID evaluator"):
        eval_py.run(config, str(model_dir), str(tmp_path / "e.json"), visualize_ranks=3)
