"""Metric-learning losses of the ReID "bag of tricks" recipe (Luo et al. 2019)
and the "triplet", "center" and "circle" loss terms.

* :func:`pairwise_euclidean`, :func:`hard_example_mining`, :func:`triplet_loss`:
  batch-hard triplet loss (Hermans et al. 2017) as reid-strong-baseline's
  ``layers/triplet_loss.py``;
* :func:`center_loss`: Wen et al. 2016 as reid-strong-baseline's
  ``layers/center_loss.py``;
* :func:`circle_loss`: Sun et al. 2020, the pairwise form of fast-reid's
  ``fastreid/modeling/losses/circle_loss.py``.

Mining is over the global batch: under ``jax.jit`` with the batch sharded over
the mesh axis "data", the (B, B) distance matrix is built from all devices'
features (XLA gathers them), so the loss does not depend on the device count.
Only masks are used (no boolean indexing), so shapes are static. All arithmetic
is float32.

The pairs exist only if the batch holds >= 2 images of every identity and >= 2
identities (a P x K sampler); each pair-based term's function has a host-side
``check_labels(labels)`` that refuses other batches before training starts.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stra_jax.losses.classification import l2_normalize
from stra_jax.losses.registry import LOSSES, LossContext, Term, loss_term

HIGHEST = lax.Precision.HIGHEST
SAMPLER_HINT = "use config.input.sampler='pk' (sampler_options.num_instances=4)"


def pairwise_euclidean(x: jax.Array) -> jax.Array:
    """Euclidean distances between the rows of ``x`` (B, D) -> (B, B) float32.

    reid-strong-baseline's ``euclidean_dist(x, x)``:
    ``sqrt(max(||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, 1e-12))``; the floor keeps the
    gradient of sqrt finite on the diagonal (distance ~1e-6 there).
    """
    if x.ndim != 2:
        raise ValueError(f"features must be (B, D), got shape {x.shape}")
    x = x.astype(jnp.float32)
    sq = jnp.sum(x * x, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * jnp.dot(x, x.T, precision=HIGHEST)
    return jnp.sqrt(jnp.maximum(d2, 1e-12))


def _check_labels_shape(labels: jax.Array, batch: int) -> None:
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},) to match the features, got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer identity indices, got dtype {labels.dtype}")


def hard_example_mining(dist: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Batch-hard mining (Hermans et al. 2017, "In Defense of the Triplet Loss";
    reid-strong-baseline's ``hard_example_mining``).

    Args:
        dist: (B, B) distances.
        labels: (B,) integer identities.

    Returns:
        ``(dist_ap, dist_an)``, (B,) float32 each: per anchor, the largest
        distance to an image of its identity (itself included, distance ~1e-6,
        so an anchor without another positive gets that) and the smallest
        distance to another identity (+inf when the batch holds none: no
        negative is infinitely far, so the triplet term of that anchor is 0,
        as fast-reid's 1e9 sentinel gives). The pair is chosen by argmax /
        argmin and read back with a gather, so the gradient reaches exactly one
        entry per anchor (the first on a tie, as torch's ``max(dim)``), where
        ``jnp.max`` would split it among ties.
    """
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be (B, B), got shape {dist.shape}")
    _check_labels_shape(labels, dist.shape[0])
    dist = dist.astype(jnp.float32)
    same = labels[:, None] == labels[None, :]
    p_idx = jnp.argmax(jnp.where(same, dist, -jnp.inf), axis=1)
    n_idx = jnp.argmin(jnp.where(same, jnp.inf, dist), axis=1)
    dist_ap = jnp.take_along_axis(dist, p_idx[:, None], axis=1)[:, 0]
    dist_an = jnp.take_along_axis(dist, n_idx[:, None], axis=1)[:, 0]
    return dist_ap, jnp.where(jnp.any(~same, axis=1), dist_an, jnp.inf)


