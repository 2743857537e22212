"""Face datasets (insightface folder layout, image folders) and the face tf.data
pipeline: order, resume, host slices, normalisation, flip, named bad records."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stra_jax.data.face import write_face_recordio, write_verification_bin
from stra_jax.data.face.dataset import prepare_face_dataset
from stra_jax.data.face.pipeline import numpy_train_batches, verification_batches


def _png(value: int, size: int = 8, stripe: bool = True) -> bytes:
    """A lossless image whose pixels encode ``value`` (left half) and 0 (right
    half, when ``stripe``), so flips and normalisation are exact to check."""
    pixels = np.full((size, size, 3), value, np.uint8)
    if stripe:
        pixels[:, size // 2:] = 0
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _recordio_root(tmp_path, n_ids=4, per_id=3, header=True):
    root = tmp_path / "faces"
    root.mkdir()
    items = [(_png(5 + (10 * i) % 250), i // per_id) for i in range(n_ids * per_id)]
    write_face_recordio(root / "train.rec", items, identity_header=header)
    write_verification_bin(root / "lfw.bin", [_png(1), _png(2)], [True])
    write_verification_bin(root / "cfp_fp.bin", [_png(3), _png(4)], [False])
    return root, items


@pytest.mark.parametrize("header", [True, False])
def test_recordio_dataset_reads_labels_and_bins(tmp_path, header):
    root, items = _recordio_root(tmp_path, header=header)
    ds = prepare_face_dataset("recordio", root)
    assert len(ds.train) == 12 and ds.train.num_classes == 4
    assert [ds.train.read(i) for i in range(12)] == [(im, lab) for im, lab in items]
    assert sorted(ds.verification) == ["cfp_fp", "lfw"]
    assert "12 training images of 4 identities" in ds.summary()
    with pytest.raises(FileNotFoundError, match=r"no verification set\(s\) \['agedb_30'\].*found \['cfp_fp', 'lfw'\]"):
        prepare_face_dataset("recordio", root, verification=("agedb_30",))


def test_folder_dataset_and_missing_layout(tmp_path):
    for name, values in {"bob": [1, 2], "alice": [3]}.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for v in values:
            (tmp_path / "train" / name / f"{v}.png").write_bytes(_png(v))
    ds = prepare_face_dataset("folder", tmp_path)
    assert ds.train.num_classes == 2 and len(ds.train) == 3
    assert ds.train.read(0) == (_png(3), 0)  # alice sorts first
    with pytest.raises(FileNotFoundError, match=r"train.rec: no such file \(expected insightface's layout"):
        prepare_face_dataset("recordio", tmp_path)
    with pytest.raises(ValueError, match=r"unknown face dataset 'lfw'.*folder, recordio, synthetic_faces"):
        prepare_face_dataset("lfw", tmp_path)


def _batches(train, **kw):
    args = dict(global_batch=4, image_size=(8, 8), seed=3, epoch=1, flip=False)
    return list(numpy_train_batches(train, **{**args, **kw}))


def test_pipeline_order_resume_hosts_and_normalisation(tmp_path):
    root, items = _recordio_root(tmp_path)
    train = prepare_face_dataset("recordio", root).train
    full = _batches(train)
    assert len(full) == 3 and full[0]["images"].shape == (4, 8, 8, 3) and full[0]["images"].dtype == np.float32
    # Values encode the record: (10 i + 5 - 127.5) / 128 on the left half, -127.5/128 on the right.
    for batch in full:
        index = np.round((batch["images"][:, 0, 0, 0] * 128 + 127.5 - 5) / 10).astype(int)
        np.testing.assert_array_equal(batch["labels"], [items[i][1] for i in index])
        np.testing.assert_allclose(batch["images"][:, :, 4:], -127.5 / 128)
    seen = np.concatenate([np.round((b["images"][:, 0, 0, 0] * 128 + 127.5 - 5) / 10) for b in full])
    assert sorted(seen.astype(int)) == list(range(12))  # an epoch is a permutation
    # Another epoch, another order; the same epoch again, the same one.
    assert not np.array_equal(_batches(train, epoch=2)[0]["labels"], full[0]["labels"]) or \
        not np.array_equal(_batches(train, epoch=2)[0]["images"], full[0]["images"])
    np.testing.assert_array_equal(_batches(train)[1]["images"], full[1]["images"])
    # Resume at step 1 = the same batches from the second on.
    resumed = _batches(train, start_step=1)
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0]["images"], full[1]["images"])
    # Two hosts: their halves, concatenated, are the global batch.
    halves = [_batches(train, process_index=p, process_count=2) for p in (0, 1)]
    for step in range(3):
        np.testing.assert_array_equal(np.concatenate([halves[0][step]["images"], halves[1][step]["images"]]),
                                      full[step]["images"])
    # One pipeline for epochs 1-3 from step 1: the per-epoch pipelines' batches, in order.
    stream = _batches(train, start_step=1, epochs=3, flip=True)
    separate = (_batches(train, start_step=1, flip=True) + _batches(train, epoch=2, flip=True)
                + _batches(train, epoch=3, flip=True))
    assert len(stream) == len(separate) == 8
    for a, b in zip(stream, separate):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])


def test_flip_is_per_example_and_deterministic(tmp_path):
    root, _ = _recordio_root(tmp_path, n_ids=8, per_id=4)
    train = prepare_face_dataset("recordio", root).train
    a = _batches(train, flip=True, global_batch=16)
    b = _batches(train, flip=True, global_batch=16)
    np.testing.assert_array_equal(a[0]["images"], b[0]["images"])
    flipped = a[0]["images"][:, 0, -1, 0] != -127.5 / 128  # the bright half moved to the right
    assert 0 < flipped.sum() < 16


def test_bad_record_is_named_with_offset(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    items = [(_png(i), i % 2) for i in range(4)]
    items = sorted(items, key=lambda t: t[1])
    items[2] = (b"\x89PNG not really", items[2][1])
    write_face_recordio(root / "train.rec", items)
    train = prepare_face_dataset("recordio", root).train
    with pytest.raises(ValueError, match=r"train.rec record 3 \(byte offset \d+\): undecodable image"):
        _batches(train, global_batch=4)


def test_verification_batches_pad_and_resize(tmp_path):
    images = [_png(v, size=16, stripe=False) for v in (0, 128, 255)]
    batches = list(verification_batches(images, batch_size=2, image_size=(8, 8)))
    assert [b.shape for b in batches] == [(2, 8, 8, 3), (2, 8, 8, 3)]
    np.testing.assert_allclose(batches[0][1], (128 - 127.5) / 128, atol=1e-6)
    np.testing.assert_allclose(batches[1][0], (255 - 127.5) / 128, atol=1e-6)
    np.testing.assert_allclose(batches[1][1], -127.5 / 128, atol=1e-6)  # padding: the first image again
