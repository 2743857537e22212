"""The classification task: top-k and cross-entropy against hand counts and a
NumPy loop, the ImageNet crops against hand-computed pixels, the folder-per-class
reader, and a tiny run end to end (train, best model, eval.py, a corrupt file).

Oracles are written here independently (hand counts, explicit loops, a linear
ramp whose bilinear resize is known in closed form)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import imagenet
from stra_jax.data.classification.dataset import Example, read_classification_folder
from stra_jax.data.classification.pipeline import (ClassAugment, augment, inception_crop, resize_center_crop,
                                                   train_dataset)
from stra_jax.data.images import IMAGENET_MEAN, IMAGENET_STD
from stra_jax.data.samplers import RandomSampler
from stra_jax.evaluation.classification import softmax_cross_entropy, topk_correct
from tests.helpers import REPO

COLOURS = {"blue": (20, 40, 230), "green": (30, 200, 40), "red": (220, 30, 30)}


def _write_image(path: Path, rgb=None, size=(32, 32), seed: int = 0) -> Path:
    """A (h, w) = ``size`` image: solid ``rgb``, or noise of ``seed``; format by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    if rgb is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        pixels = np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()
    Image.fromarray(pixels).save(path)
    return path


def _class_folder_set(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """ROOT/{train,val}/<colour>/*: each class one solid colour (PNG and JPEG mixed)."""
    for name, rgb in COLOURS.items():
        for i in range(train_per_class):
            _write_image(root / "train" / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}", rgb)
        for i in range(val_per_class):
            _write_image(root / "val" / name / f"v{i}.png", rgb)
    return root


# ---- metrics ----

# Six classes; the expected rank of each label counted by hand (ties count for the label).
LOGITS = np.array([
    [0.1, 0.5, 0.2, 0.9, 0.3, 0.0],   # label 3: highest                        -> rank 1
    [0.1, 0.5, 0.2, 0.9, 0.3, 0.0],   # label 1: only 0.9 above                  -> rank 2
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],   # label 0: five above                      -> rank 6
    [2.0, 2.0, 1.0, 0.0, 0.0, 0.0],   # label 1: tied with class 0 (lower index first) -> rank 2
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # label 5: all tied, five lower indices    -> rank 6
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],   # label 4: four above                      -> rank 5
], np.float32)
LABELS = np.array([3, 1, 0, 1, 5, 4])


@pytest.mark.parametrize("k, expected", [
    (1, [True, False, False, False, False, False]),
    (2, [True, True, False, True, False, False]),
    (5, [True, True, False, True, False, True]),
    (6, [True] * 6),
])
def test_topk_correct_against_hand_counts(k, expected):
    got = topk_correct(LOGITS, LABELS, k)
    assert got.shape == (6,) and got.dtype == bool and got.tolist() == expected


def test_top1_and_top5_accuracy_by_hand():
    assert topk_correct(LOGITS, LABELS, 1).mean() == pytest.approx(1 / 6)
    assert topk_correct(LOGITS, LABELS, 5).mean() == pytest.approx(4 / 6)


def test_topk_non_finite_logits_are_wrong():
    logits = np.full((2, 3), np.nan, np.float32)
    logits[1, 2] = 1.0
    assert topk_correct(logits, np.array([0, 2]), 3).tolist() == [False, True]


def test_softmax_cross_entropy_against_a_loop():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((7, 5)) * 3).astype(np.float32)
    logits[2] += 500.0  # a large offset: a naive exp would overflow; the loss must not change
    labels = rng.integers(0, 5, 7)
    total = 0.0
    for row, y in zip(logits.astype(np.float64), labels):
        top = max(row)
        norm = top + math.log(sum(math.exp(v - top) for v in row))
        total += norm - row[y]
    assert softmax_cross_entropy(logits, labels) == pytest.approx(total / 7, rel=1e-6)
    uniform = np.zeros((3, 4), np.float32)
    assert softmax_cross_entropy(uniform, np.array([0, 1, 3])) == pytest.approx(math.log(4))


# ---- the crops ----

def test_resize_center_crop_against_a_hand_computed_ramp():
    """(10, 20) -> cover (4, 4) / 0.5 = (8, 8): scale max(8/10, 8/20) = 0.8 -> (8, 16);
    central crop rows 2..5, cols 6..9. A linear ramp in x and y resizes exactly
    (half-pixel centres: output j samples input (j + 0.5) * in / out - 0.5)."""
    y, x = np.mgrid[0:10, 0:20].astype(np.float64)
    image = np.stack([0.01 * x + 0.05 * y + 0.2 * c for c in range(3)], axis=-1).astype(np.float32)
    out = resize_center_crop(tf.constant(image), (4, 4), crop_fraction=0.5).numpy()
    assert out.shape == (4, 4, 3)
    rows = [(i + 0.5) * 10 / 8 - 0.5 for i in (2, 3, 4, 5)]   # 2.625, 3.875, 5.125, 6.375
    cols = [(j + 0.5) * 20 / 16 - 0.5 for j in (6, 7, 8, 9)]  # 7.625, 8.875, 10.125, 11.375
    expected = np.array([[[0.01 * cx + 0.05 * ry + 0.2 * c for c in range(3)] for cx in cols] for ry in rows])
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resize_center_crop_portrait_shape():
    image = tf.zeros((300, 200, 3))
    assert tuple(resize_center_crop(image, (96, 48)).shape) == (96, 48, 3)
    assert tuple(resize_center_crop(tf.zeros((20, 90, 3)), (96, 48), crop_fraction=1.0).shape) == (96, 48, 3)


