"""The classification task's TFDS source (``data/classification/tfds.py``):
streamed epochs (deterministic, resumable, disjoint host parts), padded
evaluation parts, the refusals, and a run end to end on ``cifar10`` mocked
by ``tfds.testing.mock_data``.

``mock_data`` yields the same random examples for every split and ignores
``shuffle_files``, the shuffle seed and the host parts (``even_splits``), so
the stream itself is tested on a real (tiny) build written with
``tfds.dataset_builders.store_as_tfds_dataset``; the oracles are plain reads
of that build through TFDS."""
from __future__ import annotations

import io
import json
import math
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from configs import imagenet
from stra_jax.data.classification.pipeline import ClassAugment
from stra_jax.data.classification.tfds import (check_classification_features, check_labels,
                                               load_tfds_classification)
from stra_jax.data.samplers import SAMPLERS, RandomSampler

NUM_TRAIN, NUM_TEST, CLASSES = 40, 11, ("cat", "dog", "fox", "owl")
FEATURES = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                       "label": tfds.features.ClassLabel(names=CLASSES)})


def _png(seed: int, size=(20, 24)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _split(images: list[bytes], labels: list[int]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def _build(data_dir, name: str, splits: dict[str, tf.data.Dataset], features=FEATURES) -> None:
    tfds.dataset_builders.store_as_tfds_dataset(name=name, version="1.0.0", features=features,
                                                split_datasets=splits, data_dir=str(data_dir))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real TFDS build: 40 training images (labels i % 4), 11 test images, 20x24 PNG."""
    data_dir = tmp_path_factory.mktemp("tfds")
    _build(data_dir, "tiny_classes", {
        "train": _split([_png(i) for i in range(NUM_TRAIN)], [i % 4 for i in range(NUM_TRAIN)]),
        "test": _split([_png(100 + i) for i in range(NUM_TEST)], [(i * 3) % 4 for i in range(NUM_TEST)])})
    return str(data_dir), load_tfds_classification("tiny_classes", data_dir, eval_split="test")


def _stored_labels(data_dir: str, split: str) -> dict[str, int]:
    """tfds_id -> label, read straight through TFDS (the oracle)."""
    builder = tfds.builder("tiny_classes", data_dir=data_dir)
    ds = builder.as_dataset(split=split, read_config=tfds.ReadConfig(add_tfds_id=True),
                            decoders={"image": tfds.decode.SkipDecoding()})
    return {r["tfds_id"].decode(): int(r["label"]) for r in ds.as_numpy_iterator()}


def _epoch(dataset, **kw) -> list[dict[str, np.ndarray]]:
    kw = dict(dict(global_batch=8, image_size=(16, 16), seed=3, epoch=0), **kw)
    return list(dataset.train_dataset(**kw).as_numpy_iterator())


# ---- loading ----

def test_load_reads_the_metadata(tiny):
    _, ds = tiny
    assert (ds.num_train, ds.num_val, ds.class_names, ds.num_classes) == (NUM_TRAIN, NUM_TEST, CLASSES, 4)
    assert ds.steps_per_epoch(8) == 5 == RandomSampler(NUM_TRAIN).steps_per_epoch(8)
    assert ds.summary().startswith(f"tiny_classes ({ds.root}): 4 classes, 40 training and 11 validation images")


def test_refusals_at_load(tiny, tmp_path):
    data_dir, _ = tiny
    with pytest.raises(ValueError, match=r"config.dataset.eval_split='validation': not a split of TFDS dataset "
                                         r"tiny_classes; its splits: \['test', 'train'\]"):
        load_tfds_classification("tiny_classes", data_dir)  # eval_split defaults to "validation"
    with pytest.raises(ValueError, match="'no_such_set': no TFDS builder of that name is registered and no build "
                                         f"of it is in {tmp_path}"):
        load_tfds_classification("no_such_set", tmp_path)
    with pytest.raises(ValueError, match=f"cifar10 is not built in {tmp_path}.*`tfds build cifar10 --data_dir "
                                         f"{tmp_path}`$"):
        load_tfds_classification("cifar10", tmp_path)
    with pytest.raises(ValueError, match=r"--manual_dir MANUAL_DIR`.*downloads/manual.*ILSVRC2012_img_train.tar"):
        load_tfds_classification("imagenet2012", tmp_path)
    # a real build whose class feature is not called "label"
    _build(tmp_path, "tiny_unlabelled", {"train": tf.data.Dataset.from_tensor_slices(
        {"image": [_png(0)], "target": [1]})}, tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(None, None, 3)), "target": tfds.features.ClassLabel(num_classes=2)}))
    with pytest.raises(ValueError, match=r"tiny_unlabelled: the classification task needs an 'image' Image feature "
                                         r"and a 'label' ClassLabel feature; its features are "
                                         r"\{'image': 'Image', 'target': 'ClassLabel'\}"):
        load_tfds_classification("tiny_unlabelled", tmp_path)


def test_feature_check():
    check_classification_features("ok", FEATURES)
    wrong = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                        "label": tfds.features.Scalar(np.int64)})
    with pytest.raises(ValueError, match=r"its features are \{'image': 'Image', 'label': 'Scalar'\}"):
        check_classification_features("wrong", wrong)


def test_label_check_names_the_record():
    ids = np.array([b"imagenet2012-train.tfrecord-00003-of-01024__17",
                    b"imagenet2012-train.tfrecord-00003-of-01024__18"])
    check_labels(np.array([0, 999]), ids, 1000, "imagenet2012 train")
    with pytest.raises(ValueError, match=r"^imagenet2012 train: record imagenet2012-train.tfrecord-00003-of-01024__18 "
                                         r"has label 1003, outside \[0, 1000\)$"):
        check_labels(np.array([5, 1003]), ids, 1000, "imagenet2012 train")
    with pytest.raises(ValueError, match="has label -1"):
        check_labels(np.array([-1, 3]), ids, 1000, "imagenet2012 train")


# ---- training stream ----

def test_epoch_is_deterministic_complete_and_resumable(tiny):
    data_dir, ds = tiny
    first = _epoch(ds)
    assert len(first) == 5
    assert all(b["images"].shape == (8, 16, 16, 3) and b["images"].dtype == np.float32 for b in first)
    ids = [i.decode() for b in first for i in b["tfds_id"]]
    stored = _stored_labels(data_dir, "train")
    assert sorted(ids) == sorted(stored)  # 40 = 5 x 8: every record exactly once
    assert [int(y) for b in first for y in b["labels"]] == [stored[i] for i in ids]
    again = _epoch(ds)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["tfds_id"], b["tfds_id"])
        np.testing.assert_array_equal(a["images"], b["images"])
    resumed = _epoch(ds, start_step=3)
    assert len(resumed) == 2
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a["tfds_id"], b["tfds_id"])
        np.testing.assert_array_equal(a["images"], b["images"])
    other = [i for b in _epoch(ds, epoch=1) for i in b["tfds_id"]]
    assert other != [i for b in first for i in b["tfds_id"]] and sorted(other) == sorted(
        i for b in first for i in b["tfds_id"])
    assert [i for b in _epoch(ds, seed=4) for i in b["tfds_id"]] != [i for b in first for i in b["tfds_id"]]


def test_hosts_read_disjoint_halves(tiny):
    _, ds = tiny
    parts = [_epoch(ds, process_index=p, process_count=2) for p in range(2)]
    assert [len(p) for p in parts] == [5, 5]
    assert all(b["images"].shape[0] == 4 for p in parts for b in p)
    ids = [set(i for b in p for i in b["tfds_id"]) for p in parts]
    assert len(ids[0]) == len(ids[1]) == 20 and not ids[0] & ids[1]


def test_numpy_batches_keep_images_and_labels_only(tiny):
    _, ds = tiny
    batches = list(ds.numpy_train_batches(global_batch=8, image_size=(16, 16), seed=3, epoch=0, start_step=4,
                                          augmentation=ClassAugment(crop="resize", flip=False)))
    assert len(batches) == 1 and set(batches[0]) == {"images", "labels"} and batches[0]["labels"].dtype == np.int32


def test_undecodable_record_is_named(tmp_path):
    images = [_png(i) for i in range(8)]
    images[5] = b"\x89PNG\r\n\x1a\n not a PNG after all"
    _build(tmp_path, "tiny_broken", {"train": _split(images, [i % 2 for i in range(8)]),
                                     "test": _split(images, [0] * 8)},
           tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                       "label": tfds.features.ClassLabel(num_classes=2)}))
    ds = load_tfds_classification("tiny_broken", tmp_path, eval_split="test")
    for split, batches in (("train", lambda: ds.numpy_train_batches(global_batch=4, image_size=(8, 8))),
                           ("test", lambda: ds.eval_batches(batch_size=4, image_size=(8, 8)))):
        stored = tfds.builder("tiny_broken", data_dir=str(tmp_path)).as_dataset(
            split=split, read_config=tfds.ReadConfig(add_tfds_id=True), decoders={"image": tfds.decode.SkipDecoding()})
        bad = [r["tfds_id"].decode() for r in stored.as_numpy_iterator() if b"not a PNG" in r["image"]]
        assert len(bad) == 1
        with pytest.raises(ValueError, match=f"^tiny_broken {split}: record {bad[0]}: corrupt or unreadable image "
                                             r"\(.*TensorFlow: "):
            list(batches())


# ---- evaluation parts ----

@pytest.mark.parametrize("hosts,batch", [(1, 4), (2, 4), (3, 6)])
def test_eval_parts_are_padded_to_the_same_length(tiny, hosts, batch):
    data_dir, ds = tiny
    local = batch // hosts
    expect = math.ceil(math.ceil(NUM_TEST / hosts) / local)  # batches on every host
    labels: Counter = Counter()
    for p in range(hosts):
        batches = list(ds.eval_batches(batch_size=batch, image_size=(16, 8), process_index=p, process_count=hosts))
        assert len(batches) == expect
        valid = np.concatenate([b["valid"] for b in batches])
        # contiguous parts without dropping: the first NUM_TEST % hosts parts hold one more
        assert valid.sum() == NUM_TEST // hosts + (p < NUM_TEST % hosts) and valid[: valid.sum()].all()
        assert all(b["images"].shape == (local, 16, 8, 3) for b in batches)
        labels.update(int(y) for b in batches for y in b["labels"][b["valid"]])
    assert labels == Counter(_stored_labels(data_dir, "test").values())


def test_evaluator_predictions_cover_the_split(tiny):
    import jax

    from stra_jax.evaluation.classification import ClassificationAccuracy
    from stra_jax.models import create_model, init_variables

    data_dir, ds = tiny
    model = create_model("resnet50", width=8, stage_sizes=(1, 1, 1, 1), num_classes=4, embedding_dim=None)
    variables = init_variables(model, jax.random.key(0))
    evaluator = ClassificationAccuracy("val", dict(image_size=(16, 16), batch_size=4, topk=(1, 2)),
                                       {"classification_dataset": ds})
    logits, labels = evaluator.predictions(model, variables)
    assert logits.shape == (NUM_TEST, 4)
    assert Counter(labels.tolist()) == Counter(_stored_labels(data_dir, "test").values())
    first = next(ds.eval_batches(batch_size=4, image_size=(16, 16)))
    direct = np.asarray(model.apply(variables, first["images"], train=False)["logits"])
    np.testing.assert_allclose(logits[:4], direct, rtol=1e-4, atol=1e-4)


# ---- the task ----

def _tfds_config(name: str, data_dir: str, eval_split: str = "test"):
    config = imagenet.get_config("smoke")
    config.dataset.update(source="tfds", name=name, data_dir=data_dir, eval_split=eval_split)
    return config


def test_task_refuses_other_samplers_and_labels(tiny, tmp_path):
    from stra_jax.tasks.classification import ClassificationTask

    data_dir, _ = tiny
    SAMPLERS.register("toy_in_order", lambda n, labels: RandomSampler(n), overwrite=True)
    try:
        config = _tfds_config("tiny_classes", data_dir)
        config.input.sampler = "toy_in_order"
        with pytest.raises(ValueError, match=r"config.input.sampler='toy_in_order': config.dataset.source='tfds' "
                                             r"streams the records .* only the 'random' sampler applies"):
            ClassificationTask(config, tmp_path).load()
        config.input.sampler = "random"
        task = ClassificationTask(config, tmp_path)
        task.load()
        assert (task.num_classes, task.num_train_examples, task.steps_per_epoch(8)) == (4, NUM_TRAIN, 5)
        with pytest.raises(ValueError, match="training labels of tiny_classes are not known"):
            task.train_labels()
        batch = next(iter(task.train_batches(epoch=0, start_step=0, global_batch=8, process_index=0,
                                             process_count=1)))
        assert batch["images"].shape == (8, 32, 32, 3) and set(batch) == {"images", "labels"}
        config.input.sampler = "toy_in_order"
        with pytest.raises(ValueError, match="config.input.sampler='toy_in_order'"):
            task.train_batches(epoch=0, start_step=0, global_batch=8, process_index=0, process_count=1)
    finally:
        SAMPLERS.unregister("toy_in_order")


def _cifar10_metadata(data_dir, counts: dict[str, int]) -> None:
    """cifar10's dataset_info.json with small split counts: what mock_data(USE_FILES) reads."""
    builder = tfds.builder("cifar10", data_dir=str(data_dir))
    template = lambda s: tfds.core.ShardedFileTemplate(  # noqa: E731
        data_dir=builder.data_dir, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name="cifar10", split=s, filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=template(s))
        for s, n in counts.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)


def test_cifar10_run_end_to_end_on_mock_data(tmp_path):
    from stra_jax.training.loop import train_and_evaluate

    meta = tmp_path / "meta"
    _cifar10_metadata(meta, {"train": 24, "test": 10})
    config = _tfds_config("cifar10", str(tmp_path / "ignored_by_the_mock"))
    workdir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=24, data_dir=str(meta), policy=tfds.testing.MockPolicy.USE_FILES):
        final = train_and_evaluate(config, workdir)
    saved = json.loads((workdir / "final_metrics.json").read_text())
    assert saved["val/num_images"] == 10 == final["val/num_images"]
    assert 0.0 <= saved["val/top1"] <= saved["val/top5"] <= 1.0 and math.isfinite(saved["val/loss"])
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "eval/val/top1" in r]) == 2  # smoke: 2 epochs of 24 // 8 = 3 steps
    assert max(r.get("step", 0) for r in rows) == 6
    assert json.loads((workdir / "model_best" / "model.json").read_text())["kwargs"]["num_classes"] == 10
