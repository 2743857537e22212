"""Image classification (ImageNet-style pretraining): class cross-entropy
(optionally label-smoothed), top-1 / top-5 evaluation.

Config keys read here:

* ``dataset``: ``name`` ("folder": ``root/train/<class>/*``, ``root/val/<class>/*``;
  "synthetic": the built-in pretraining set, generated into ``root`` or
  ``WORKDIR/data/synthetic`` from ``dataset.synthetic``; or, with
  ``source="tfds"``, any TFDS builder with ``image`` and ``label`` features:
  ``imagenet2012``, ``imagenette``, ..., streamed: only the "random" sampler,
  and the order depends on the host count), ``root``, ``options`` (the reader's
  keyword options, e.g. ``train_dir``/``val_dir``), ``skip_corrupt``,
  ``source`` ("folder" | "tfds"), ``data_dir``, ``train_split`` / ``eval_split``
  (TFDS split names);
* ``input``: ``image_size`` (H, W), ``augment`` (``crop`` "inception" |
  "resize", ``area``, ``aspect``, ``flip``), ``sampler``;
* ``train.losses``: weighted terms, usually ``ce`` (``label_smoothing``) and,
  for StRA networks, ``diversity`` (L_d).

The evaluators (``config.evals``, usually one ``classification``) get the
dataset as ``classification_dataset``; the best checkpoint is the one with the
highest top-1 of the first of them.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

from stra_jax.data.classification.dataset import ClassificationDataset, prepare_classification
from stra_jax.data.image_check import check_images
from stra_jax.tasks.base import Task


class ClassificationTask(Task):
    """Train on a classification set's ``train`` split; top-k accuracy on its ``val`` split."""

    progress_metrics = ("ce", "diversity", "accuracy")
    #: a folder set, or the TFDS source's ``TFDSClassification`` (streamed: no example list)
    dataset: Any

    def __init__(self, config: Any, workdir=None) -> None:
        super().__init__(config, workdir)
        self.check_losses()

    def load_folder(self) -> str:
        """Read (or generate) the folders, then decode every image once (cached in
        ``WORKDIR/cache``): a corrupt file stops the run naming it, or with
        ``dataset.skip_corrupt`` is skipped and counted."""
        cfg = self.config.dataset
        synthetic = cfg.get("synthetic")
        options = cfg.get("options")
        dataset = prepare_classification(cfg.name, self.data_root(), synthetic.to_dict() if synthetic else None,
                                         options.to_dict() if hasattr(options, "to_dict") else options)
        cache = self.workdir / "cache" / f"images_ok_{cfg.name}.json" if self.workdir else None
        start = time.perf_counter()
        _, skipped = check_images(list(dataset.train) + list(dataset.val), skip_corrupt=cfg.get("skip_corrupt", False),
                                  cache=cache)
        bad = set(skipped)
        self.dataset = dataclasses.replace(dataset, train=tuple(e for e in dataset.train if e.path not in bad),
                                           val=tuple(e for e in dataset.val if e.path not in bad))
        note = f"checked {len(dataset.train) + len(dataset.val)} images in {time.perf_counter() - start:.1f} s"
        if skipped:
            note += f"; skipped {len(skipped)} corrupt (dataset.skip_corrupt): " + ", ".join(skipped[:5])
        return f"{self.dataset.summary()}\n{note}"

    def load_tfds(self) -> str:
        """A TFDS build with ``image`` and ``label`` features, streamed
        (``data/classification/tfds.py``): only its metadata is read here."""
        self._check_streamed_sampler()  # before anything is read
        from stra_jax.data.classification.tfds import load_tfds_classification

        cfg = self.config.dataset
        start = time.perf_counter()
        self.dataset = load_tfds_classification(cfg.name, cfg.get("data_dir") or None,
                                                train_split=cfg.get("train_split", "train"),
                                                eval_split=cfg.get("eval_split", "validation"))
        return f"{self.dataset.summary()}\nread from TFDS in {time.perf_counter() - start:.1f} s"

    @property
    def streamed(self) -> bool:
        """Whether the data is the TFDS source's stream (no list of examples)."""
        return not isinstance(self.dataset, ClassificationDataset)

    def _check_streamed_sampler(self) -> None:
        """The TFDS source reads records in a shuffled stream: only the "random" sampler applies."""
        name = (self.config.get("input") or {}).get("sampler") or "random"
        if name != "random":
            raise ValueError(f"config.input.sampler={name!r}: config.dataset.source='tfds' streams the records "
                             "(shuffled in a buffer, no access by index), so only the 'random' sampler applies; "
                             "use the 'folder' source for another sampler")

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def num_train_examples(self) -> int:
        return self.dataset.num_train if self.streamed else len(self.dataset.train)

    def train_labels(self) -> np.ndarray:
        if self.streamed:
            raise ValueError(f"config.dataset.source='tfds': the training labels of {self.dataset.name} are not "
                             "known without reading the whole split, so no sampler that needs them applies "
                             f"(config.input.sampler={(self.config.get('input') or {}).get('sampler')!r})")
        return np.asarray([e.label for e in self.dataset.train], np.int64)

    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        kw = dict(epoch=epoch, start_step=start_step, global_batch=global_batch, process_index=process_index,
                  process_count=process_count)
        if not self.streamed:
            return self.train_stream(epochs=1, **kw)
        self._check_streamed_sampler()
        return self.dataset.numpy_train_batches(image_size=tuple(self.config.input.image_size),
                                                seed=self.config.seed, augmentation=self._augmentation(), **kw)

    def train_stream(self, *, epoch: int, start_step: int, epochs: int, global_batch: int, process_index: int,
                     process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """Folder source: one pipeline for all ``epochs``; streamed TFDS (epochs of
        ImageNet size): a pipeline per epoch (the default)."""
        from stra_jax.data.classification.pipeline import train_dataset
        from stra_jax.data.images import numpy_batches

        kw = dict(epoch=epoch, start_step=start_step, global_batch=global_batch, process_index=process_index,
                  process_count=process_count)
        if self.streamed:
            return super().train_stream(epochs=epochs, **kw)
        ds = train_dataset(self.dataset.train, images=self.dataset.images, sampler=self.sampler, epochs=epochs,
                           image_size=tuple(self.config.input.image_size), seed=self.config.seed,
                           augmentation=self._augmentation(), **kw)
        return numpy_batches(ds, [e.path for e in self.dataset.train], self.dataset.images)

    def _augmentation(self) -> Any:
        from stra_jax.data.classification.pipeline import ClassAugment

        augment = self.config.input.get("augment")
        return ClassAugment(**(augment.to_dict() if augment else {}))

    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The weighted terms of ``config.train.losses`` (CE with label smoothing, + w * L_d)."""
        return self.objective(outputs, batch, collections)

    def eval_context(self) -> dict[str, Any]:
        return {"classification_dataset": self.dataset}

    def default_best_metric(self) -> str | None:
        """top-1 of the first ``classification`` evaluator (by name), e.g. ``"val/top1"``."""
        names = sorted(n for n, e in (self.config.get("evals") or {}).items() if e.get("type") == "classification")
        return f"{names[0]}/top1" if names else None

    @classmethod
    def preprocessing(cls, config: Any) -> dict[str, Any]:
        """ImageNet normalisation of [0, 1] RGB after the resize + central crop of evaluation."""
        from stra_jax.data.images import IMAGENET_MEAN, IMAGENET_STD

        crop = _eval_crop_fraction(config)
        return {"task": "classification", "range": [0.0, 1.0], "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "formula": "(rgb - mean) / std, rgb = uint8 / 255",
                "source": "stra_jax.data.classification.pipeline.eval_dataset",
                "resize": f"bilinear, aspect kept, to cover H x W / {crop}; central H x W crop"}

    @classmethod
    def eval_batches(cls, config: Any, paths: Sequence[str], image_size: tuple[int, int], batch_size: int
                     ) -> Iterator[np.ndarray]:
        """The classification evaluation pipeline on ``paths``."""
        from stra_jax.data.classification.pipeline import eval_dataset
        from stra_jax.data.images import numpy_batches

        ds = eval_dataset(list(paths), batch_size=batch_size, image_size=image_size,
                          crop_fraction=_eval_crop_fraction(config))
        for batch in numpy_batches(ds, paths):
            yield batch["images"]


def _eval_crop_fraction(config: Any) -> float:
    """The first classification evaluator's ``crop_fraction`` (default 0.875)."""
    from stra_jax.evaluation.classification import DEFAULTS

    for _, e in sorted((config.get("evals") or {}).items()):
        if e.get("type") == "classification":
            return float(e.get("crop_fraction", DEFAULTS["crop_fraction"]))
    return float(DEFAULTS["crop_fraction"])