def _noise(h: int, w: int, seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (h, w, 3)).astype(np.float32))


def test_inception_crop_and_augment_shapes_ranges_and_seeds():
    image = _noise(40, 30)
    seed = tf.constant([3, 7], tf.int64)
    crop = inception_crop(image, seed, (16, 8))
    assert tuple(crop.shape) == (16, 8, 3)
    np.testing.assert_array_equal(crop.numpy(), inception_crop(image, seed, (16, 8)).numpy())
    assert not np.array_equal(crop.numpy(), inception_crop(image, tf.constant([4, 9], tf.int64), (16, 8)).numpy())

    lo = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    hi = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for cfg in (ClassAugment(), ClassAugment(crop="resize"), ClassAugment(flip=False)):
        for s in range(4):
            out = augment(image, tf.constant([s, 1], tf.int64), (16, 8), cfg).numpy()
            assert out.shape == (16, 8, 3)
            assert np.all(out >= lo - 1e-5) and np.all(out <= hi + 1e-5), (cfg, s)


def test_full_area_crop_at_the_outputs_aspect_is_a_plain_resize():
    image = _noise(40, 20, seed=1)  # aspect 1:2 as the (16, 8) output
    for s in range(3):
        crop = inception_crop(image, tf.constant([s, 0], tf.int64), (16, 8), area=(1.0, 1.0), aspect=(1.0, 1.0))
        np.testing.assert_allclose(crop.numpy(), tf.image.resize(image, (16, 8)).numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, key", [
    (dict(crop="foo"), "config.input.augment.crop='foo'"),
    (dict(area=(0.0, 1.0)), "config.input.augment.area"),
    (dict(aspect=(2.0, 1.0)), "config.input.augment.aspect"),
])
def test_class_augment_refuses_bad_settings(kwargs, key):
    with pytest.raises(ValueError, match=key.replace("(", r"\(").replace(".", r"\.")):
        ClassAugment(**kwargs)


# ---- the training pipeline ----

def test_train_dataset_is_deterministic_resumable_and_labelled_in_sampler_order(tmp_path):
    examples = [Example(str(_write_image(tmp_path / f"{i}.png", size=(12, 10), seed=i)), i % 3) for i in range(10)]
    kw = dict(global_batch=4, image_size=(8, 8), seed=5, epoch=2)

    def batches(**extra):
        return list(train_dataset(examples, **kw, **extra).as_numpy_iterator())

    full, again = batches(), batches()
    assert len(full) == 2 and full[0]["images"].shape == (4, 8, 8, 3) and full[0]["labels"].dtype == np.int32
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    resumed = batches(start_step=1)
    assert len(resumed) == 1
    np.testing.assert_array_equal(resumed[0]["images"], full[1]["images"])
    order = RandomSampler(10).epoch_order(4, 5, 2).ravel()
    labels = np.concatenate([b["labels"] for b in full])
    assert labels.tolist() == [examples[i].label for i in order]
    other = list(train_dataset(examples, **dict(kw, epoch=3)).as_numpy_iterator())
    assert not all(np.array_equal(a["images"], b["images"]) for a, b in zip(full, other))
    stream = batches(start_step=1, epochs=2)  # one pipeline for epochs 2 and 3
    assert len(stream) == 3
    for a, b in zip(stream, resumed + other):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])


# ---- the folder reader ----

def test_read_classification_folder_labels_and_skipped_files(tmp_path):
    for split, names in (("train", ("cat", "ant", "bee")), ("val", ("cat", "ant"))):
        for name in names:
            for i in range(2):
                _write_image(tmp_path / split / name / f"{i}.{'jpg' if i else 'png'}", size=(6, 5), seed=i)
    (tmp_path / "train" / "bee" / "notes.txt").write_text("not an image")
    ds = read_classification_folder(tmp_path)
    assert ds.class_names == ("ant", "bee", "cat") and ds.num_classes == 3
    assert [(Path(e.path).relative_to(tmp_path).as_posix(), e.label) for e in ds.train] == [
        ("train/ant/0.png", 0), ("train/ant/1.jpg", 0), ("train/bee/0.png", 1), ("train/bee/1.jpg", 1),
        ("train/cat/0.png", 2), ("train/cat/1.jpg", 2)]
    assert [(Path(e.path).parent.name, e.label) for e in ds.val] == [("ant", 0), ("ant", 0), ("cat", 2), ("cat", 2)]
    assert ds.skipped_files == 1 and "1 files that are not images" in ds.summary()
    assert "3 classes, 6 training and 4 validation images" in ds.summary()


