"""Face recognition: identity classification with softmax / CosFace / ArcFace
(+ w * L_d) on a RecordIO or folder training set; verification on ``.bin`` pairs.

Config keys read here:

* ``dataset``: ``name`` ("recordio" | "folder" | "synthetic_faces"), ``root``
  (insightface's folder: ``train.rec``/``train.idx`` + ``*.bin``; empty = the
  workdir's ``data/<name>``), ``verification`` (names of the ``.bin`` sets to
  use; empty = every one in ``root``), ``check_images`` (decode every training
  image once before training; the result is cached in ``WORKDIR/cache``), and
  ``synthetic`` (the spec of the built-in synthetic set); ``source``
  ("folder": read ``root``, the default; "tfds": the TFDS builds of
  ``stra_jax.data.tfds.face`` in ``data_dir`` (empty = TFDS's default;
  ``gs://`` works) of the set ``tfds_config`` (``casia_webface``, ``ms1m``,
  ...; empty = from ``root``'s insightface folder name, ``synthetic_faces``
  for ``synthetic_faces``; the synthetic set is generated and built into
  ``WORKDIR/data/tfds`` on first use when ``data_dir`` is empty));
* ``input``: ``image_size`` (112, 112), ``flip``;
* ``train.losses``: weighted loss terms, one of "softmax", "cosface",
  "arcface" (options ``margin``, ``scale``, ``straight_through``) and
  "diversity" (StRA's L_d) (plus the loop's keys of ``train``);
* ``model.shard_classifier``: split the classifier's (D, classes) weights over
  the devices along the class axis (its class count padded to a multiple of
  the device count; the padded columns never enter the softmax), so that
  millions of identities fit; the loss then never gathers the weights.

The evaluators (``config.evals``, usually one ``face_verification``) get the
``.bin`` sets as ``face_verification_sets``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

from stra_jax.data.face.dataset import FaceDataset, prepare_face_dataset
from stra_jax.data.image_check import check_train_set
from stra_jax.losses import LossContext
from stra_jax.models.registry import get_entry
from stra_jax.sharding import DATA
from stra_jax.tasks.base import Task

CLASSIFIER_KERNEL = r"\['classifier'\]\['kernel'\]$"
_CHECK_CHUNK = 4096  # records read into memory at a time by train_labels


class FaceTask(Task):
    """Train on a face set's identities; evaluate by verification on its ``.bin`` pairs."""

    progress_metrics = ("ce", "diversity", "accuracy")
    dataset: FaceDataset

    def __init__(self, config: Any, workdir=None) -> None:
        super().__init__(config, workdir)
        self.check_losses()  # a bad margin or scale fails before anything is read

    def load(self) -> str:
        """Read the data (``load_folder`` / ``load_tfds``, by ``dataset.source``),
        then decode every training image once (``dataset.check_images``): a bad
        one stops the run naming its file and record. A set found good is
        remembered in ``WORKDIR/cache`` (its files' size and mtime)."""
        cfg = self.config.dataset
        start = time.perf_counter()
        summary = super().load()
        if cfg.get("check_images", True):
            cache = self.workdir / "cache" / f"faces_ok_{cfg.name}.json" if self.workdir else None
            summary += f"\n{check_train_set(self.dataset.train, cache)} in {time.perf_counter() - start:.1f} s"
        return summary

    def load_folder(self) -> str:
        """insightface's folder (or an image folder) at ``dataset.root``; the
        built-in synthetic set is generated there first when absent."""
        cfg = self.config.dataset
        synthetic = cfg.get("synthetic")
        self.dataset = prepare_face_dataset(cfg.name, self.data_root(), synthetic.to_dict() if synthetic else None,
                                            tuple(cfg.get("verification", ())))
        return self.dataset.summary()

    def load_tfds(self) -> str:
        """The training set and the verification pairs from the TFDS builds (the
        built-in synthetic set: generated and built first when absent)."""
        from stra_jax.data.tfds.face import (build_face_tfds, load_face_train, load_face_verification,
                                             tfds_config_for)

        cfg = self.config.dataset
        if cfg.name == "folder":
            raise ValueError("config.dataset.source='tfds' reads insightface's RecordIO layout; pack an image "
                             "folder first (python -m stra_jax.tools.pack_faces) and build that")
        start = time.perf_counter()
        data_dir = cfg.get("data_dir") or None
        set_name = tfds_config_for(cfg.name, cfg.get("root", ""), cfg.get("tfds_config", ""))
        if cfg.name == "synthetic_faces":  # the built-in set: generated and built on first use, else its spec checked
            from stra_jax.data.face.synthetic import FaceSyntheticSpec
            from stra_jax.data.tfds.face import face_tfds_names
            from stra_jax.data.tfds.generated import build_or_check

            data_dir = data_dir or str(self.data_root().parent / "tfds")
            synthetic = cfg.synthetic.to_dict() if cfg.get("synthetic") else {}

            def generate_and_build() -> None:
                folder = prepare_face_dataset(cfg.name, self.data_root(), synthetic)
                build_face_tfds(set_name, folder.root, data_dir)

            build_or_check(face_tfds_names(set_name), data_dir, FaceSyntheticSpec(**synthetic), generate_and_build)
        train = load_face_train(set_name, data_dir)
        built, pairs = load_face_verification(set_name, data_dir, tuple(cfg.get("verification", ())))
        self.dataset = FaceDataset(cfg.name, Path(train.builder.data_dir), train,
                                   {name: Path(built) / name for name in pairs}, pairs=pairs)
        return f"{self.dataset.summary()}\nread from TFDS in {time.perf_counter() - start:.1f} s"

    def loss_context(self, num_classes: int | None) -> LossContext:
        """The margin terms shard their loss when the classifier is split."""
        return LossContext(num_classes=num_classes, shard_classifier=self.shard_classifier)

    @property
    def shard_classifier(self) -> bool:
        return bool(self.config.model.get("shard_classifier", False))

    @property
    def num_classes(self) -> int:
        return self.dataset.train.num_classes

    @property
    def num_train_examples(self) -> int:
        return len(self.dataset.train)

    def model_overrides(self) -> dict[str, Any]:
        """The classifier's width (padded to the device count when it is
        sharded) and, for families sized by their input, the input size."""
        classes = self.num_classes
        if self.shard_classifier:
            devices = jax.device_count()
            classes = -(-classes // devices) * devices
        overrides: dict[str, Any] = {"num_classes": classes}
        if "input_size" in get_entry(self.config.model.name).options:
            overrides["input_size"] = tuple(self.config.input.image_size)
        return overrides

    def sharding_rules(self) -> list[tuple[str, tuple]]:
        return [(CLASSIFIER_KERNEL, (None, DATA))] if self.shard_classifier else []

    def train_labels(self) -> np.ndarray:
        """Each training image's identity: the folder source's list, else read
        from the records (chunk by chunk; slow on a large set, hence only when
        a sampler asks)."""
        train = self.dataset.train
        if getattr(train, "labels", None) is not None:
            return np.asarray(train.labels, np.int64)
        read_many = getattr(train, "read_many", None) or (lambda idx: [train.read(i) for i in idx])
        chunks = (range(s, min(s + _CHECK_CHUNK, len(train))) for s in range(0, len(train), _CHECK_CHUNK))
        return np.asarray([label for chunk in chunks for _, label in read_many(chunk)], np.int64)

    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        train = self.dataset.train
        if hasattr(train, "in_order"):  # the TFDS source: read the epoch's order ahead in chunks
            from stra_jax.data.samplers import host_epoch_slice

            order, _ = host_epoch_slice(self.sampler, global_batch, self.config.seed, epoch, start_step,
                                        process_index, process_count)
            train = train.in_order(order)
        return self._batches(train, epoch=epoch, start_step=start_step, epochs=1, global_batch=global_batch,
                             process_index=process_index, process_count=process_count)

    def train_stream(self, *, epoch: int, start_step: int, epochs: int, global_batch: int, process_index: int,
                     process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """RecordIO and folders: one pipeline for all ``epochs``; the TFDS source,
        which reads each epoch's order ahead, a pipeline per epoch (the default)."""
        kw = dict(epoch=epoch, start_step=start_step, epochs=epochs, global_batch=global_batch,
                  process_index=process_index, process_count=process_count)
        if hasattr(self.dataset.train, "in_order"):
            return super().train_stream(**kw)
        return self._batches(self.dataset.train, **kw)

    def _batches(self, train: Any, **kw: Any) -> Iterator[dict[str, np.ndarray]]:
        from stra_jax.data.face.pipeline import numpy_train_batches

        cfg = self.config.input
        return numpy_train_batches(train, image_size=tuple(cfg.image_size), seed=self.config.seed,
                                   flip=cfg.get("flip", True), sampler=self.sampler, **kw)

    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The weighted terms of ``config.train.losses`` (the recipes: margin
        cross-entropy, softmax / CosFace / ArcFace, + w * L_d)."""
        return self.objective(outputs, batch, collections)

    def eval_context(self) -> dict[str, Any]:
        """The ``.bin`` sets; with the TFDS source also their pairs, already read."""
        return {"face_verification_sets": dict(self.dataset.verification),
                "face_verification_pairs": dict(self.dataset.pairs or {})}

    def default_best_metric(self) -> str | None:
        """Mean verification accuracy of the first ``face_verification`` evaluator."""
        names = sorted(n for n, e in (self.config.get("evals") or {}).items()
                       if e.get("type") == "face_verification")
        return f"{names[0]}/mean_accuracy" if names else None

    @classmethod
    def preprocessing(cls, config: Any) -> dict[str, Any]:
        """insightface's ``(x - 127.5) / 128`` on uint8-range RGB (``data/face/pipeline.py``)."""
        from stra_jax.data.face.pipeline import FACE_MEAN, FACE_STD

        return {"task": "face", "range": [0.0, 255.0], "mean": [FACE_MEAN] * 3, "std": [FACE_STD] * 3,
                "formula": "(rgb - mean) / std, rgb = uint8 as float",
                "source": "stra_jax.data.face.pipeline.normalize_face",
                "resize": "bilinear to H x W when the image differs (aligned crops)"}

    @classmethod
    def eval_batches(cls, config: Any, paths: Sequence[str], image_size: tuple[int, int], batch_size: int
                     ) -> Iterator[np.ndarray]:
        """The verification pipeline (``verification_batches``) on ``paths``."""
        from stra_jax.data.face.pipeline import verification_batches

        encoded = [Path(p).read_bytes() for p in paths]
        return verification_batches(encoded, batch_size=batch_size, image_size=image_size, names=list(paths))