def triplet_loss(features: jax.Array, labels: jax.Array, margin: float | None, normalize: bool = False
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Batch-hard triplet loss (Hermans et al. 2017) as reid-strong-baseline's
    ``TripletLoss(margin)(features, labels, normalize_feature)``.

    Args:
        features: (B, D) any float dtype.
        labels: (B,) integer identities.
        margin: ``m >= 0``: ``mean_i relu(d_ap - d_an + m)`` (``MarginRankingLoss``);
            ``None``: the soft margin ``mean_i softplus(d_ap - d_an)``
            (``SoftMarginLoss``).
        normalize: L2-normalise the features first (:func:`l2_normalize`), then
            Euclidean distances, as reid-strong-baseline's ``normalize_feature``.
            fast-reid's ``norm_feat`` uses ``2 - 2 cos``, the squared distance of
            the normalised features: the same hardest pairs, other values.

    Returns:
        ``(loss, metrics)``: float32 scalar; "triplet" (the loss) and
        "triplet_frac_active", the fraction of anchors whose hardest triplet
        violates the margin (``d_ap - d_an + m > 0``, m = 0 for the soft margin).
    """
    x = l2_normalize(features) if normalize else features.astype(jnp.float32)
    dist_ap, dist_an = hard_example_mining(pairwise_euclidean(x), labels)
    gap = dist_ap - dist_an + jnp.float32(0.0 if margin is None else margin)
    per_anchor = jax.nn.softplus(gap) if margin is None else jax.nn.relu(gap)
    loss = jnp.mean(per_anchor)
    return loss, {"triplet": loss, "triplet_frac_active": jnp.mean((gap > 0).astype(jnp.float32))}


def center_loss(features: jax.Array, labels: jax.Array, centers: jax.Array) -> jax.Array:
    """Center loss (Wen et al. 2016, "A Discriminative Feature Learning
    Approach for Deep Face Recognition") as reid-strong-baseline's ``CenterLoss``.

    Args:
        features: (B, D) any float dtype.
        labels: (B,) integer identities in [0, C).
        centers: (C, D) class centers.

    Returns:
        float32 scalar ``mean_i clamp(||x_i - c_{y_i}||^2, 1e-12, 1e12)``; NaN when
        a label is out of range (as the "ce" term), so a label bug shows under jit.
    """
    if features.ndim != 2 or centers.ndim != 2 or features.shape[1] != centers.shape[1]:
        raise ValueError(f"need features (B, D) and centers (C, D), got {features.shape} and {centers.shape}")
    _check_labels_shape(labels, features.shape[0])
    num_classes = centers.shape[0]
    x = features.astype(jnp.float32)
    own = jnp.take(centers.astype(jnp.float32), jnp.clip(labels, 0, num_classes - 1), axis=0)  # (B, D)
    # The difference itself rather than their expansion ||x||^2 + ||c||^2 - 2 x.c
    # over all (B, C) pairs: the same number without its cancellation, B*D work
    # instead of B*C*D. Their clamp of the masked (B, C) matrix also adds 1e-12
    # for each of the C - 1 masked-out classes of every row, i.e. (C - 1) * 1e-12
    # to the loss (7.5e-10 for Market's 751 identities): a constant without
    # gradient, far below the float32 resolution of the values center loss
    # takes (>= 1e-2), so it is not reproduced.
    d2 = jnp.clip(jnp.sum(jnp.square(x - own), axis=1), 1e-12, 1e12)
    valid = (labels >= 0) & (labels < num_classes)
    return jnp.mean(jnp.where(valid, d2, jnp.nan))


def _masked_logsumexp(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """logsumexp over the ``mask``ed entries of each row of (B, N) -> (B,). A row
    without any keeps its own (finite) logits, so neither value nor gradient is
    NaN; the caller discards that row's result."""
    keep = mask | ~jnp.any(mask, axis=1, keepdims=True)
    return jax.nn.logsumexp(jnp.where(keep, logits, -jnp.inf), axis=1)


def circle_loss(features: jax.Array, labels: jax.Array, margin: float = 0.25, gamma: float = 128.0) -> jax.Array:
    """Pairwise circle loss (Sun et al. 2020, "Circle Loss: A Unified
    Perspective of Pair Similarity Optimization", Eq. 6) as fast-reid's
    ``pairwise_circleloss``.

    Cosine similarities ``s`` of the L2-normalised features; positives are the
    other images of the anchor's identity (itself excluded), negatives those of
    other identities. With ``alpha_p = relu(1 + m - s_p)``,
    ``alpha_n = relu(s_n + m)`` (no gradient through the alphas),
    ``delta_p = 1 - m``, ``delta_n = m``::

        loss_i = softplus(logsumexp_p(-gamma alpha_p (s_p - delta_p))
                          + logsumexp_n(gamma alpha_n (s_n - delta_n)))

    and the loss is the mean over all B anchors. fast-reid pushes the masked
    entries to -1e8, so an anchor without a positive or without a negative
    contributes softplus(~-1e8) = 0 with no gradient; here its loss is exactly
    0 and its gradient 0, without NaN.

    Args:
        features: (B, D) any float dtype.
        labels: (B,) integer identities.
        margin, gamma: m (relaxation) and the scale.

    Returns:
        float32 scalar.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (B, D), got shape {features.shape}")
    _check_labels_shape(labels, features.shape[0])
    e = l2_normalize(features)
    s = jnp.dot(e, e.T, precision=HIGHEST)
    same = labels[:, None] == labels[None, :]
    is_pos = same & ~jnp.eye(s.shape[0], dtype=bool)
    is_neg = ~same
    s_const = lax.stop_gradient(s)
    alpha_p = jax.nn.relu(1.0 + margin - s_const)
    alpha_n = jax.nn.relu(s_const + margin)
    logit_p = -gamma * alpha_p * (s - (1.0 - margin))
    logit_n = gamma * alpha_n * (s - margin)
    per_anchor = jax.nn.softplus(_masked_logsumexp(logit_p, is_pos) + _masked_logsumexp(logit_n, is_neg))
    has_pairs = jnp.any(is_pos, axis=1) & jnp.any(is_neg, axis=1)
    return jnp.mean(jnp.where(has_pairs, per_anchor, 0.0))


# ---- the loss terms ----------------------------------------------------------------------------------------------


def metric_features(outputs: Mapping[str, jax.Array], feature: str, key: str) -> jax.Array:
    """The (B, D) features a metric term uses: ``feature="auto"`` is
    ``outputs["pre_neck"]`` when the model returns it (with a BNNeck the metric
    losses see the feature before the BN neck, as reid-strong-baseline) else
    ``outputs["embedding"]``; any other string names an output."""
    if feature == "auto":
        for name in ("pre_neck", "embedding"):
            if name in outputs:
                return outputs[name]
        raise ValueError(f"{key}.feature='auto': the model returned neither 'pre_neck' nor 'embedding'; "
                         f"its outputs: {sorted(outputs)}")
    if feature not in outputs:
        raise ValueError(f"{key}.feature={feature!r}: not an output of the model; its outputs: {sorted(outputs)}")
    return outputs[feature]


def _check_feature_option(feature: Any, key: str) -> None:
    if not isinstance(feature, str) or not feature:
        raise ValueError(f"{key}.feature={feature!r}: expected 'auto' or the name of a model output "
                         "(e.g. 'pre_neck', 'embedding')")


def check_metric_labels(labels: Any, key: str, loss: str, needs_pairs: bool = True) -> None:
    """Host-side check of a global batch's labels (B,) for a metric loss named
    ``loss``; ValueError naming ``key`` unless they are 1-D integers and, with
    ``needs_pairs``, every identity has >= 2 images and there are >= 2
    identities (else the anchors lack positives or negatives)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{key}: labels must be a 1-D array of integer identities, got shape {labels.shape} "
                         f"and dtype {labels.dtype}")
    if not needs_pairs:
        return
    ids, counts = np.unique(labels, return_counts=True)
    singles = int(np.sum(counts == 1))
    held = f"a training batch holds {labels.size} images of {ids.size} identit{'y' if ids.size == 1 else 'ies'}"
    if singles:
        raise ValueError(f"{key}: {held} (1 image each for {singles} of them); {loss} needs >= 2 images per "
                         f"identity: {SAMPLER_HINT}")
    if ids.size < 2:
        raise ValueError(f"{key}: {held}; {loss} needs >= 2 identities per batch (negatives): {SAMPLER_HINT}")


def _with_label_check(term: Callable, context: LossContext, loss: str, needs_pairs: bool = True) -> Term:
    """Attach ``term.check_labels(labels)`` (:func:`check_metric_labels`)."""
    term.check_labels = lambda labels: check_metric_labels(labels, context.key, loss, needs_pairs)  # type: ignore
    return term


def _triplet_margin(value: Any, key: str) -> float | None:
    if value is None or value == "soft":
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key}.margin={value!r}: expected a number >= 0 (reid-strong-baseline: 0.3), "
                         "or None / 'soft' for the soft margin")
    return float(value)


