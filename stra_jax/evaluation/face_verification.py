"""The face verification evaluator: embeddings of every ``.bin`` pair set ->
insightface's 10-fold accuracy, VAL@FAR and the ROC (``evaluation/face.py``).

Settings (``config.evals.<name>``, type ``face_verification``) and defaults are
:data:`DEFAULTS`; the task supplies ``context["face_verification_sets"]``
(name -> ``.bin`` path). Metrics: ``<set>/accuracy``, ``<set>/accuracy_std``,
``<set>/threshold``, ``<set>/val``, ``<set>/far`` per set, and
``mean_accuracy`` over the sets (what the face configs keep the best checkpoint
by); the ROC of each set travels as ``<set>/roc`` (``fpr``, ``tpr`` lists) and
``write_artifacts`` draws it as a PNG.

Flip fusion: ``concat`` (the paper: [e(x), e(flip x)], then L2-normalised by the
protocol), ``sum`` (insightface: e(x) + e(flip x)) or ``none``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from stra_jax.evaluation.evaluators import Evaluator, check_settings
from stra_jax.evaluation.face import evaluate
from stra_jax.evaluation.features import jitted_forward
from stra_jax.sharding import batch_sharding, check_batch_divisible, gather_to_host, make_mesh, replicated
from stra_jax.utils import as_path

FLIPS = ("concat", "sum", "none")
DEFAULTS: dict[str, Any] = dict(
    image_size=(112, 112),
    batch_size=64,          # global; must divide over the devices
    flip="concat",          # concat (paper) | sum (insightface) | none
    nrof_folds=10,
    far_target=1e-3,        # VAL@FAR
    sets=(),                # names of the .bin sets to run; empty = all the task found
)


def fuse(embedding: np.ndarray, flipped: np.ndarray | None, flip: str) -> np.ndarray:
    """(N, D) embeddings of the images and of their mirror images -> the test
    feature: (N, 2D) for ``concat``, (N, D) for ``sum`` / ``none``."""
    if flip == "concat":
        return np.concatenate([embedding, flipped], axis=1)
    if flip == "sum":
        return embedding + flipped
    return embedding


def embed_images(model: Any, variables: dict[str, Any], batches, *, count: int, flip: bool,
                 mesh: jax.sharding.Mesh) -> tuple[np.ndarray, np.ndarray | None]:
    """``(embeddings (count, D), embeddings of the mirrored images or None)``
    from global NumPy batches (every host holds each whole batch), with the
    batch sharded over ``mesh``."""
    in_sharding = batch_sharding(mesh)
    plain, mirrored = [], []
    for batch in batches:
        images = jax.make_array_from_callback(batch.shape, in_sharding, lambda index, b=batch: b[index])
        out, out_flipped = gather_to_host(jitted_forward(model, variables, images, output="embedding", flip=flip))
        plain.append(out)
        mirrored.append(out_flipped)
    plain_all = np.concatenate(plain)[:count].astype(np.float32)
    return plain_all, (np.concatenate(mirrored)[:count].astype(np.float32) if flip else None)


def without_classifier(model: Any, variables: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The model without its classifier (``num_classes=0``) and the variables it
    needs: a classifier of millions of identities is never copied to every
    device for an evaluation that does not use it."""
    if not getattr(model, "num_classes", 0):
        return model, variables
    from stra_jax.models.io import abstract_variables

    bare = model.clone(num_classes=0)
    keep = abstract_variables(bare)

    def prune(tree, shape_tree):
        return {k: prune(v, shape_tree[k]) if isinstance(v, Mapping) else v
                for k, v in tree.items() if k in shape_tree}

    return bare, {c: prune(variables.get(c, {}), keep.get(c, {})) for c in ("params", "batch_stats")}


