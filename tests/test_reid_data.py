"""ReID readers on generated folders in the real layouts, and the tf.data pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from stra_jax.data.reid.pipeline import Augment, check_images, eval_dataset, train_dataset
from stra_jax.data.reid import read_cuhk03, read_dataset, read_dukemtmc, read_market1501, read_msmt17
from stra_jax.data.reid.common import Record


def _jpg(path: Path, seed: int = 0, size=(16, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _market(root: Path, cams=6) -> Path:
    names = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_076119_02.jpg",
                               "0010_c6s1_001234_01.jpg"],
        "query": ["0003_c1s1_000001_00.jpg", "0005_c2s1_000002_00.jpg"],
        "bounding_box_test": ["0003_c2s1_000011_01.jpg", "0003_c1s1_000011_02.jpg", "0005_c4s1_000003_01.jpg",
                              "0000_c1s1_000100_01.jpg", "0000_c5s2_000200_03.jpg",  # distractors: kept
                              "-1_c1s1_000003_02.jpg", "-1_c3s1_000004_01.jpg"],  # junk: dropped
    }
    if cams == 8:
        names["bounding_box_test"].append(f"0005_c{cams}s1_000009_01.jpg")
    for folder, files in names.items():
        for i, name in enumerate(files):
            _jpg(root / folder / name, seed=i)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00junk")
    (root / "query" / "readme.txt").write_text("not an image")
    return root


def test_market1501_counts_junk_distractors_relabel(tmp_path):
    ds = read_market1501(_market(tmp_path / "Market-1501-v15.09.15").parent)  # parent folder works too
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 2, 5)
    assert sorted(r.pid for r in ds.train) == [0, 0, 1, 2]  # 2, 7, 10 relabelled
    assert ds.num_train_pids == 3 and ds.num_train_cams == 4
    assert sorted(r.pid for r in ds.gallery) == [0, 0, 3, 3, 5]
    assert {r.camid for r in ds.query} == {0, 1}  # cameras are 0-based
    assert not any(Path(r.path).name.startswith("-1") for r in ds.gallery)
    assert "market1501" in ds.summary()


def test_duke_allows_eight_cameras_market_does_not(tmp_path):
    root = _market(tmp_path / "duke", cams=8)
    assert max(r.camid for r in read_dukemtmc(root).gallery) == 7
    with pytest.raises(ValueError, match=r"0005_c8s1_000009_01\.jpg: pid 5 / camera 8 out of range"):
        read_market1501(root)


@pytest.mark.parametrize("mutate,error,fragment", [
    (lambda r: _jpg(r / "query" / "badname.jpg"), ValueError, "badname.jpg: file name does not follow"),
    (lambda r: __import__("shutil").rmtree(r / "query"), FileNotFoundError, "query: folder not found"),
    (lambda r: [p.unlink() for p in (r / "query").glob("*.jpg")], ValueError, "the query split is empty"),
    (lambda r: [p.rename(p.with_name(p.name.replace("0003_", "0099_").replace("0005_", "0098_")))
                for p in (r / "query").glob("*.jpg")], ValueError, "no query identity appears in the gallery"),
])
def test_market_bad_layouts(tmp_path, mutate, error, fragment):
    root = _market(tmp_path / "m")
    mutate(root)
    with pytest.raises(error, match=fragment):
        read_market1501(root)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'market'"):
        read_dataset("market", "/nowhere")


def _cuhk03(root: Path, subset: str) -> Path:
    names, labels, cams = [], [], []
    for pid in range(1, 7):
        for cam in (1, 2):
            for img in (1, 2):
                names.append(f"1_{pid:03d}_{cam}_{img:02d}.png")
                labels.append(pid)
                cams.append(cam)
    for i, name in enumerate(names):
        path = root / f"images_{subset}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 10, 3), i, np.uint8)).save(path)
    idx = np.arange(1, len(names) + 1)  # MATLAB 1-based; pids 1-3 train, 4-6 test
    train = idx[:12]
    query = idx[12:][np.array(cams[12:]) == 1][::2]
    gallery = np.setdiff1d(idx[12:], query)
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = names
    scipy.io.savemat(root / f"cuhk03_new_protocol_config_{subset}.mat", {
        "filelist": cell, "labels": np.array(labels)[:, None], "camId": np.array(cams)[:, None],
        "train_idx": train[:, None], "query_idx": query[:, None], "gallery_idx": gallery[:, None]})
    return root


@pytest.mark.parametrize("subset", ["detected", "labeled"])
def test_cuhk03_new_protocol(tmp_path, subset):
    ds = read_cuhk03(_cuhk03(tmp_path / "cuhk03", subset).parent, subset)  # torchreid's cuhk03/ subdir
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (12, 3, 9)
    assert sorted({r.pid for r in ds.train}) == [0, 1, 2]
    assert {r.pid for r in ds.query} == {4, 5, 6} and {r.camid for r in ds.query} == {0}
    assert Path(ds.query[0].path).name == "1_004_1_01.png"


def test_cuhk03_missing_image_and_config(tmp_path):
    root = _cuhk03(tmp_path / "c", "detected")
    (root / "images_detected" / "1_002_2_01.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 images named in cuhk03_new_protocol_config_detected.mat"):
        read_cuhk03(root, "detected")
    with pytest.raises(FileNotFoundError, match="cuhk03_new_protocol_config_labeled.mat: not found"):
        read_cuhk03(root, "labeled")


def _msmt17(root: Path) -> Path:
    base = root / "MSMT17_V1"
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    for pid in range(4):
        for k, cam in enumerate((1, 4, 15)):
            rel = f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{k:04d}_0.jpg"
            split, folder = (("train", "train") if pid < 2 else ("query" if k == 0 else "gallery", "test"))
            if pid == 1 and k == 2:
                split = "val"
            _jpg(base / folder / rel, seed=pid * 3 + k)
            lists[split].append(f"{rel} {pid if folder == 'train' else pid + 10}")
    for split, lines in lists.items():
        (base / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_msmt17_lists(tmp_path):
    root = _msmt17(tmp_path)
    ds = read_msmt17(root)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (5, 2, 4)
    assert {r.camid for r in ds.train} == {0, 3, 14}
    assert len(read_msmt17(root, use_val=True).train) == 6
    with open(root / "MSMT17_V1" / "list_query.txt", "a") as f:
        f.write("garbage_line\n")
    with pytest.raises(ValueError, match=r"list_query.txt:3: 'garbage_line'"):
        read_msmt17(root)


def _records(tmp_path, n=12):
    recs = []
    for i in range(n):
        path = tmp_path / f"{i:04d}_c1s1_000000_00.jpg"
        _jpg(path, seed=i, size=(24, 48))
        recs.append(Record(str(path), i % 3, 0))
    return recs


def _batches(ds):
    return [{k: np.asarray(v) for k, v in b.items()} for b in ds.as_numpy_iterator()]


def test_train_pipeline_is_deterministic_resumable_and_host_split(tmp_path):
    recs = _records(tmp_path)
    kw = dict(global_batch=4, image_size=(32, 16), seed=3, epoch=1)
    full = _batches(train_dataset(recs, **kw))
    assert len(full) == 3 and full[0]["images"].shape == (4, 32, 16, 3)
    again = _batches(train_dataset(recs, **kw))
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["images"], b["images"])
    resumed = _batches(train_dataset(recs, start_step=2, **kw))
    np.testing.assert_array_equal(resumed[0]["images"], full[2]["images"])
    hosts = [_batches(train_dataset(recs, process_index=p, process_count=2, **kw)) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([hosts[0][1]["images"], hosts[1][1]["images"]]),
                                  full[1]["images"])
    other_epoch = _batches(train_dataset(recs, **{**kw, "epoch": 2}))
    assert not np.array_equal(other_epoch[0]["labels"], full[0]["labels"]) or not np.array_equal(
        other_epoch[0]["images"], full[0]["images"])


def test_one_pipeline_for_many_epochs_gives_each_epochs_own_batches(tmp_path):
    recs = _records(tmp_path)
    kw = dict(global_batch=4, image_size=(32, 16), seed=3, process_index=1, process_count=2)
    stream = _batches(train_dataset(recs, epoch=1, start_step=1, epochs=3, **kw))
    separate = (_batches(train_dataset(recs, epoch=1, start_step=1, **kw)) + _batches(train_dataset(recs, epoch=2, **kw))
                + _batches(train_dataset(recs, epoch=3, **kw)))
    assert len(stream) == len(separate) == 2 + 3 + 3
    for a, b in zip(stream, separate):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    with pytest.raises(ValueError, match="epochs=0"):
        train_dataset(recs, epochs=0, **kw)


def test_augmentation_flip_crop_and_erasing(tmp_path):
    recs = _records(tmp_path, n=8)
    plain = _batches(train_dataset(recs, global_batch=8, image_size=(32, 16), augmentation=Augment(
        flip=False, pad=0, erase_prob=0.0)))[0]["images"]
    # Without augmentation: the ImageNet-normalised image (files are 24x48; check one
    # written at exactly the target size so that resizing is the identity).
    exact = tmp_path / "exact.png"  # lossless: JPEG decoders differ by a few levels
    _jpg(exact, seed=99, size=(16, 32))
    one = _batches(train_dataset([Record(str(exact), 0, 0)], global_batch=1, image_size=(32, 16),
                                 augmentation=Augment(flip=False, pad=0, erase_prob=0.0)))[0]["images"][0]
    pixels = np.asarray(Image.open(exact).convert("RGB"), np.float32) / 255.0
    expected = (pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(one, expected, atol=1e-5)
    erased = _batches(train_dataset(recs, global_batch=8, image_size=(32, 16), augmentation=Augment(
        flip=False, pad=0, erase_prob=1.0)))[0]["images"]
    zero_frac = (np.abs(erased).sum(-1) == 0).mean(axis=(1, 2))
    assert np.all((zero_frac >= 0.02 * 0.5) & (zero_frac <= 0.45)), zero_frac
    np.testing.assert_array_equal(erased[np.abs(erased).sum(-1) != 0], plain[np.abs(erased).sum(-1) != 0])
    flipped = _batches(train_dataset(recs, global_batch=8, image_size=(32, 16), augmentation=Augment(
        flip=True, pad=0, erase_prob=0.0)))[0]["images"]
    same = [np.allclose(f, p) for f, p in zip(flipped, plain)]
    mirrored = [np.allclose(f, p[:, ::-1]) for f, p in zip(flipped, plain)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(mirrored) and any(same)
    padded = _batches(train_dataset(recs, global_batch=8, image_size=(32, 16), augmentation=Augment(
        flip=False, pad=4, erase_prob=0.0)))[0]["images"]
    assert padded.shape == plain.shape and not np.allclose(padded, plain)


def test_eval_pipeline_pads_last_batch(tmp_path):
    recs = _records(tmp_path, n=5)
    batches = _batches(eval_dataset([r.path for r in recs], batch_size=4, image_size=(32, 16)))
    assert [b["images"].shape[0] for b in batches] == [4, 4]
    assert batches[1]["valid"].tolist() == [True, False, False, False]


def test_corrupt_image_named_or_skipped(tmp_path):
    recs = _records(tmp_path, n=3)
    Path(recs[1].path).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=f"{Path(recs[1].path).name}: corrupt or unreadable image"):
        check_images(recs)
    kept, skipped = check_images(recs, skip_corrupt=True)
    assert len(kept) == 2 and skipped == [recs[1].path]


def test_input_threads_leave_the_cores_to_the_step_on_a_cpu_backend(monkeypatch):
    """On a CPU-only backend a pipeline gets a quarter of the cores (at least 1),
    not tf.data's thread per core; STRA_JAX_INPUT_THREADS overrides, 0 = tf.data's own."""
    import os

    import tensorflow as tf

    from stra_jax.data import iterate

    monkeypatch.delenv(iterate.INPUT_THREADS_ENV, raising=False)
    assert iterate.input_threads() == max(1, (os.cpu_count() or 1) // 4)  # the suite runs on CPU
    ds = iterate.with_input_threads(tf.data.Dataset.range(6).batch(2))
    assert ds.options().threading.private_threadpool_size == iterate.input_threads()
    assert [b.tolist() for b in iterate.numpy_iterator(ds, (), str)] == [[0, 1], [2, 3], [4, 5]]
    monkeypatch.setenv(iterate.INPUT_THREADS_ENV, "3")
    assert iterate.input_threads() == 3
    monkeypatch.setenv(iterate.INPUT_THREADS_ENV, "0")
    assert iterate.input_threads() is None
    plain = tf.data.Dataset.range(2)
    assert iterate.with_input_threads(plain) is plain
    monkeypatch.setenv(iterate.INPUT_THREADS_ENV, "many")
    with pytest.raises(ValueError, match="STRA_JAX_INPUT_THREADS='many': expected an integer >= 0"):
        iterate.input_threads()
