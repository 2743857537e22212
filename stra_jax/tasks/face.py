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
* ``train``: ``loss``, ``margin``, ``scale``, ``straight_through``,
  ``diversity_weight`` (plus the loop's keys);
* ``model.shard_classifier``: split the classifier's (D, classes) weights over
  the devices along the class axis (its class count padded to a multiple of
  the device count; the padded columns never enter the softmax), so that
  millions of identities fit; the loss then never gathers the weights.

The evaluators (``config.evals``, usually one ``face_verification``) get the
``.bin`` sets as ``face_verification_sets``.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax
import numpy as np

from stra_jax.data.face.dataset import FaceDataset, prepare_face_dataset
from stra_jax.data.image_check import decode_error
from stra_jax.margin_losses import check_margin_settings, margin_objective
from stra_jax.models.registry import get_entry
from stra_jax.sharding import DATA
from stra_jax.tasks.base import Task
from stra_jax.utils import write_json_atomic

CLASSIFIER_KERNEL = r"\['classifier'\]\['kernel'\]$"
_CHECK_CHUNK = 4096  # images read into memory at a time by the up-front check


class FaceTask(Task):
    """Train on a face set's identities; evaluate by verification on its ``.bin`` pairs."""

    progress_metrics = ("ce", "diversity", "accuracy")
    dataset: FaceDataset

    def __init__(self, config: Any, workdir=None) -> None:
        super().__init__(config, workdir)
        t = config.train
        # Fail on a bad margin/scale before anything is read or created.
        check_margin_settings(t.get("loss", "arcface"), t.get("margin", 0.0), t.get("scale", 1.0))
        self._objective = None

    def load(self) -> str:
        cfg = self.config.dataset
        synthetic = cfg.get("synthetic")
        start = time.perf_counter()
        source = cfg.get("source", "folder")
        if source == "tfds":
            self.dataset = self._load_tfds()
            note = f"\nread from TFDS in {time.perf_counter() - start:.1f} s"
        elif source == "folder":
            self.dataset = prepare_face_dataset(cfg.name, self.data_root(),
                                                synthetic.to_dict() if synthetic else None,
                                                tuple(cfg.get("verification", ())))
            note = ""
        else:
            raise ValueError(f"config.dataset.source={source!r}: expected 'folder' or 'tfds'")
        if cfg.get("check_images", True):
            note += f"\n{self._check_train_images()} in {time.perf_counter() - start:.1f} s"
        t = self.config.train
        self._objective = margin_objective(t.loss, t.margin, t.scale, diversity_weight=t.diversity_weight,
                                           num_classes=self.num_classes,
                                           straight_through=t.get("straight_through", False),
                                           shard_classifier=self.shard_classifier)
        return self.dataset.summary() + note

    def _load_tfds(self) -> FaceDataset:
        """The training set and the verification pairs from the TFDS builds (the
        built-in synthetic set: generated and built first when absent)."""
        from stra_jax.data.tfds.face import (build_face_tfds, load_face_train, load_face_verification,
                                             tfds_config_for)

        cfg = self.config.dataset
        if cfg.name == "folder":
            raise ValueError("config.dataset.source='tfds' reads insightface's RecordIO layout; pack an image "
                             "folder first (python -m stra_jax.tools.pack_faces) and build that")
        data_dir = cfg.get("data_dir") or None
        set_name = tfds_config_for(cfg.name, cfg.get("root", ""), cfg.get("tfds_config", ""))
        folder = None
        if cfg.name == "synthetic_faces":  # the built-in set: generate and build on first use
            data_dir = data_dir or str(self.data_root().parent / "tfds")
            synthetic = cfg.get("synthetic")
            folder = prepare_face_dataset(cfg.name, self.data_root(), synthetic.to_dict() if synthetic else None)
            build_face_tfds(set_name, folder.root, data_dir)
        train = load_face_train(set_name, data_dir)
        if folder is not None and (len(train), train.num_classes) != (len(folder.train), folder.train.num_classes):
            raise ValueError(f"{train.source} holds {len(train)} images of {train.num_classes} identities, "
                             f"{folder.root} {len(folder.train)} of {folder.train.num_classes}: built from another "
                             "synthetic spec; remove it or set config.dataset.data_dir elsewhere")
        built, pairs = load_face_verification(set_name, data_dir, tuple(cfg.get("verification", ())))
        return FaceDataset(cfg.name, Path(train.builder.data_dir), train,
                           {name: Path(built) / name for name in pairs}, pairs=pairs)

    def _check_train_images(self) -> str:
        """Decode every training image once (a thread pool); a bad one stops the
        run naming its file and record. A set found good is remembered in
        ``WORKDIR/cache`` by its files' size and mtime."""
        train = self.dataset.train
        stamp = _stamp(train)
        cache = self.workdir / "cache" / f"faces_ok_{self.config.dataset.name}.json" if self.workdir else None
        if cache is not None and cache.is_file():
            try:
                if json.loads(cache.read_text()) == stamp:
                    return f"training images checked before ({len(train)}, cached)"
            except (OSError, ValueError):
                pass
        with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
            # Read in order, decode in parallel, a chunk at a time: pool.map takes its
            # whole input at once, and a whole face set does not fit in memory.
            for start in range(0, len(train), _CHECK_CHUNK):
                indices = range(start, min(start + _CHECK_CHUNK, len(train)))
                encoded = [train.read(i)[0] for i in indices]
                for index, error in zip(indices, pool.map(decode_error, encoded)):
                    if error is not None:
                        raise ValueError(f"{train.describe(index)}: corrupt or undecodable image ({error}); fix "
                                         "the set, or set dataset.check_images=False to find it during training")
        if cache is not None:
            write_json_atomic(cache, stamp)
        return f"checked {len(train)} training images"

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

    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        from stra_jax.data.face.pipeline import numpy_train_batches

        cfg = self.config.input
        train = self.dataset.train
        if hasattr(train, "in_order"):  # the TFDS source: read the epoch's order ahead in chunks
            from stra_jax.data.pipeline import host_epoch_slice

            order, _ = host_epoch_slice(len(train), global_batch, self.config.seed, epoch, start_step,
                                        process_index, process_count)
            train = train.in_order(order)
        return numpy_train_batches(train, global_batch=global_batch,
                                   image_size=tuple(cfg.image_size), seed=self.config.seed, epoch=epoch,
                                   start_step=start_step, flip=cfg.get("flip", True),
                                   process_index=process_index, process_count=process_count)

    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Margin cross-entropy (softmax / CosFace / ArcFace) + w * L_d."""
        if self._objective is None:
            raise RuntimeError("FaceTask.loss before load()")
        return self._objective(outputs, batch, collections)

    def eval_context(self) -> dict[str, Any]:
        """The ``.bin`` sets; with the TFDS source also their pairs, already read."""
        return {"face_verification_sets": dict(self.dataset.verification),
                "face_verification_pairs": dict(self.dataset.pairs or {})}


def _stamp(train) -> dict[str, Any]:
    """What identifies the training files' contents for the image-check cache."""
    if hasattr(train, "stamp"):  # e.g. the TFDS source: its build
        return train.stamp()
    source = str(train.source)
    paths = getattr(train, "paths", None) or [source, str(os.path.splitext(source)[0] + ".idx")]
    stats = []
    for p in paths:
        st = os.stat(p)
        stats.append([p, st.st_size, st.st_mtime_ns])
    return {"version": 1, "files": stats}
