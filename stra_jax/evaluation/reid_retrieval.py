"""The ReID retrieval evaluator: query/gallery features -> mAP, mINP, CMC.

Settings (``config.evals.<name>``, type ``reid_retrieval``) and their defaults
are :data:`DEFAULTS` (the configs start from them); the task supplies the
dataset as ``context["reid_dataset"]``.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import jax

from stra_jax.data.reid.common import ReIDDataset
from stra_jax.evaluation.evaluators import check_settings
from stra_jax.evaluation.reid import evaluate
from stra_jax.sharding import check_batch_divisible

DEFAULTS: dict[str, Any] = dict(
    image_size=(256, 128),
    batch_size=128,        # global; must divide over the devices
    output="embedding",    # model output used as the feature
    metric="euclidean",    # euclidean | sqeuclidean | cosine
    normalize=False,       # L2-normalise features first
    flip=False,            # average the features of the image and its mirror
    rerank=False,          # k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)
    max_rank=50,
)


class ReIDRetrieval:
    """Market-1501 protocol (torchreid's ``eval_market1501``) on the query and
    gallery of ``context["reid_dataset"]``."""

    def __init__(self, name: str, settings: dict[str, Any], context: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = check_settings(name, settings, DEFAULTS)
        dataset = context.get("reid_dataset")
        if not isinstance(dataset, ReIDDataset):
            raise ValueError(f"config.evals.{name}: a reid_retrieval evaluator needs a ReID dataset, "
                             "which this task does not supply")
        self.dataset = dataset  # its images were checked when the task loaded it

    def check(self, mesh: jax.sharding.Mesh) -> None:
        check_batch_divisible(self.settings["batch_size"], mesh, f"config.evals.{self.name}.batch_size")

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        from stra_jax.evaluation.features import extract_features  # imports TensorFlow: only when run

        s = self.settings
        query, gallery = self.dataset.query, self.dataset.gallery
        start = time.perf_counter()
        kw = dict(batch_size=s["batch_size"], image_size=tuple(s["image_size"]), flip=s["flip"],
                  output=s["output"], mesh=mesh)
        qf = extract_features(model, variables, [r.path for r in query], **kw)
        gf = extract_features(model, variables, [r.path for r in gallery], **kw)
        seconds = time.perf_counter() - start
        result = evaluate(qf, gf, [r.pid for r in query], [r.pid for r in gallery], [r.camid for r in query],
                          [r.camid for r in gallery], metric=s["metric"], normalize=s["normalize"],
                          rerank=s["rerank"], max_rank=s["max_rank"])
        return {**result.as_dict(), "feature_dim": int(qf.shape[1]), "extract_seconds": round(seconds, 3)}

    def table(self, metrics: Mapping[str, Any]) -> str:
        keys = [("mAP", "mAP"), ("mINP", "mINP"), ("rank1", "R-1"), ("rank5", "R-5"), ("rank10", "R-10"),
                ("rank20", "R-20")]
        keys = [(k, label) for k, label in keys if k in metrics]
        return (f"{self.name} ({self.dataset.name}: {metrics.get('num_queries', '?')} queries, "
                f"{len(self.dataset.gallery)} gallery, dim {metrics.get('feature_dim', '?')})\n"
                + "".join(f"{label:>7}" for _, label in keys) + "\n"
                + "".join(f"{100 * metrics[k]:7.1f}" for k, _ in keys))