def test_read_classification_folder_mistakes_name_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_classification_folder(missing)
    root = _class_folder_set(tmp_path / "set", 1, 1)
    _write_image(root / "val" / "dog" / "0.png")
    with pytest.raises(ValueError, match=f"{root / 'val' / 'dog'}: class 'dog' is not among"):
        read_classification_folder(root)
    (root / "val" / "dog" / "0.png").unlink()
    (root / "val" / "dog").rmdir()
    (root / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{root / 'train' / 'empty'}: class folder without images"):
        read_classification_folder(root)


# ---- the task end to end ----

def _folder_config(root: Path):
    config = imagenet.get_config("smoke")
    config.dataset.update(source="folder", name="folder", root=str(root))
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from stra_jax.training.loop import train_and_evaluate

    base = tmp_path_factory.mktemp("classification")
    root = _class_folder_set(base / "data")
    workdir = base / "run"
    config = _folder_config(root)
    final = train_and_evaluate(config, workdir)
    return config, workdir, final


def test_classification_run_writes_metrics_and_best_model(trained):
    _, workdir, final = trained
    saved = json.loads((workdir / "final_metrics.json").read_text())
    assert saved["val/num_images"] == 6 == final["val/num_images"]
    assert 0.0 <= saved["val/top1"] <= 1.0 and saved["val/top1"] == pytest.approx(final["val/top1"])
    assert saved["val/top5"] == 1.0  # 3 classes: the label is always among the top 5
    assert math.isfinite(saved["val/loss"])
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/val/top1" in r]
    assert len(evals) == 2  # every epoch (smoke: 2 epochs)
    spec = json.loads((workdir / "model_best" / "model.json").read_text())
    assert spec["kwargs"]["num_classes"] == 3
    best = spec["info"]["metrics"]["val/top1"]
    assert best == max(r["eval/val/top1"] for r in evals)  # the best by val/top1


def test_eval_on_the_workdir_reproduces_the_logged_top1(trained, tmp_path, capsys):
    """eval.py on the workdir (-> model_best) reproduces model_best's logged top-1;
    on model_last (in process: the same ``run``) the run's final top-1."""
    from stra_jax.tools.evaluate import run

    config, workdir, final = trained
    out = tmp_path / "best.json"
    proc = subprocess.run([sys.executable, "eval.py", "--config", "configs/imagenet.py:smoke",
                           "--config.dataset.source=folder", "--config.dataset.name=folder",
                           f"--config.dataset.root={config.dataset.root}", "--checkpoint", str(workdir),
                           "--output", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: differs" not in proc.stdout and "top1" in proc.stdout
    metrics = json.loads(out.read_text())["metrics"]
    logged = json.loads((workdir / "model_best" / "model.json").read_text())["info"]["metrics"]
    assert metrics["val/num_images"] == 6 and metrics["val/top1"] == pytest.approx(logged["val/top1"], abs=1e-6)

    run(config, str(workdir / "model_last"), str(tmp_path / "last.json"))
    last = json.loads((tmp_path / "last.json").read_text())["metrics"]
    assert last["val/top1"] == pytest.approx(final["val/top1"], abs=1e-6)
    assert last["val/loss"] == pytest.approx(final["val/loss"], rel=1e-5)
    assert "note: differs" not in capsys.readouterr().out


def test_corrupt_image_stops_the_run_naming_it(tmp_path):
    from stra_jax.training.loop import train_and_evaluate

    root = _class_folder_set(tmp_path / "data")
    bad = root / "train" / "green" / "zz_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 garbage, not a JPEG")
    with pytest.raises(ValueError, match=f"{bad}: corrupt or unreadable image"):
        train_and_evaluate(_folder_config(root), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing created


def test_preprocessing_and_eval_images(tmp_path):
    from stra_jax.tasks.classification import ClassificationTask

    config = imagenet.get_config("smoke")
    assert "0.875" in ClassificationTask.preprocessing(config)["resize"]
    config.evals.val.crop_fraction = 0.5
    info = ClassificationTask.preprocessing(config)
    assert "0.5" in info["resize"] and info["mean"] == list(IMAGENET_MEAN) and info["std"] == list(IMAGENET_STD)
    paths = [_write_image(tmp_path / f"{i}.png", size=(30 + 5 * i, 20), seed=i) for i in range(3)]
    inputs, shown = ClassificationTask.eval_images(config, paths, (16, 8))
    assert inputs.shape == shown.shape == (3, 16, 8, 3)
    assert shown.min() >= 0.0 and shown.max() <= 1.0
