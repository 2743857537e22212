"""TFDS builders of the ReID sets and the TFDS source: built from generated folders in
each real layout, read back with tfds.load, and equal to the folder source (records,
pixels, batches, metrics)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tensorflow as tf

from stra_jax.data.reid.pipeline import Augment, eval_dataset, train_dataset
from stra_jax.data.reid import read_dataset
from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout
from stra_jax.data.tfds import build_reid_tfds, load_reid_tfds
from stra_jax.evaluation.evaluators import scalars
from stra_jax.evaluation.reid_retrieval import ReIDRetrieval
from stra_jax.models import create_model
from stra_jax.models.io import init_variables
from stra_jax.tools import build_tfds
from tests.test_reid_data import _cuhk03, _market, _msmt17

REPO = Path(__file__).resolve().parents[1]
SMOKE = SyntheticSpec(num_ids=12, images_per_id=6, height=64, width=32)
tfds.disable_progress_bar()


def _relative(dataset, split):
    return [(os.path.relpath(r.path, dataset.root), r.pid, r.camid) for r in getattr(dataset, split)]


def _same_records(folder, tfds_set):
    for split in ("train", "query", "gallery"):
        assert [(r.path, r.pid, r.camid) for r in getattr(tfds_set, split)] == _relative(folder, split), split


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    base = tmp_path_factory.mktemp("tfds")
    root = generate_market_layout(base / "synthetic", SMOKE)
    build_reid_tfds("synthetic_reid", root, base / "data")
    return read_dataset("synthetic", root), load_reid_tfds("synthetic", base / "data"), base / "data"


def test_synthetic_build_reads_back_with_tfds_load(synthetic):
    folder, from_tfds, data_dir = synthetic
    _same_records(folder, from_tfds)
    query = tfds.load("synthetic_reid", split="query", data_dir=str(data_dir), shuffle_files=False)
    examples = list(query.as_numpy_iterator())
    assert len(examples) == len(folder.query)
    for example, record in zip(examples, folder.query):
        decoded = tf.io.decode_image(tf.io.read_file(record.path), channels=3).numpy()  # the folder source's
        np.testing.assert_array_equal(example["image"], decoded)  # same pixels (the bytes are stored as read)
        assert (int(example["pid"]), int(example["camid"])) == (record.pid, record.camid)
    assert from_tfds.root.startswith("tfds:") and set(from_tfds.images) == {
        r.path for s in ("train", "query", "gallery") for r in getattr(from_tfds, s)}


def test_tfds_and_folder_give_the_same_batches(synthetic):
    folder, from_tfds, _ = synthetic
    kw = dict(global_batch=8, image_size=(32, 16), seed=3, epoch=1, start_step=1, augmentation=Augment())
    a = list(train_dataset(folder.train, **kw).as_numpy_iterator())
    b = list(train_dataset(from_tfds.train, images=from_tfds.images, **kw).as_numpy_iterator())
    assert len(a) == len(b) >= 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["images"], y["images"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    e1 = list(eval_dataset([r.path for r in folder.gallery], batch_size=8, image_size=(32, 16)).as_numpy_iterator())
    e2 = list(eval_dataset([r.path for r in from_tfds.gallery], batch_size=8, image_size=(32, 16),
                           images=from_tfds.images).as_numpy_iterator())
    for x, y in zip(e1, e2, strict=True):
        np.testing.assert_array_equal(x["images"], y["images"])
        np.testing.assert_array_equal(x["valid"], y["valid"])


def test_tfds_and_folder_give_the_same_metrics(synthetic, tmp_path):
    folder, from_tfds, _ = synthetic
    model = create_model("stra_resnet50", num_classes=6, width=8, stage_sizes=(1, 1, 1, 1))
    variables = init_variables(model, jax.random.key(0))
    settings = dict(batch_size=8, image_size=(32, 16))
    results = [ReIDRetrieval("reid", settings, {"reid_dataset": d}).run(model, variables) for d in (folder, from_tfds)]
    for r in results:
        r.pop("extract_seconds")
    assert results[0] == results[1] and 0 < results[0]["mAP"] <= 100
    # The ranked lists draw TFDS-held images from memory.
    evaluator = ReIDRetrieval("reid", settings, {"reid_dataset": from_tfds})
    written = evaluator.write_rank_lists(model, variables, tmp_path, k=3, num_worst=1, num_random=1)
    assert len(written) == 3 and json.loads(written[-1].read_text())["queries"][0]["path"].startswith("query/")


def test_a_build_of_another_synthetic_spec_is_refused_and_nothing_generated(synthetic, tmp_path):
    """config.dataset.data_dir holding the smoke set: the smoke config uses it
    (generating nothing in its workdir); the full config is refused, naming the
    differing spec fields; a build without a recorded spec is refused too."""
    from configs import reid_synthetic
    from stra_jax.tasks import make_task
    from stra_jax.utils import ConfigError

    _, _, data_dir = synthetic

    def task(variant, workdir):
        config = reid_synthetic.get_config(variant)
        config.dataset.update(source="tfds", data_dir=str(data_dir))
        return make_task(config, workdir)

    assert "read from TFDS" in task("smoke", tmp_path / "smoke").load()
    assert not (tmp_path / "smoke").exists()
    with pytest.raises(ConfigError, match=r"built from another synthetic_reid spec than this config's "
                                          r"config.dataset.synthetic \(.*num_ids: 12 built vs 40 requested"):
        task(None, tmp_path / "full").load()
    assert not (tmp_path / "full").exists()
    recorded = Path(tfds.builder("synthetic_reid", data_dir=str(data_dir)).data_dir) / "generated_spec.json"
    recorded.rename(recorded.with_suffix(".moved"))
    try:
        with pytest.raises(ConfigError, match="records no generator spec"):
            task("smoke", tmp_path / "smoke").load()
    finally:
        recorded.with_suffix(".moved").rename(recorded)


@pytest.mark.parametrize("name, config_name, make, reader", [
    ("market1501", "market1501", lambda root: _market(root), "market1501"),
    ("dukemtmc_reid", "dukemtmcreid", lambda root: _market(root, cams=8), "dukemtmcreid"),
    ("cuhk03_np/detected", "cuhk03_detected", lambda root: _cuhk03(root, "detected"), "cuhk03_detected"),
    ("cuhk03_np/labeled", "cuhk03_labeled", lambda root: _cuhk03(root, "labeled"), "cuhk03_labeled"),
    ("msmt17", "msmt17", _msmt17, "msmt17"),
])
def test_each_layout_builds_and_matches_its_reader(tmp_path, name, config_name, make, reader):
    root = make(tmp_path / "extracted")
    assert build_tfds.main([name,
                            "--manual_dir", str(root), "--data_dir", str(tmp_path / "data")]) == 0
    _same_records(read_dataset(reader, root), load_reid_tfds(config_name, tmp_path / "data"))


def test_bad_manual_dir_names_path_and_layout_and_leaves_nothing(tmp_path, capsys):
    data = tmp_path / "data"
    assert build_tfds.main(["market1501", "--manual_dir", str(tmp_path / "absent"), "--data_dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "absent") in err and "bounding_box_train" in err
    wrong = tmp_path / "wrong"
    (wrong / "query").mkdir(parents=True)
    assert build_tfds.main(["market1501", "--manual_dir", str(wrong), "--data_dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"manual_dir {wrong} is not the expected layout" in err and "bounding_box_train" in err
    assert not (data / "market1501").exists()
    root = _market(tmp_path / "m")
    (root / "query" / "0003_c1s1_000001_00.jpg").write_bytes(b"not a jpeg")
    assert build_tfds.main(["market1501", "--manual_dir", str(root), "--data_dir", str(data)]) == 1
    assert "0003_c1s1_000001_00.jpg" in capsys.readouterr().err and not (data / "market1501").exists()
    assert build_tfds.main(["market", "--manual_dir", str(root)]) == 1
    err = capsys.readouterr().err
    assert "unknown dataset 'market'" in err and "face_recordio/ms1m" in err and "synthetic_faces" in err
    # A mistyped --manual_dir of the synthetic set is an error, not a newly generated set.
    for name in ("synthetic_reid", "synthetic_faces"):
        assert build_tfds.main([name, "--manual_dir", str(tmp_path / "synthetc"), "--data_dir", str(data)]) == 1
        line = capsys.readouterr().err.strip()
        assert line == (f"error: --manual_dir {tmp_path / 'synthetc'}: no such folder; give the folder the {name} "
                        "set was generated into, or add --generate to generate it there"), line
    assert not (tmp_path / "synthetc").exists() and not (data / "synthetic_reid").exists()
    with pytest.raises(SystemExit):
        build_tfds.main(["--help"])
    shown = capsys.readouterr().out
    assert all(n in shown for n in ("market1501", "cuhk03_np/labeled", "face_verification/ms1m", "synthetic_faces"))
    with pytest.raises(FileNotFoundError, match="build_tfds market1501 --manual_dir"):
        load_reid_tfds("market1501", data)
    with pytest.raises(ValueError, match="has no TFDS builder"):
        load_reid_tfds("csv", data)


def test_train_with_tfds_source_then_eval_with_folder_source(tmp_path):
    """One smoke epoch from TFDS (the synthetic set built automatically); eval.py with the
    folder source on the same model gives exactly the metrics training logged."""
    workdir = tmp_path / "run"
    common = ["--config.train.epochs=1"]
    run = subprocess.run([sys.executable, "train.py", "--config", "configs/reid_synthetic.py:smoke", "--workdir",
                          str(workdir), "--config.dataset.source=tfds", *common],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "read from TFDS" in run.stdout and (workdir / "data" / "tfds" / "synthetic_reid").is_dir()
    # TFDS's progress bars (which draw "Generating splits..." and "examples/s" when on) stay out of the log
    assert "Generating splits" not in run.stderr and "examples/s" not in run.stderr
    logged = json.loads((workdir / "final_metrics.json").read_text())
    out = tmp_path / "eval.json"
    ev = subprocess.run([sys.executable, "eval.py", "--config", "configs/reid_synthetic.py:smoke", "--checkpoint",
                         str(workdir), "--output", str(out), "--override_config"],  # the run's source was tfds
                        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "differs from what training logged" not in ev.stdout
    evaluated = scalars(json.loads(out.read_text())["metrics"])
    assert 0 < logged["reid/mAP"] <= 100
    for key in ("reid/mAP", "reid/rank1", "reid/mINP"):
        assert evaluated[key] == pytest.approx(logged[key], abs=1e-6), key