@LOSSES.register("triplet")
@loss_term(metrics=("triplet", "triplet_frac_active"), options={"margin": 0.3, "normalize": False, "feature": "auto"})
def triplet_term(options: dict, context: LossContext) -> Term:
    """Batch-hard triplet loss (:func:`triplet_loss`) on the metric features
    (:func:`metric_features`); ``margin`` a number >= 0 or None / "soft".
    Metrics "triplet" and "triplet_frac_active"."""
    margin = _triplet_margin(options["margin"], context.key)
    if not isinstance(options["normalize"], bool):
        raise ValueError(f"{context.key}.normalize={options['normalize']!r}: expected True or False")
    _check_feature_option(options["feature"], context.key)

    def term(outputs, batch, collections):
        features = metric_features(outputs, options["feature"], context.key)
        return triplet_loss(features, batch["labels"], margin, options["normalize"])

    return _with_label_check(term, context, "the batch-hard triplet loss")


@LOSSES.register("center")
@loss_term(metrics=("center",), options={"feature": "auto"})
def center_term(options: dict, context: LossContext) -> Term:
    """Center loss (:func:`center_loss`) of the metric features against the
    model's ``outputs["centers"]`` (C, D); metric "center". Its label check
    asks only for integer labels: a center needs no pair in the batch."""
    _check_feature_option(options["feature"], context.key)

    def term(outputs, batch, collections):
        if "centers" not in outputs:
            raise ValueError(f"{context.key}: the center loss needs a model built with class centers "
                             f"(outputs['centers'] (C, D)); the model returned {sorted(outputs)}")
        features = metric_features(outputs, options["feature"], context.key)
        value = center_loss(features, batch["labels"], outputs["centers"])
        return value, {"center": value}

    return _with_label_check(term, context, "the center loss", needs_pairs=False)


@LOSSES.register("circle")
@loss_term(metrics=("circle",), options={"margin": 0.25, "gamma": 128.0, "feature": "auto"})
def circle_term(options: dict, context: LossContext) -> Term:
    """Pairwise circle loss (:func:`circle_loss`) on the metric features;
    ``margin`` in [0, 1), ``gamma`` > 0; metric "circle"."""
    margin, gamma = options["margin"], options["gamma"]
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0.0 <= margin < 1.0:
        raise ValueError(f"{context.key}.margin={margin!r}: expected a number in [0, 1) (fast-reid: 0.25)")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0.0 < gamma < math.inf:
        raise ValueError(f"{context.key}.gamma={gamma!r}: expected a number > 0 (fast-reid: 128)")
    _check_feature_option(options["feature"], context.key)

    def term(outputs, batch, collections):
        features = metric_features(outputs, options["feature"], context.key)
        value = circle_loss(features, batch["labels"], float(margin), float(gamma))
        return value, {"circle": value}

    return _with_label_check(term, context, "the pairwise circle loss")
