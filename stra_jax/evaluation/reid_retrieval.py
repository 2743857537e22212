"""The ReID retrieval evaluator: query/gallery features -> mAP, mINP, CMC.

Settings (``config.evals.<name>``, type ``reid_retrieval``) and their defaults
are :data:`DEFAULTS` (the configs start from them); the task supplies the
dataset as ``context["reid_dataset"]``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from stra_jax.data.reid.common import ReIDDataset
from stra_jax.evaluation.evaluators import Evaluator, check_settings
from stra_jax.evaluation.distances import retrieval_distances
from stra_jax.evaluation.reid import evaluate
from stra_jax.sharding import check_batch_divisible
from stra_jax.utils import as_path

DEFAULTS: dict[str, Any] = dict(
    image_size=(256, 128),
    batch_size=128,        # global; must divide over the devices
    output="embedding",    # model output used as the feature
    metric="euclidean",    # euclidean | sqeuclidean | cosine
    normalize=False,       # L2-normalise features first
    flip=False,            # average the features of the image and its mirror
    rerank=False,          # k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)
    aqe=False,             # average query expansion of query + gallery before the distances
    aqe_k=5,               # AQE neighbours, the item itself included (fast-reid TEST.AQE.QE_K)
    aqe_alpha=3.0,         # AQE weight cosine ** alpha (fast-reid TEST.AQE.ALPHA)
    max_rank=50,
)


def _check_aqe_settings(name: str, s: Mapping[str, Any]) -> None:
    """``aqe`` a bool, ``aqe_k`` a positive integer, ``aqe_alpha`` a finite number >= 0
    (checked even while ``aqe`` is off, so a typo fails before a long run)."""
    where = f"config.evals.{name}"
    if not isinstance(s["aqe"], (bool, np.bool_)):
        raise ValueError(f"{where}.aqe={s['aqe']!r}: expected True or False")
    k = s["aqe_k"]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{where}.aqe_k={k!r}: expected a positive integer (neighbours, the item itself included)")
    alpha = s["aqe_alpha"]
    if (isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating))
            or not math.isfinite(alpha) or alpha < 0):
        raise ValueError(f"{where}.aqe_alpha={alpha!r}: expected a finite number >= 0")


class ReIDRetrieval(Evaluator):
    """Market-1501 protocol (torchreid's ``eval_market1501``) on the query and
    gallery of ``context["reid_dataset"]``.

    ``retain_features = True`` keeps the last ``run``'s features (and references to
    its model and variables) so that :meth:`write_rank_lists` draws the very ranking
    ``run`` scored without extracting again (``prepare_artifacts`` sets it when
    ``eval.py --visualize-ranks`` asks for ranked lists).
    """

    retain_features: bool = False
    artifact_options = ("visualize_ranks", "rank_worst", "rank_random", "rank_dir")

    def __init__(self, name: str, settings: dict[str, Any], context: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = check_settings(name, settings, DEFAULTS)
        _check_aqe_settings(name, self.settings)
        dataset = context.get("reid_dataset")
        if not isinstance(dataset, ReIDDataset):
            raise ValueError(f"config.evals.{name}: a reid_retrieval evaluator needs a ReID dataset, "
                             "which this task does not supply")
        self.dataset = dataset  # its images were checked when the task loaded it

    def check(self, mesh: jax.sharding.Mesh) -> None:
        check_batch_divisible(self.settings["batch_size"], mesh, f"config.evals.{self.name}.batch_size")

    def _extract(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(num_query, D) and (num_gallery, D) features, as the settings ask (flip, output, size)."""
        from stra_jax.evaluation.features import extract_features  # imports TensorFlow: only when run

        s = self.settings
        kw = dict(batch_size=s["batch_size"], image_size=tuple(s["image_size"]), flip=s["flip"],
                  output=s["output"], mesh=mesh, images=self.dataset.images)
        qf = extract_features(model, variables, [r.path for r in self.dataset.query], **kw)
        gf = extract_features(model, variables, [r.path for r in self.dataset.gallery], **kw)
        if self.retain_features:
            self._retained = (model, variables, qf, gf)
        return qf, gf

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        s = self.settings
        query, gallery = self.dataset.query, self.dataset.gallery
        start = time.perf_counter()
        qf, gf = self._extract(model, variables, mesh)
        seconds = time.perf_counter() - start
        result = evaluate(qf, gf, [r.pid for r in query], [r.pid for r in gallery], [r.camid for r in query],
                          [r.camid for r in gallery], max_rank=s["max_rank"], **self._distance_options())
        return {**result.as_dict(), "feature_dim": int(qf.shape[1]), "extract_seconds": round(seconds, 3)}

    def _distance_options(self) -> dict[str, Any]:
        """The settings that shape the distances, as ``retrieval_distances`` / ``evaluate``
        take them: one place, so ``run`` and the ranked lists cannot drift."""
        s = self.settings
        return dict(metric=s["metric"], normalize=s["normalize"], rerank=s["rerank"],
                    aqe=(int(s["aqe_k"]), float(s["aqe_alpha"])) if s["aqe"] else None)

    def distances(self, qf: np.ndarray, gf: np.ndarray) -> np.ndarray:
        """(num_query, num_gallery) distances exactly as :func:`~stra_jax.evaluation.reid.evaluate`
        ranks them for ``run`` (aqe, metric, normalize, rerank of the settings)."""
        return retrieval_distances(qf, gf, **self._distance_options())

    def write_rank_lists(self, model: Any, variables: dict[str, Any], out_dir: str | Path, k: int = 10,
                         num_worst: int = 8, num_random: int = 8, seed: int = 0,
                         mesh: jax.sharding.Mesh | None = None) -> list[Path]:
        """Ranked-list pictures (torchreid's ``visrank``) of the ``num_worst`` lowest-AP
        queries and ``num_random`` others (``seed``): one PNG per query (the query, then
        its top-``k`` gallery images, green = same pid, red = other pid; same pid and
        camera excluded, as in mAP) and ``ranks.json`` (each query's path, AP and ranked
        gallery), in ``<out_dir>/ranks_<name>/``, which is replaced as a whole.

        The features are the last ``run``'s when ``retain_features`` was set and the
        model and variables are the same objects, else extracted again. Returns the
        written paths (PNGs, then ``ranks.json``).
        """
        from stra_jax.evaluation.rank_figure import draw_rank_list, load_image
        from stra_jax.evaluation.rank_lists import rank_gallery_with_ap, select_queries
        from stra_jax.utils import atomic_directory, write_json_atomic

        retained = getattr(self, "_retained", None)
        if retained is not None and retained[0] is model and retained[1] is variables:
            qf, gf = retained[2:]
        else:
            qf, gf = self._extract(model, variables, mesh)
        s, query, gallery = self.settings, self.dataset.query, self.dataset.gallery
        distmat = self.distances(qf, gf)
        indices, matches, ap = rank_gallery_with_ap(
            distmat, np.array([r.pid for r in query]), np.array([r.pid for r in gallery]),
            np.array([r.camid for r in query]), np.array([r.camid for r in gallery]), k)
        chosen = select_queries(ap, num_worst, num_random, seed)
        valid = ~np.isnan(ap)
        kinds = ["worst"] * min(num_worst, len(chosen)) + ["random"] * max(0, len(chosen) - num_worst)
        size = tuple(s["image_size"])
        aqe = f"AQE k {s['aqe_k']} alpha {s['aqe_alpha']:g}"
        setting = ", ".join([s["metric"]] + [label for key, label in (("normalize", "L2-normalised"),
                                                 ("flip", "flip"), ("aqe", aqe), ("rerank", "re-ranked")) if s[key]])
        final = as_path(out_dir) / f"ranks_{self.name}"
        entries, names = [], []
        with atomic_directory(final, overwrite=True) as staging:
            for n, (q, kind) in enumerate(zip(chosen, kinds)):
                number = n + 1 if kind == "worst" else n + 1 - num_worst
                name = f"{kind}{number:02d}_q{q:05d}.png"
                qr = query[q]
                # ``camid`` 0-based as the protocol uses it; ``camera`` as the file name writes it.
                camera = self.dataset.camera_name
                ranked = [dict(rank=r + 1, path=str(gallery[g].path), pid=int(gallery[g].pid),
                               camid=int(gallery[g].camid), camera=int(camera(gallery[g])),
                               distance=float(distmat[q, g]), match=bool(m))
                          for r, (g, m) in enumerate(zip(indices[q], matches[q])) if g >= 0]
                image = self.dataset.open_image  # a file, or the bytes of a TFDS-held image
                draw_rank_list(
                    staging / name, load_image(image(qr.path), size), f"query\npid {qr.pid} cam {camera(qr)}",
                    [load_image(image(e["path"]), size) for e in ranked],
                    [f"#{e['rank']} d={e['distance']:.4g}\npid {e['pid']} cam {e['camera']}" for e in ranked],
                    [e["match"] for e in ranked],
                    title=f"{kind} #{number}: query {q} ({Path(qr.path).name}), AP {100 * ap[q]:.1f}%   "
                          f"[{self.dataset.name}, {setting}; same pid + camera excluded]")
                entries.append(dict(selection=kind, query_index=q, path=str(qr.path), pid=int(qr.pid),
                                    camid=int(qr.camid), camera=int(camera(qr)), ap=float(ap[q]), png=name,
                                    ranked=ranked))
                names.append(name)
            write_json_atomic(staging / "ranks.json", dict(
                evaluator=self.name, dataset=self.dataset.name, k=k, metric=s["metric"],
                normalize=s["normalize"], flip=s["flip"], aqe=bool(s["aqe"]),
                aqe_k=int(s["aqe_k"]) if s["aqe"] else None, aqe_alpha=float(s["aqe_alpha"]) if s["aqe"] else None,
                rerank=s["rerank"], seed=seed,
                mAP=float(np.nanmean(ap)) if valid.any() else None, num_valid_queries=int(valid.sum()),
                queries=entries))
        return [final / name for name in names] + [final / "ranks.json"]

    def prepare_artifacts(self, options: Mapping[str, Any]) -> None:
        """Ranked lists asked for: keep ``run``'s features to rank them."""
        if options.get("visualize_ranks"):
            self.retain_features = True

    def write_artifacts(self, metrics: Mapping[str, Any], out_dir: str | Path, *, model: Any = None,
                        variables: dict[str, Any] | None = None,
                        options: Mapping[str, Any] | None = None) -> list[Path]:
        """With ``options["visualize_ranks"] = k`` > 0: :meth:`write_rank_lists` of
        ``rank_worst`` + ``rank_random`` queries into ``rank_dir`` (default ``out_dir``)."""
        options = options or {}
        k = int(options.get("visualize_ranks") or 0)
        if k <= 0:
            return []
        if model is None or variables is None:
            raise ValueError(f"{self.name}: ranked lists need the model and its variables")
        return self.write_rank_lists(model, variables, options.get("rank_dir") or out_dir, k=k,
                                     num_worst=int(options.get("rank_worst", 8)),
                                     num_random=int(options.get("rank_random", 8)))

    def table(self, metrics: Mapping[str, Any]) -> str:
        keys = [("mAP", "mAP"), ("mINP", "mINP"), ("rank1", "R-1"), ("rank5", "R-5"), ("rank10", "R-10"),
                ("rank20", "R-20")]
        keys = [(k, label) for k, label in keys if k in metrics]
        return (f"{self.name} ({self.dataset.name}: {metrics.get('num_queries', '?')} queries, "
                f"{len(self.dataset.gallery)} gallery, dim {metrics.get('feature_dim', '?')})\n"
                + "".join(f"{label:>7}" for _, label in keys) + "\n"
                + "".join(f"{100 * metrics[k]:7.1f}" for k, _ in keys))
