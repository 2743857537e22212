"""TFDS builds of insightface's face sets (``stra_jax.data.tfds.face``): the
smoke synthetic set built into ``face_recordio/synthetic_faces`` (ArrayRecord) and
``face_verification/synthetic_faces``, read back through TFDS, equal to the RecordIO
and ``.bin`` readers example for example; the face task from TFDS gives the
same batches and the same verification metrics as from the folder; bad
``manual_dir`` messages; a failed build leaves nothing behind."""
from __future__ import annotations

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from configs import face_synthetic
from stra_jax.data.face import write_verification_bin
from stra_jax.data.face.dataset import RecordIOTrainSet
from stra_jax.data.face.synthetic import FaceSyntheticSpec, generate_face_set
from stra_jax.data.face.verification_bin import read_verification_bin
from stra_jax.data.tfds.face import (FACE_SETS, build_face_tfds, face_tfds_names, load_face_train,
                                     load_face_verification, tfds_config_for)
from stra_jax.evaluation.evaluators import run_evaluators
from stra_jax.tasks.face import FaceTask

tfds.disable_progress_bar()
SMOKE_SPEC = dict(face_synthetic.get_config("smoke").dataset.synthetic)
SKIP = tfds.decode.SkipDecoding()


class ToyFaceNet(nn.Module):
    """embedding = W . flattened image, plus a classifier (as test_face_evaluator)."""

    num_classes: int = 0

    @nn.compact
    def __call__(self, images, *, train, frozen=()):
        embedding = nn.Dense(6, use_bias=False, name="embed")(images.reshape(images.shape[0], -1))
        out = {"features": embedding, "embedding": embedding}
        if self.num_classes:
            out["class_weights"] = self.param("classifier", nn.initializers.normal(0.01), (6, self.num_classes))
        return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(insightface folder, TFDS data_dir) of the smoke synthetic set, both builders built."""
    base = tmp_path_factory.mktemp("tfds_face")
    root = generate_face_set(base / "faces", FaceSyntheticSpec(**SMOKE_SPEC))
    data_dir = base / "tfds"
    builders = build_face_tfds("synthetic_faces", root, data_dir)
    assert [f"{b.name}/{b.builder_config.name}" for b in builders] == ["face_recordio/synthetic_faces",
                                                                         "face_verification/synthetic_faces"]
    return root, data_dir


def test_train_split_reads_back_as_the_recordio_set(built):
    root, data_dir = built
    recordio = RecordIOTrainSet(root / "train.rec")
    source = tfds.data_source("face_recordio/synthetic_faces", split="train", data_dir=str(data_dir),
                              decoders={"image": SKIP})
    assert len(source) == len(recordio) == 36
    for i in range(len(recordio)):  # every example: bytes unchanged, same label, same order
        image, label = recordio.read(i)
        assert source[i]["image"] == image and source[i]["label"] == label
    train = load_face_train("synthetic_faces", data_dir)
    assert train.num_classes == recordio.num_classes == 6 and len(train) == 36
    assert [train.read(i) for i in range(36)] == [recordio.read(i) for i in range(36)]
    assert "train example 5" in train.describe(5) and train.source.startswith("tfds:")
    order = np.random.default_rng(0).permutation(36)
    ahead = train.in_order(order, chunk=7)  # chunked read-ahead, then an off-plan read
    assert [ahead.read(int(i)) for i in order] == [recordio.read(int(i)) for i in order]
    assert ahead.read(3) == recordio.read(3)
    # Decoded by TFDS = decoded from the RecordIO bytes. A data source decodes with
    # PIL (NumPy mode), whose JPEG decoder differs from TensorFlow's by a few grey
    # levels: the project reads the bytes (SkipDecoding) and decodes them with TF.
    decoded = tfds.data_source("face_recordio/synthetic_faces", split="train", data_dir=str(data_dir))
    feature = tfds.builder("face_recordio/synthetic_faces", data_dir=str(data_dir)).info.features["image"]
    for i in (0, 17, 35):
        encoded = recordio.read(i)[0]
        with Image.open(io.BytesIO(encoded)) as im:
            np.testing.assert_array_equal(decoded[i]["image"], np.asarray(im.convert("RGB")))
        np.testing.assert_array_equal(feature.decode_example(tf.constant(source[i]["image"])).numpy(),
                                      tf.io.decode_image(encoded).numpy())


def test_verification_splits_read_back_as_the_bins(built):
    root, data_dir = built
    bins = {p.stem: read_verification_bin(p) for p in sorted(root.glob("*.bin"))}
    builder = tfds.builder("face_verification/synthetic_faces", data_dir=str(data_dir))
    assert sorted(builder.info.splits) == sorted(bins) == ["synthetic_cfp", "synthetic_lfw"]
    for name, (images, issame) in bins.items():
        ds = tfds.load("face_verification/synthetic_faces", split=name, data_dir=str(data_dir), shuffle_files=False,
                       decoders={"image1": SKIP, "image2": SKIP})
        pairs = list(ds.as_numpy_iterator())
        assert [p["image1"] for p in pairs] == images[0::2] and [p["image2"] for p in pairs] == images[1::2]
        assert [bool(p["is_same"]) for p in pairs] == issame.tolist()
    decoded = next(iter(tfds.load("face_verification/synthetic_faces", split="synthetic_lfw", data_dir=str(data_dir))))
    np.testing.assert_array_equal(decoded["image2"].numpy(), tf.io.decode_image(bins["synthetic_lfw"][0][1]).numpy())
    _, loaded = load_face_verification("synthetic_faces", data_dir)
    assert loaded.keys() == bins.keys()
    for name, (images, issame) in bins.items():
        assert loaded[name][0] == images and loaded[name][1].tolist() == issame.tolist()
    _, one = load_face_verification("synthetic_faces", data_dir, ("synthetic_lfw",))
    assert list(one) == ["synthetic_lfw"]
    with pytest.raises(FileNotFoundError, match=r"no verification split\(s\) \['lfw'\]; found"):
        load_face_verification("synthetic_faces", data_dir, ("lfw",))


def _task(workdir, **dataset):
    config = face_synthetic.get_config("smoke")
    config.dataset.update(dataset)
    task = FaceTask(config, workdir)
    task.load()
    return task


def test_face_task_same_batches_and_metrics_from_both_sources(tmp_path):
    """The synthetic set with source tfds and no data_dir: generated and built into
    WORKDIR/data/tfds; then the same batches and metrics as the folder source."""
    from_tfds = _task(tmp_path / "run", source="tfds")
    assert (tmp_path / "run" / "data" / "tfds" / "face_recordio" / "synthetic_faces").is_dir()
    assert from_tfds.dataset.train.source.startswith("tfds:")
    folder = _task(tmp_path / "run_folder", root=str(tmp_path / "run" / "data" / "synthetic_faces"))
    assert isinstance(folder.dataset.train, RecordIOTrainSet)
    assert (from_tfds.num_classes, from_tfds.num_train_examples) == (folder.num_classes, folder.num_train_examples)
    assert sorted(from_tfds.eval_context()["face_verification_sets"]) == sorted(folder.dataset.verification)
    for kwargs in (dict(epoch=0, start_step=0, process_index=0, process_count=1),
                   dict(epoch=1, start_step=1, process_index=1, process_count=2)):
        a = list(from_tfds.train_batches(global_batch=16, **kwargs))
        b = list(folder.train_batches(global_batch=16, **kwargs))
        assert len(a) == len(b) >= 1
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x["images"], y["images"])
            np.testing.assert_array_equal(x["labels"], y["labels"])
    model = ToyFaceNet(num_classes=6)
    variables = model.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)), train=False)
    metrics_tfds = run_evaluators(from_tfds.evaluators(), model, variables)
    metrics_folder = run_evaluators(folder.evaluators(), model, variables)
    for key in ("face/synthetic_lfw/accuracy", "face/synthetic_cfp/val", "face/mean_accuracy"):
        assert key in metrics_tfds
    assert {k: v for k, v in metrics_tfds.items() if "seconds" not in k} == \
        {k: v for k, v in metrics_folder.items() if "seconds" not in k}
    again = _task(tmp_path / "run", source="tfds")  # reuses the build and the image check
    assert len(again.dataset.train) == 36


def test_task_tfds_settings_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"face_recordio/ms1m is not built in .*build_tfds ms1m"):
        _task(tmp_path / "a", name="recordio", root="data/faces_emore", source="tfds",
              data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"tfds_config is empty.*casia_webface, ms1m"):
        _task(tmp_path / "b", name="recordio", root="/data/my_faces", source="tfds")
    with pytest.raises(ValueError, match=r"source='bucket': expected 'folder' or 'tfds'"):
        _task(tmp_path / "c", source="bucket")
    assert tfds_config_for("recordio", "/x/faces_webface_112x112") == "casia_webface"
    assert tfds_config_for("recordio", "", "glint360k") == "glint360k"
    assert face_tfds_names("ms1m") == ["face_recordio/ms1m", "face_verification/ms1m"]
    assert face_tfds_names("face_verification/custom") == ["face_verification/custom"]
    with pytest.raises(ValueError, match=r"unknown face TFDS name 'lfw'"):
        face_tfds_names("lfw")
    assert "synthetic_faces" in FACE_SETS and "synthetic" not in FACE_SETS  # ReID's CLI name


def test_bad_manual_dir_named_with_the_layout(tmp_path, built):
    root, _ = built
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"manual_dir {missing} is not a folder.*train.rec \+ "
                                                r"MANUAL_DIR/train.idx"):
        build_face_tfds("custom", missing, data_dir)
    only_bins = tmp_path / "only_bins"
    only_bins.mkdir()
    (only_bins / "lfw.bin").write_bytes((root / "synthetic_lfw.bin").read_bytes())
    with pytest.raises(FileNotFoundError, match=rf"manual_dir {only_bins} has no train.rec, train.idx "
                                                r"\(found: \['lfw.bin'\]\); expected the layout"):
        build_face_tfds("custom", only_bins, data_dir)
    no_bins = tmp_path / "no_bins"
    no_bins.mkdir()
    for name in ("train.rec", "train.idx"):
        (no_bins / name).write_bytes((root / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=rf"manual_dir {no_bins} has no \*.bin"):
        build_face_tfds("custom", no_bins, data_dir)
    build_face_tfds("face_recordio/custom", no_bins, data_dir)  # the training set alone needs no .bin
    assert tfds.builder("face_recordio/custom", data_dir=str(data_dir)).is_prepared()


def test_failed_build_leaves_nothing(tmp_path, built):
    root, _ = built
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    rec = (root / "train.rec").read_bytes()
    (truncated / "train.rec").write_bytes(rec[: len(rec) // 2])  # later records cut off
    (truncated / "train.idx").write_bytes((root / "train.idx").read_bytes())
    (truncated / "lfw.bin").write_bytes((root / "synthetic_lfw.bin").read_bytes())
    with pytest.raises(ValueError, match=r"train.rec: truncated record"):
        build_face_tfds("custom", truncated, data_dir)
    assert list(data_dir.iterdir()) == []
    bad_bin = tmp_path / "bad_bin"
    bad_bin.mkdir()
    write_verification_bin(bad_bin / "lfw.bin", [b"not an image", b"neither"], [True])
    with pytest.raises(ValueError, match=r"lfw.bin: image 0 \(pair 0\) is undecodable"):
        build_face_tfds("face_verification/custom", bad_bin, data_dir)
    assert list(data_dir.iterdir()) == []
