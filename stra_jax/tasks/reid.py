"""Person re-identification: identity classification + L_d, retrieval evaluation.

Config keys read here: ``dataset`` (name, root, skip_corrupt, optional ``synthetic`` spec and
reader ``options``),
``input`` (image_size, augment, sampler: "random" or "pk" for P x K identity
batches), ``seed``, ``train.losses`` (weighted loss terms: identity
cross-entropy "ce", StRA's L_d "diversity", and the metric losses "triplet",
"center", "circle" of the bag-of-tricks recipes). The
evaluators (``config.evals``, usually one ``reid_retrieval``) get the
dataset's query and gallery.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

from stra_jax.data.image_check import check_images
from stra_jax.data.reid import ReIDDataset, prepare_dataset
from stra_jax.tasks.base import Task


class ReIDTask(Task):
    """Train on a ReID dataset's ``train`` split (pids as classes); evaluate
    on its query/gallery protocol."""

    progress_metrics = ("ce", "triplet", "center", "circle", "diversity", "accuracy")
    dataset: ReIDDataset

    def __init__(self, config: Any, workdir=None) -> None:
        super().__init__(config, workdir)
        self.check_losses()

    def load_folder(self) -> str:
        """Read (or generate) the dataset, then decode every train, query and
        gallery image once (cached in ``WORKDIR/cache``): a corrupt file stops
        the run here, naming it, or with ``dataset.skip_corrupt`` is skipped."""
        cfg = self.config.dataset
        synthetic = cfg.get("synthetic")
        options = cfg.get("options")  # the reader's keyword arguments (custom datasets)
        dataset = prepare_dataset(cfg.name, self.data_root(), synthetic.to_dict() if synthetic else None,
                                  options.to_dict() if hasattr(options, "to_dict") else options)
        cache = self.workdir / "cache" / f"images_ok_{cfg.name}.json" if self.workdir else None
        start = time.perf_counter()
        names = ("train", "query", "gallery")
        # One check over all splits, so the error counts every bad file at once.
        _, skipped = check_images([r for n in names for r in getattr(dataset, n)],
                                  skip_corrupt=cfg.get("skip_corrupt", False), cache=cache)
        bad = set(skipped)
        splits = {n: tuple(r for r in getattr(dataset, n) if str(r.path) not in bad) for n in names}
        self.dataset = dataclasses.replace(dataset, **splits)
        total = sum(len(getattr(dataset, n)) for n in names)
        note = f"checked {total} images in {time.perf_counter() - start:.1f} s"
        if skipped:
            note += f"; skipped {len(skipped)} corrupt (dataset.skip_corrupt): " + ", ".join(skipped[:5])
            note += " ..." if len(skipped) > 5 else ""
        return f"{self.dataset.summary()}\n{note}"

    def load_tfds(self) -> str:
        """The TFDS build of ``dataset.name`` (its images were checked when it was
        built); the built-in synthetic set is generated and built first when absent."""
        from stra_jax.data.tfds import build_reid_tfds, load_reid_tfds, tfds_name

        cfg = self.config.dataset
        if cfg.get("options"):
            raise ValueError("config.dataset.options: reader options apply to the folder source only "
                             "(the TFDS build was read with them)")
        data_dir = cfg.get("data_dir") or None
        start = time.perf_counter()
        if cfg.name == "synthetic":  # the built-in set: generated and built on first use, else its spec checked
            from stra_jax.data.reid.synthetic import SyntheticSpec
            from stra_jax.data.tfds.generated import build_or_check

            data_dir = data_dir or str(self.data_root().parent / "tfds")
            synthetic = cfg.synthetic.to_dict() if cfg.get("synthetic") else {}

            def generate_and_build() -> None:
                folder = prepare_dataset("synthetic", self.data_root(), synthetic)
                build_reid_tfds(tfds_name("synthetic"), folder.root, data_dir)

            build_or_check([tfds_name("synthetic")], data_dir, SyntheticSpec(**synthetic), generate_and_build)
        self.dataset = load_reid_tfds(cfg.name, data_dir)
        return f"{self.dataset.summary()}\nread from TFDS in {time.perf_counter() - start:.1f} s"

    @property
    def num_classes(self) -> int:
        return self.dataset.num_train_pids

    @property
    def num_train_examples(self) -> int:
        return len(self.dataset.train)

    def train_labels(self) -> np.ndarray:
        """The (relabelled) pid of each training record."""
        return np.asarray([r.pid for r in self.dataset.train], np.int64)

    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        return self.train_stream(epoch=epoch, start_step=start_step, epochs=1, global_batch=global_batch,
                                 process_index=process_index, process_count=process_count)

    def train_stream(self, *, epoch: int, start_step: int, epochs: int, global_batch: int, process_index: int,
                     process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """One pipeline for all ``epochs`` (``data/reid/pipeline.py``)."""
        from stra_jax.data.reid.pipeline import Augment, numpy_batches, train_dataset

        cfg = self.config.input
        ds = train_dataset(self.dataset.train, global_batch=global_batch, image_size=tuple(cfg.image_size),
                           seed=self.config.seed, epoch=epoch, start_step=start_step, epochs=epochs,
                           augmentation=Augment(**cfg.augment.to_dict()), process_index=process_index,
                           process_count=process_count, images=self.dataset.images, sampler=self.sampler)
        return numpy_batches(ds, [r.path for r in self.dataset.train], self.dataset.images)

    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The weighted terms of ``config.train.losses`` (the recipes: identity
        cross-entropy, optionally label-smoothed, + w * L_d)."""
        return self.objective(outputs, batch, collections)

    def model_overrides(self) -> dict[str, Any]:
        """The classifier's width, and center loss's class centers in the head when
        ``train.losses`` has a ``center`` term (``models/heads.py``)."""
        overrides = super().model_overrides()
        if "center" in (self.config.train.get("losses") or {}):
            overrides["centers"] = True
        return overrides

    def eval_context(self) -> dict[str, Any]:
        return {"reid_dataset": self.dataset}

    def default_best_metric(self) -> str | None:
        """mAP of the first ``reid_retrieval`` evaluator (by name), e.g. ``"reid/mAP"``."""
        names = sorted(n for n, e in (self.config.get("evals") or {}).items() if e.get("type") == "reid_retrieval")
        return f"{names[0]}/mAP" if names else None

    @classmethod
    def preprocessing(cls, config: Any) -> dict[str, Any]:
        """ImageNet normalisation of [0, 1] RGB after a bilinear resize (``data/reid/pipeline.py``)."""
        from stra_jax.data.reid.pipeline import IMAGENET_MEAN, IMAGENET_STD

        return {"task": "reid", "range": [0.0, 1.0], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "formula": "(rgb - mean) / std, rgb = uint8 / 255", "source": "stra_jax.data.reid.pipeline.normalize",
                "resize": "bilinear to H x W"}

    @classmethod
    def eval_batches(cls, config: Any, paths: Sequence[str], image_size: tuple[int, int], batch_size: int
                     ) -> Iterator[np.ndarray]:
        """The ReID evaluation pipeline (``eval_dataset``) on ``paths``."""
        from stra_jax.data.reid.pipeline import eval_dataset, numpy_batches

        for batch in numpy_batches(eval_dataset(paths, batch_size=batch_size, image_size=image_size), paths):
            yield batch["images"]
