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

from stra_jax.data.classification.dataset import ClassificationDataset
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
    (N, C). Ties rank the lower class index first (as ``argmax`` and
    ``torch.topk`` do), so a collapsed network with equal logits is not scored
    correct; a non-finite label score is never correct."""
    score = logits[np.arange(len(labels)), labels][:, None]
    classes = np.arange(logits.shape[1])[None, :]
    above = (logits > score) | ((logits == score) & (classes < labels[:, None]))
    return (above.sum(axis=1) < k) & np.isfinite(score[:, 0])


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of (N, C) logits against (N,) labels, in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def _is_tfds(dataset: Any) -> bool:
    """Whether ``dataset`` is the TFDS source's (TFDS is imported only when no folder set was given)."""
    if dataset is None:
        return False
    from stra_jax.data.classification.tfds import TFDSClassification

    return isinstance(dataset, TFDSClassification)


class ClassificationAccuracy(Evaluator):
    """Top-k accuracy on the validation split of ``context["classification_dataset"]``
    (a :class:`ClassificationDataset`, or the TFDS source's ``TFDSClassification``)."""

    def __init__(self, name: str, settings: dict[str, Any], context: Mapping[str, Any]) -> None:
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
        if isinstance(dataset, ClassificationDataset):
            num_val = len(dataset.val)
        elif _is_tfds(dataset):  # the TFDS source: streamed, never in memory
            num_val = dataset.num_val
        else:
            raise ValueError(f"config.evals.{name}: a classification evaluator needs a classification dataset, "
                             "which this task does not supply")
        if not num_val:
            raise ValueError(f"config.evals.{name}: {dataset.name} has no validation images")
        self.dataset = dataset

    def check(self, mesh: jax.sharding.Mesh) -> None:
        check_batch_divisible(self.settings["batch_size"], mesh, f"config.evals.{self.name}.batch_size")

    def predictions(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``(logits (num_val, num_classes) float32, labels (num_val,) int64)`` of the
        validation images: in order for a folder set; for a TFDS set in the order
        of its hosts' parts (top-k does not depend on the order)."""
        from stra_jax.evaluation.features import extract_features, forward_batches, gather_host_rows, mesh_processes
        from stra_jax.sharding import make_mesh

        s = self.settings
        if isinstance(self.dataset, ClassificationDataset):
            from stra_jax.data.classification.pipeline import eval_dataset  # TensorFlow: only when run

            pipeline = functools.partial(eval_dataset, crop_fraction=float(s["crop_fraction"]))
            logits = extract_features(model, variables, [e.path for e in self.dataset.val],
                                      batch_size=s["batch_size"], image_size=tuple(s["image_size"]),
                                      output="logits", mesh=mesh, images=self.dataset.images, pipeline=pipeline)
            return logits, np.array([e.label for e in self.dataset.val], np.int64)
        mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
        host, hosts = mesh_processes(mesh)
        labels, valid = [], []

        def images():  # this host's batches; their labels and padding mask kept aside
            for batch in self.dataset.eval_batches(batch_size=s["batch_size"], image_size=tuple(s["image_size"]),
                                                   crop_fraction=float(s["crop_fraction"]), process_index=host,
                                                   process_count=hosts):
                labels.append(batch["labels"])
                valid.append(batch["valid"])
                yield batch

        logits = forward_batches(model, variables, images(), output="logits", mesh=mesh,
                                 batch_size=s["batch_size"])
        keep = gather_host_rows(np.stack(valid), mesh)
        return logits[keep], gather_host_rows(np.stack(labels), mesh)[keep].astype(np.int64)

    def logits(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
        """(num_val, num_classes) float32 logits of the validation images (see :meth:`predictions`)."""
        return self.predictions(model, variables, mesh)[0]

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        logits, labels = self.predictions(model, variables, mesh)
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
