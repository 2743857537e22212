"""The TFDS source of the classification task (``config.dataset.source = "tfds"``):
any TFDS build with an ``image`` (Image) and a ``label`` (ClassLabel) feature,
e.g. ``imagenet2012``, ``imagenette``, ``cifar10`` or ``name/config:version``,
in ``data_dir`` (a local folder or ``gs://``; None: TFDS's default).

Streamed as big_vision does, because ImageNet's ~140 GB cannot be held in
memory the way the ReID TFDS source holds a small set's bytes
(``data/tfds/source.py``): each host reads only its own part of a split from
the record files, shuffles the still-encoded images in a bounded buffer and
decodes + augments them in tf.data. Loading reads the build's metadata only.

Training (:meth:`TFDSClassification.train_dataset`): host p of P reads
``tfds.even_splits(train_split, P, drop_remainder=True)[p]`` (every host the
same count), files shuffled with a seed of (seed, epoch), then a shuffle
buffer of min(10 000, part) records with a seed of (seed, epoch); the epoch is
exactly ``num_train // global_batch`` global batches of which each host
supplies ``global_batch / P`` examples. Each example's augmentation is
stateless with a seed of (seed, epoch, host, its position in the host's
epoch), so an epoch is the same on a rerun and a resumed epoch (``start_step
= k``) is the tail of the full one -- for the same host count. Unlike the
folder source, the order (which examples meet in a global batch) depends on
the number of hosts, and only the ``"random"`` sampler applies: a sampler
that picks examples by index needs random access that record files do not
give.

Evaluation (:meth:`TFDSClassification.eval_batches`): host p reads the p-th
contiguous part of ``eval_split`` without dropping any record, padded (``valid``
False) so that every host yields the same number of batches.

A label outside ``[0, num_classes)`` or an image that does not decode stops
the run with one ValueError naming the split and the record (its ``tfds_id``).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.classification.pipeline import ClassAugment, augment, resize_center_crop
from stra_jax.data.image_check import decode_error
from stra_jax.data.images import decode_raw, normalize
from stra_jax.data.iterate import numpy_iterator

__all__ = ["SHUFFLE_BUFFER", "TFDSClassification", "check_classification_features", "check_labels",
           "load_tfds_classification"]

#: records in the training shuffle buffer (encoded images: ~1 GB of ImageNet JPEGs)
SHUFFLE_BUFFER = 10_000
_DEFAULT_DIR = "~/tensorflow_datasets"


def check_classification_features(name: str, features: Any) -> None:
    """ValueError unless ``features`` (a builder's ``info.features``) has an
    ``image`` Image feature and a ``label`` ClassLabel feature."""
    items = dict(features.items()) if isinstance(features, tfds.features.FeaturesDict) else {}
    if isinstance(items.get("image"), tfds.features.Image) and isinstance(items.get("label"),
                                                                         tfds.features.ClassLabel):
        return
    found = {k: type(v).__name__ for k, v in sorted(items.items())} if items else type(features).__name__
    raise ValueError(f"TFDS dataset {name}: the classification task needs an 'image' Image feature and a "
                     f"'label' ClassLabel feature; its features are {found}")


def check_labels(labels: np.ndarray, tfds_ids: np.ndarray, num_classes: int, where: str) -> None:
    """ValueError naming the first record (``tfds_ids``, bytes or str) whose label
    is outside ``[0, num_classes)``; ``where`` is e.g. ``"imagenet2012 train"``."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = bad[0]
        record = tfds_ids[i].decode() if isinstance(tfds_ids[i], bytes) else tfds_ids[i]
        raise ValueError(f"{where}: record {record} has label {int(labels[i])}, outside [0, {num_classes})")


@dataclasses.dataclass(frozen=True)
class TFDSClassification:
    """A TFDS classification build, streamed (see the module docstring).

    ``root``: the data_dir it was found in; ``class_names``: the ClassLabel's
    names (index = label); ``num_train`` / ``num_val``: examples of
    ``train_split`` / ``eval_split``."""

    name: str
    root: str
    class_names: tuple[str, ...]
    num_train: int
    num_val: int
    train_split: str = "train"
    eval_split: str = "validation"
    builder: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        return (f"{self.name} ({self.root}): {self.num_classes} classes, {self.num_train} training and "
                f"{self.num_val} validation images (TFDS splits {self.train_split!r} / {self.eval_split!r}, "
                "streamed)")

    def steps_per_epoch(self, global_batch: int) -> int:
        """Global batches per epoch: the last partial batch is dropped."""
        return self.num_train // global_batch

    # ------------------------------------------------------------------ reading

    def _records(self, split: Any, *, shuffle_files: bool = False, shuffle_seed: int | None = None
                 ) -> tf.data.Dataset:
        """``{"image": encoded bytes, "label": int64, "tfds_id": string}`` of ``split``."""
        # No autocache: every epoch builds a new pipeline, so a cache would never be read again.
        read_config = tfds.ReadConfig(add_tfds_id=True, shuffle_seed=shuffle_seed, try_autocache=False)
        ds = self.builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config,
                                     decoders={"image": tfds.decode.SkipDecoding()})  # decoded after the shuffle
        return ds.map(lambda ex: {"image": ex["image"], "label": ex["label"], "tfds_id": ex["tfds_id"]})

    def _train_records(self, *, global_batch: int, seed: int, epoch: int, process_index: int,
                       process_count: int) -> tf.data.Dataset:
        """``(position, record)`` of this host's whole epoch, in training order."""
        if global_batch % process_count:
            raise ValueError(f"global_batch={global_batch} is not divisible by process_count={process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index}: expected 0 <= index < process_count={process_count}")
        steps = self.steps_per_epoch(global_batch)
        if steps < 1:
            raise ValueError(f"{self.name} {self.train_split}: {self.num_train} training images are fewer than "
                             f"one global batch of {global_batch}")
        local = global_batch // process_count
        part = tfds.even_splits(self.train_split, n=process_count, drop_remainder=True)[process_index]
        file_seed, buffer_seed = (int(s) for s in np.random.SeedSequence([seed % 2**64, epoch]).generate_state(2))
        ds = self._records(part, shuffle_files=True, shuffle_seed=file_seed)
        buffer = max(1, min(SHUFFLE_BUFFER, self.num_train // process_count))
        # repeat(): an exact epoch even if a part holds fewer records than its metadata says
        ds = ds.shuffle(buffer, seed=buffer_seed).repeat().take(steps * local)
        return ds.enumerate()

    def train_dataset(self, *, global_batch: int, image_size: tuple[int, int], seed: int = 0, epoch: int = 0,
                      start_step: int = 0, augmentation: ClassAugment = ClassAugment(), process_index: int = 0,
                      process_count: int = 1) -> tf.data.Dataset:
        """One epoch of this host's batches from ``start_step``: {"images": (b, H, W, 3)
        float32 (augmented, normalised), "labels": (b,) int32, "tfds_id": (b,) string},
        b = global_batch / process_count. Labels are not checked here: iterate with
        :meth:`numpy_train_batches` for the checks."""
        hide_gpus_from_tf()
        ds = self._train_records(global_batch=global_batch, seed=seed, epoch=epoch, process_index=process_index,
                                 process_count=process_count)  # checks the batch and host arguments
        local = global_batch // process_count
        if not 0 <= start_step <= self.steps_per_epoch(global_batch):
            raise ValueError(f"start_step={start_step}: expected 0 .. {self.steps_per_epoch(global_batch)}")
        ds = ds.skip(start_step * local)  # still encoded: resuming reads, but does not decode, the skipped part
        base = seed * 1_000_003 + epoch
        host = process_index * 2**40  # positions of different hosts never meet

        def load(position, record):
            example_seed = tf.stack([tf.constant(base, tf.int64), host + position])
            return {"images": augment(decode_raw(record["image"]), example_seed, tuple(image_size), augmentation),
                    "labels": tf.cast(record["label"], tf.int32), "tfds_id": record["tfds_id"]}

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def numpy_train_batches(self, *, global_batch: int, image_size: tuple[int, int], seed: int = 0, epoch: int = 0,
                            start_step: int = 0, augmentation: ClassAugment = ClassAugment(),
                            process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """:meth:`train_dataset` as NumPy ``{"images", "labels"}`` batches, each
        label checked and a decode error named by its record (ValueError)."""
        kw = dict(global_batch=global_batch, seed=seed, epoch=epoch, process_index=process_index,
                  process_count=process_count)
        ds = self.train_dataset(image_size=image_size, start_step=start_step, augmentation=augmentation, **kw)
        local = global_batch // process_count

        def records() -> tf.data.Dataset:  # the same records in the same order, still encoded
            return self._train_records(**kw).skip(start_step * local).map(lambda _, record: record)

        return self._checked(ds, records, local, self.train_split, ("images", "labels"))

    def eval_batches(self, *, batch_size: int, image_size: tuple[int, int], crop_fraction: float = 0.875,
                     process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """This host's part of ``eval_split`` as NumPy batches of ``batch_size /
        process_count`` rows: {"images": (b, H, W, 3) float32 (resize to cover
        (H, W) / crop_fraction, central crop, normalised), "labels": (b,) int32,
        "valid": (b,) bool}. ``batch_size`` is global; host p reads the p-th
        contiguous part (``tfds.even_splits`` without dropping) and pads it
        (``valid`` False, zero images) to ``ceil(ceil(num_val / P) / b)`` batches,
        the same number on every host."""
        hide_gpus_from_tf()
        if batch_size % process_count:
            raise ValueError(f"batch_size={batch_size} is not divisible by process_count={process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index}: expected 0 <= index < process_count={process_count}")
        local = batch_size // process_count
        part = tfds.even_splits(self.eval_split, n=process_count, drop_remainder=False)[process_index]
        count = self.builder.info.splits[part].num_examples if self.num_val else 0
        total = math.ceil(math.ceil(self.num_val / process_count) / local) * local
        height, width = image_size

        def load(record):
            image = normalize(resize_center_crop(decode_raw(record["image"]), (height, width), crop_fraction))
            return {"images": image, "labels": tf.cast(record["label"], tf.int32), "valid": tf.constant(True),
                    "tfds_id": record["tfds_id"]}

        def records() -> tf.data.Dataset:
            return self._records(part).take(count)

        pad = tf.data.Dataset.from_tensors({"images": tf.zeros((height, width, 3)), "labels": tf.constant(0),
                                            "valid": tf.constant(False), "tfds_id": tf.constant("")})
        ds = pad.repeat(total - count)
        if count:  # TFDS refuses an empty part (fewer records than hosts)
            ds = records().map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).concatenate(ds)
        ds = ds.batch(local).prefetch(tf.data.AUTOTUNE)
        return self._checked(ds, records, local, self.eval_split, ("images", "labels", "valid"))

    def _checked(self, ds: tf.data.Dataset, records: Callable[[], tf.data.Dataset], per_batch: int, split: str,
                 keys: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
        """NumPy batches of ``ds`` with the labels of their (valid) rows checked;
        a TensorFlow error while producing batch k becomes a ValueError naming
        the undecodable record among ``records()``' k-th ``per_batch``."""
        where = f"{self.name} {split}"
        done = 0

        def explain(err: tf.errors.OpError) -> str:
            message = err.message.strip().splitlines()[0] if err.message else type(err).__name__
            culprit = _first_bad_record(records().skip(done * per_batch).take(per_batch))
            if culprit is None:
                return (f"{where}: input pipeline failed in batch {done} ({message}); none of its "
                        f"{per_batch} records is an undecodable image")
            return f"{where}: record {culprit[0]}: corrupt or unreadable image ({culprit[1]}; TensorFlow: {message})"

        for batch in numpy_iterator(ds, (tf.errors.OpError,), explain):
            rows = batch["valid"] if "valid" in batch else slice(None)
            check_labels(batch["labels"][rows], batch["tfds_id"][rows], self.num_classes, where)
            done += 1
            yield {k: batch[k] for k in keys}


def _first_bad_record(records: tf.data.Dataset) -> tuple[str, str] | None:
    """``(tfds_id, why)`` of the first record whose image does not decode, or None
    (also when reading the records fails again: the failure was not a decode)."""
    try:
        for record in records.as_numpy_iterator():
            why = decode_error(record["image"])
            if why is not None:
                return record["tfds_id"].decode(), why
    except tf.errors.OpError:
        return None
    return None


def load_tfds_classification(name: str, data_dir: str | os.PathLike | None = None, *, train_split: str = "train",
                             eval_split: str = "validation") -> TFDSClassification:
    """The TFDS build ``name`` (``config.dataset.name``: a builder, or
    ``name/config:version``) in ``data_dir`` (None or '': TFDS's default). Reads
    metadata only; ValueError when the builder is unknown or not built, lacks
    the ``image``/``label`` features or the splits."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    data_dir = os.fspath(data_dir) if data_dir else None
    shown_dir = data_dir or _DEFAULT_DIR
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # TFDS's own message lists every registered dataset: too long to be read
        raise ValueError(f"config.dataset.name={name!r}: no TFDS builder of that name is registered and no "
                         f"build of it is in {shown_dir} (config.dataset.data_dir)") from None
    if not builder.is_prepared():
        command = f"tfds build {name} --data_dir {shown_dir}"
        note = ""
        if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:  # e.g. imagenet2012: the archives from image-net.org
            command += " --manual_dir MANUAL_DIR"
            note = (f" (it needs a manual download into MANUAL_DIR, by default {shown_dir}/downloads/manual: "
                    + " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split()) + ")")
        raise ValueError(f"TFDS dataset {name} is not built in {shown_dir} (config.dataset.data_dir); build it "
                         f"first: `{command}`{note}")
    check_classification_features(name, builder.info.features)
    counts = {}
    for key, split in (("train_split", train_split), ("eval_split", eval_split)):
        try:
            counts[key] = int(builder.info.splits[split].num_examples)
        except (KeyError, ValueError, AssertionError) as err:
            raise ValueError(f"config.dataset.{key}={split!r}: not a split of TFDS dataset {name}; its splits: "
                             f"{sorted(builder.info.splits)} ({err})") from None
    return TFDSClassification(name=name, root=os.fspath(builder.data_dir_root),
                              class_names=tuple(builder.info.features["label"].names),
                              num_train=counts["train_split"], num_val=counts["eval_split"],
                              train_split=train_split, eval_split=eval_split, builder=builder)
