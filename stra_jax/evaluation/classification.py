"""The classification evaluator: top-1 / top-5 accuracy of the model's logits on
the task's validation split (``config.evals.<name>.type = "classification"``).

Settings and their defaults are :data:`DEFAULTS`; the task supplies the dataset
as ``context["classification_dataset"]``. Images go through the evaluation
preprocessing of ``data/classification/pipeline.py`` (resize to cover
``image_size / crop_fraction``, central crop). Metrics are fractions, shown as
percent in the table (as the ReID evaluator's).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Mapping

import jax
import numpy as np

from stra_jax.evaluation.evaluators import Evaluator, check_settings
from stra_jax.sharding import check_batch_divisible

DEFAULTS: dict[str, Any] = dict(
    image_size=(224, 224),
    batch_size=128,         # global; must divide over the devices
    crop_fraction=0.875,    # resize to cover image_size / 0.875, then the central crop (ImageNet: 256 -> 224)
    topk=(1, 5),
)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the label is among the ``k`` highest of its row of ``logits``
    (N, C), i.e. fewer than ``k`` classes score strictly higher (ties count for
    the label)."""
    label_score = logits[np.arange(len(labels)), labels]
    return (logits > label_score[:, None]).sum(axis=1) < k


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of (N, C) logits against (N,) labels, in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


class ClassificationAccuracy(Evaluator):
    """Top-k accuracy on ``context["classification_dataset"].val``."""

    def __init__(self, name: str, settings: dict[str, Any], context: Mapping[str, Any]) -> None:
        from stra_jax.data.classification.dataset import ClassificationDataset

        self.name = name
        self.settings = check_settings(name, settings, DEFAULTS)
        topk = tuple(int(k) for k in self.settings["topk"])
        if not topk or min(topk) < 1:
            raise ValueError(f"config.evals.{name}.topk={self.settings['topk']!r}: expected positive integers")
        self.topk = topk
        if not 0 < float(self.settings["crop_fraction"]) <= 1:
            raise ValueError(f"config.evals.{name}.crop_fraction={self.settings['crop_fraction']!r}: "
                             "expected a fraction in (0, 1]")
        dataset = context.get("classification_dataset")
        if not isinstance(dataset, ClassificationDataset):
            raise ValueError(f"config.evals.{name}: a classification evaluator needs a classification dataset, "
                             "which this task does not supply")
        if not dataset.val:
            raise ValueError(f"config.evals.{name}: {dataset.name} has no validation images")
        self.dataset = dataset

    def check(self, mesh: jax.sharding.Mesh) -> None:
        check_batch_divisible(self.settings["batch_size"], mesh, f"config.evals.{self.name}.batch_size")

    def logits(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
        """(num_val, num_classes) float32 logits of the validation images, in order."""
        from stra_jax.data.classification.pipeline import eval_dataset  # TensorFlow: only when run
        from stra_jax.evaluation.features import extract_features

        s = self.settings
        pipeline = functools.partial(eval_dataset, crop_fraction=float(s["crop_fraction"]))
        return extract_features(model, variables, [e.path for e in self.dataset.val], batch_size=s["batch_size"],
                                image_size=tuple(s["image_size"]), output="logits", mesh=mesh,
                                images=self.dataset.images, pipeline=pipeline)

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        logits = self.logits(model, variables, mesh)
        labels = np.array([e.label for e in self.dataset.val], np.int64)
        if logits.shape[1] <= labels.max():
            raise ValueError(f"config.evals.{self.name}: the model has {logits.shape[1]} classes but "
                             f"{self.dataset.name}'s validation labels reach {labels.max()}")
        metrics: dict[str, Any] = {f"top{k}": float(topk_correct(logits, labels, k).mean()) for k in self.topk}
        metrics.update(loss=softmax_cross_entropy(logits, labels), num_images=len(labels),
                       extract_seconds=round(time.perf_counter() - start, 3))
        return metrics

    def table(self, metrics: Mapping[str, Any]) -> str:
        keys = [f"top{k}" for k in self.topk if f"top{k}" in metrics]
        return (f"{self.name} ({self.dataset.name}: {metrics.get('num_images', '?')} validation images, "
                f"{self.dataset.num_classes} classes)\n"
                + "".join(f"{k:>8}" for k in keys) + f"{'loss':>8}\n"
                + "".join(f"{100 * metrics[k]:8.2f}" for k in keys) + f"{metrics.get('loss', float('nan')):8.3f}")
