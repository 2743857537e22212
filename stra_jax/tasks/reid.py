"""Person re-identification: identity classification + L_d, retrieval evaluation.

Config keys read here: ``dataset`` (name, root, optional ``synthetic`` spec),
``input`` (image_size, augment), ``seed``, ``train.label_smoothing``,
``train.diversity_weight``. The evaluators (``config.evals``, usually one
``reid_retrieval``) get the dataset's query and gallery.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import jax
import numpy as np

from stra_jax.data.reid import ReIDDataset, prepare_dataset
from stra_jax.losses import identity_objective
from stra_jax.tasks.base import Task


class ReIDTask(Task):
    """Train on a ReID dataset's ``train`` split (pids as classes); evaluate
    on its query/gallery protocol."""

    progress_metrics = ("ce", "diversity", "accuracy")
    dataset: ReIDDataset

    def load(self) -> str:
        synthetic = self.config.dataset.get("synthetic")
        self.dataset = prepare_dataset(self.config.dataset.name, self.data_root(),
                                       synthetic.to_dict() if synthetic else None)
        return self.dataset.summary()

    @property
    def num_classes(self) -> int:
        return self.dataset.num_train_pids

    @property
    def num_train_examples(self) -> int:
        return len(self.dataset.train)

    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        from stra_jax.data.pipeline import Augment, train_dataset

        cfg = self.config.input
        return train_dataset(self.dataset.train, global_batch=global_batch, image_size=tuple(cfg.image_size),
                             seed=self.config.seed, epoch=epoch, start_step=start_step,
                             augmentation=Augment(**cfg.augment.to_dict()), process_index=process_index,
                             process_count=process_count).as_numpy_iterator()

    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Identity cross-entropy (optionally label-smoothed) + w * L_d."""
        cfg = self.config.train
        objective = identity_objective(cfg.label_smoothing, cfg.diversity_weight)
        return objective(outputs, batch, collections)

    def eval_context(self) -> dict[str, Any]:
        return {"reid_dataset": self.dataset}