class FaceVerification(Evaluator):
    """insightface's verification protocol on the task's ``.bin`` pair sets."""

    def __init__(self, name: str, settings: dict[str, Any], context: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = check_settings(name, settings, DEFAULTS)
        if self.settings["flip"] not in FLIPS:
            raise ValueError(f"config.evals.{name}.flip={self.settings['flip']!r}: expected one of {FLIPS}")
        sets = context.get("face_verification_sets")
        if sets is None:
            raise ValueError(f"config.evals.{name}: a face_verification evaluator needs .bin verification sets, "
                             "which this task does not supply")
        wanted = tuple(self.settings["sets"])
        missing = [s for s in wanted if s not in sets]
        if missing:
            raise ValueError(f"config.evals.{name}.sets: {missing} not found; available sets: {sorted(sets)}")
        self.sets: dict[str, Path] = {s: Path(sets[s]) for s in (wanted or sorted(sets))}
        if not self.sets:
            raise ValueError(f"config.evals.{name}: no .bin verification sets found in the dataset folder")
        # Pairs a task has already read (the TFDS source: ``face_verification_pairs``,
        # name -> (encoded images, issame)) are used instead of reading the .bin file.
        read = context.get("face_verification_pairs") or {}
        self._cache: dict[str, tuple[list[bytes], np.ndarray]] = {n: read[n] for n in self.sets if n in read}

    def check(self, mesh: jax.sharding.Mesh) -> None:
        check_batch_divisible(self.settings["batch_size"], mesh, f"config.evals.{self.name}.batch_size")
        for name in self.sets:
            self._pairs(name)  # reads and decodes each set once, before training

    def _pairs(self, name: str) -> tuple[list[bytes], np.ndarray]:
        if name not in self._cache:
            from stra_jax.data.face.pipeline import decode_verification_images
            from stra_jax.data.face.verification_bin import read_verification_bin

            images, issame = read_verification_bin(self.sets[name])
            decode_verification_images(str(self.sets[name]), images)
            self._cache[name] = (images, issame)
        return self._cache[name]

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        from stra_jax.data.face.pipeline import verification_batches  # imports TensorFlow: only when run

        s = self.settings
        mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
        check_batch_divisible(s["batch_size"], mesh, f"config.evals.{self.name}.batch_size")
        model, variables = without_classifier(model, variables)
        variables = jax.device_put(variables, replicated(mesh))
        out: dict[str, Any] = {}
        accuracies = []
        start = time.perf_counter()
        for name in self.sets:
            images, issame = self._pairs(name)
            batches = verification_batches(images, batch_size=s["batch_size"], image_size=tuple(s["image_size"]))
            plain, mirrored = embed_images(model, variables, batches, count=len(images),
                                           flip=s["flip"] != "none", mesh=mesh)
            result = evaluate(fuse(plain, mirrored, s["flip"]), issame, nrof_folds=s["nrof_folds"],
                              far_target=s["far_target"])
            for key in ("accuracy", "accuracy_std", "threshold", "val", "far"):
                out[f"{name}/{key}"] = result[key]
            out[f"{name}/pairs"] = int(issame.size)
            out[f"{name}/roc"] = {"fpr": result["fpr"].round(6).tolist(), "tpr": result["tpr"].round(6).tolist()}
            accuracies.append(result["accuracy"])
        out["mean_accuracy"] = float(np.mean(accuracies))
        out["extract_seconds"] = round(time.perf_counter() - start, 3)
        return out

    def table(self, metrics: Mapping[str, Any]) -> str:
        lines = [f"{self.name} (face verification, {self.settings['nrof_folds']}-fold, flip "
                 f"{self.settings['flip']})", f"{'set':<18}{'pairs':>7}{'accuracy':>18}{'VAL@FAR':>16}"]
        for name in self.sets:
            if f"{name}/accuracy" not in metrics:
                continue
            acc = f"{100 * metrics[f'{name}/accuracy']:.2f} +- {100 * metrics[f'{name}/accuracy_std']:.2f}"
            val = f"{100 * metrics[f'{name}/val']:.2f} @ {metrics[f'{name}/far']:.4f}"
            lines.append(f"{name:<18}{metrics.get(f'{name}/pairs', 0):>7}{acc:>18}{val:>16}")
        if "mean_accuracy" in metrics:
            lines.append(f"{'mean':<18}{'':>7}{100 * metrics['mean_accuracy']:>11.2f}")
        return "\n".join(lines)

    def write_artifacts(self, metrics: Mapping[str, Any], out_dir: str | Path, *, model: Any = None,
                        variables: dict[str, Any] | None = None,
                        options: Mapping[str, Any] | None = None) -> list[Path]:
        """One ROC curve PNG per set (``<out_dir>/roc_<set>.png``): true accept rate
        (%) against false accept rate on a log axis, as insightface users read it
        (a linear axis hides the low-FAR end where VAL@FAR lives), with the
        VAL@FAR point marked; returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from stra_jax.utils import save_figure

        written = []
        for name in self.sets:
            roc = metrics.get(f"{name}/roc")
            if not roc:
                continue
            fpr, tpr = np.asarray(roc["fpr"]), 100 * np.asarray(roc["tpr"])
            positive = fpr > 0  # a log axis cannot show FAR 0: the curve starts at the smallest FAR reached
            low = 10 ** np.floor(np.log10(fpr[positive].min())) if positive.any() else 1e-4
            fig, ax = plt.subplots(figsize=(5.0, 4.5), dpi=100)
            ax.plot(fpr[positive], tpr[positive], lw=2, color="C0",
                    label=f"ROC (accuracy {100 * metrics[f'{name}/accuracy']:.2f}%)")
            chance = np.logspace(np.log10(low), 0, 50)
            ax.plot(chance, 100 * chance, ls="--", c="grey", lw=1, label="chance")
            val, far = metrics.get(f"{name}/val"), metrics.get(f"{name}/far")
            if val is not None and far is not None:
                at = max(far, low)
                ax.plot([at], [100 * val], "o", color="C3", ms=7, zorder=3,
                        label=f"VAL@FAR: {100 * val:.2f}% at FAR {100 * far:.3g}% "
                              f"(target {100 * self.settings['far_target']:.3g}%)")
            ax.set_xscale("log")
            ax.set(xlim=(low, 1), ylim=(0, 101), xlabel="false accept rate (log)", ylabel="true accept rate (%)",
                   title=f"ROC: {name} ({metrics.get(f'{name}/pairs', '?')} pairs)")
            ax.legend(loc="lower right", fontsize=8)
            ax.grid(alpha=0.3, which="both")
            fig.tight_layout()
            path = as_path(out_dir) / f"roc_{name}.png"
            written.append(save_figure(fig, path))
        return written
