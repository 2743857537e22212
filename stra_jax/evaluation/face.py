"""Face verification: insightface's 10-fold protocol on (LFW-style) image pairs.

Rows 2i and 2i+1 of ``embeddings`` are pair i, as in insightface's ``.bin``
files; ``issame[i]`` says whether they show the same person. The protocol
(insightface ``verification.py``, ``evaluate``/``calculate_roc``/``calculate_val``):

* embeddings are L2-normalised; the distance is the squared L2 distance (0..4);
* the pairs are split into ``nrof_folds`` consecutive folds (scikit-learn
  ``KFold(shuffle=False)``: the first ``n % k`` folds get one pair more);
* per fold, the threshold in ``0, 0.01, ..., 3.99`` with the best accuracy on
  the other folds (the first one on ties) classifies the fold's pairs as "same"
  when ``dist < threshold``; accuracy is the mean (and std) over folds;
* VAL@FAR: per fold, the threshold in ``0, 0.001, ..., 3.999`` at which the
  other folds' false-accept rate is ``far_target`` (linear interpolation of
  threshold against FAR, 0 if no threshold reaches it; see
  :func:`far_threshold`), then VAL and FAR on the fold.

The ``face_verification`` evaluator (``face_verification.py``) runs it on the
``.bin`` sets during training and in ``eval.py``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ACC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


def kfold_indices(n: int, k: int) -> list[np.ndarray]:
    """Consecutive folds of ``range(n)``, sizes as scikit-learn ``KFold(k)``."""
    if not 2 <= k <= n:
        raise ValueError(f"nrof_folds={k}: expected 2 <= folds <= number of pairs ({n})")
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(k)]


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance of each pair (rows 2i, 2i+1) after L2 normalisation: (P,)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or e.shape[0] % 2:
        raise ValueError(f"embeddings shape {e.shape}: expected (2 * pairs, dim), rows 2i and 2i+1 a pair")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.sum(np.square(e[0::2] - e[1::2]), axis=1)


def _counts(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """tp, fp, tn, fn per threshold, (T,) each, with "same" = dist < threshold."""
    predict = dist[None, :] < thresholds[:, None]
    same = issame[None, :]
    tp = np.sum(predict & same, axis=1)
    fp = np.sum(predict & ~same, axis=1)
    tn = np.sum(~predict & ~same, axis=1)
    fn = np.sum(~predict & same, axis=1)
    return tp, fp, tn, fn


def _accuracy(dist, issame, thresholds):
    tp, _, tn, _ = _counts(dist, issame, thresholds)
    return (tp + tn) / dist.size


def _val_far(dist, issame, thresholds):
    tp, fp, _, _ = _counts(dist, issame, thresholds)
    n_same, n_diff = np.sum(issame), np.sum(~issame)
    val = tp / n_same if n_same else np.zeros_like(tp, float)
    far = fp / n_diff if n_diff else np.zeros_like(fp, float)
    return val, far


def far_threshold(far: np.ndarray, thresholds: np.ndarray, far_target: float) -> float:
    """The threshold at which FAR reaches ``far_target``, linearly interpolated in
    FAR; 0 if no threshold reaches it.

    insightface calls ``interp1d(far, thresholds, kind="slinear")``, which current
    SciPy refuses when FAR repeats (it always does: FAR is a step function of the
    threshold). Here each distinct FAR value keeps its first (smallest) threshold,
    which is the same line through the same corner points.
    """
    if np.max(far) < far_target:
        return 0.0
    values, first = np.unique(far, return_index=True)
    return float(np.interp(far_target, values, thresholds[first]))


def evaluate(embeddings: np.ndarray, issame: np.ndarray, nrof_folds: int = 10,
             far_target: float = 1e-3) -> dict[str, Any]:
    """10-fold verification of (2P, D) embeddings and (P,) issame.

    Returns ``accuracy`` and ``accuracy_std`` (over folds), ``threshold`` (mean
    of the folds' best thresholds), ``val``, ``val_std`` and ``far`` (VAL@FAR =
    ``far_target``), and ``tpr`` / ``fpr`` (T,) averaged over folds (the ROC).
    """
    dist = pair_distances(embeddings)
    issame = np.asarray(issame, bool)
    if issame.shape != dist.shape:
        raise ValueError(f"issame shape {issame.shape}: expected ({dist.size},), one flag per pair")
    folds = kfold_indices(dist.size, nrof_folds)
    accuracy, best, vals, fars, tprs, fprs = [], [], [], [], [], []
    for test in folds:
        train = np.setdiff1d(np.arange(dist.size), test)
        acc_train = _accuracy(dist[train], issame[train], ACC_THRESHOLDS)
        threshold = ACC_THRESHOLDS[int(np.argmax(acc_train))]  # the first best, as np.argmax
        best.append(threshold)
        accuracy.append(float(_accuracy(dist[test], issame[test], np.array([threshold]))[0]))
        tp, fp, tn, fn = _counts(dist[test], issame[test], ACC_THRESHOLDS)
        tprs.append(np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0))
        fprs.append(np.where(fp + tn > 0, fp / np.maximum(fp + tn, 1), 0.0))

        _, far_train = _val_far(dist[train], issame[train], VAL_THRESHOLDS)
        val_threshold = far_threshold(far_train, VAL_THRESHOLDS, far_target)
        val, far = _val_far(dist[test], issame[test], np.array([val_threshold]))
        vals.append(float(val[0]))
        fars.append(float(far[0]))
    return {
        "accuracy": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
        "threshold": float(np.mean(best)), "val": float(np.mean(vals)), "val_std": float(np.std(vals)),
        "far": float(np.mean(fars)), "tpr": np.mean(tprs, axis=0), "fpr": np.mean(fprs, axis=0),
    }
