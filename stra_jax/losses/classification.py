"""Classification losses: (label-smoothed) cross-entropy, the identity loss with
the attention-diversity term, CosFace / ArcFace margin logits for faces, and the
"ce" loss term (identity cross-entropy on the model's linear classifier).

All arithmetic is float32 whatever the input dtype: bf16 logits would lose the
small differences a softmax over thousands of identities depends on.
"""
from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

from stra_jax.losses.objective import build_objective
from stra_jax.losses.registry import LOSSES, LossContext, Objective, Term, loss_term


def check_logits_labels(logits: jax.Array, labels: jax.Array, what: str = "logits") -> None:
    """Raise ValueError unless ``logits`` is (B, C) and ``labels`` (B,) integers."""
    if logits.ndim != 2:
        raise ValueError(f"{what} must be (B, num_classes), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},) to match {what} {logits.shape}, "
                         f"got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-sample cross-entropy with optional label smoothing.

    Targets are ``(1 - eps) * onehot + eps / num_classes`` (torchreid's
    ``CrossEntropyLoss(label_smooth=True)``; also ``F.cross_entropy(label_smoothing=eps)``).

    Args:
        logits: (B, C), any float dtype.
        labels: (B,) integer class indices in [0, C).
        label_smoothing: eps in [0, 1].

    Returns:
        (B,) float32 losses. An out-of-range label gives NaN for that sample,
        so a label bug shows up under jit instead of silently training on the
        smoothing term alone.
    """
    check_logits_labels(logits, labels)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    num_classes = logits.shape[1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.clip(labels, 0, num_classes - 1)[:, None], axis=-1)[:, 0]
    # (1-eps) * nll + eps * mean_c(-logp): the smoothed-target sum, without building one-hots.
    loss = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
    valid = (labels >= 0) & (labels < num_classes)
    return jnp.where(valid, loss, jnp.nan)


def mean_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
                       ) -> tuple[jax.Array, jax.Array]:
    """Mean :func:`cross_entropy` and top-1 accuracy of logits (B, C) against
    labels (B,): two float32 scalars."""
    ce = jnp.mean(cross_entropy(logits, labels, label_smoothing))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return ce, accuracy


def identity_loss(
    logits: jax.Array,
    labels: jax.Array,
    diversity: jax.Array | float,
    *,
    label_smoothing: float,
    diversity_weight: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy plus the weighted attention-diversity regulariser.

    Args:
        logits: (B, C) identity logits.
        labels: (B,) identity indices.
        diversity: (B,) per-sample diversity penalty, or a scalar (0 when the
            model sows none).
        label_smoothing: eps of :func:`cross_entropy`.
        diversity_weight: weight of ``mean(diversity)`` in the total.

    Returns:
        ``(total, metrics)``: float32 scalar ``mean CE + w * mean(diversity)``
        and float32 scalars "loss", "ce", "diversity", "accuracy" (top-1).
    """
    diversity = jnp.asarray(diversity, jnp.float32)
    if diversity.shape not in ((), (logits.shape[0],)):
        raise ValueError(f"diversity must be a scalar or ({logits.shape[0]},), got {diversity.shape}")
    ce, accuracy = mean_cross_entropy(logits, labels, label_smoothing)
    div = jnp.mean(diversity)
    total = ce + jnp.float32(diversity_weight) * div
    return total, {"loss": total, "ce": ce, "diversity": div, "accuracy": accuracy}


def identity_objective(label_smoothing: float = 0.0, diversity_weight: float = 1.0) -> Objective:
    """The ReID training objective as a train-step loss function
    ``(outputs, batch, collections) -> (loss, metrics)``: the "ce" term on
    ``outputs["logits"]`` and ``batch["labels"]`` plus ``diversity_weight`` x
    the "diversity" term (L_d summed over every StRA block from the sown
    ``collections["losses"]``); the numbers of :func:`identity_loss`."""
    return build_objective({"ce": {"weight": 1.0, "label_smoothing": label_smoothing},
                            "diversity": {"weight": diversity_weight}}, LossContext())


@LOSSES.register("ce")
@loss_term(metrics=("ce", "accuracy"), options={"label_smoothing": 0.0})
def ce_term(options: dict, context: LossContext) -> Term:
    """Identity cross-entropy on ``outputs["logits"]`` (B, C) against
    ``batch["labels"]`` (B,), label-smoothed by ``label_smoothing`` in [0, 1];
    metrics "ce" and "accuracy" (top-1)."""
    eps = options["label_smoothing"]
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 <= eps <= 1.0:
        raise ValueError(f"{context.key}.label_smoothing={eps!r}: expected a number in [0, 1]")

    def term(outputs, batch, collections):
        if "logits" not in outputs:
            raise ValueError("identity classification needs a model with a linear classifier "
                             f"(outputs['logits']); the model returned {sorted(outputs)}")
        ce, accuracy = mean_cross_entropy(outputs["logits"], batch["labels"], eps)
        return ce, {"ce": ce, "accuracy": accuracy}

    return term


def l2_normalize(x: jax.Array) -> jax.Array:
    """Rows of ``x`` (B, D) scaled to unit L2 norm, float32: torch's
    ``F.normalize(x, dim=1)`` (``x / max(||x||, 1e-12)``), so a zero row stays 0
    and its gradient is finite. reid-strong-baseline's ``normalize``
    (``x / (||x|| + 1e-12)``) differs by a relative 1e-12 / ||x||."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True), 1e-24))


def cosines(embeddings: jax.Array, weights: jax.Array, labels: jax.Array) -> jax.Array:
    """(B, D) x (D, C) -> (B, C) cosines between L2-normalised rows and columns."""
    if embeddings.ndim != 2 or weights.ndim != 2 or embeddings.shape[1] != weights.shape[0]:
        raise ValueError(f"need embeddings (B, D) and weights (D, C), got {embeddings.shape} and {weights.shape}")
    # torch's F.normalize floor (eps=1e-12), so zero vectors give 0, not NaN: rows of e, columns of w
    # (normalised along axis 0 in place: l2_normalize(w.T).T sums in another order, 1 ulp off the
    # numbers the face runs were measured with)
    e = l2_normalize(embeddings)
    w = weights.astype(jnp.float32)
    w = w * jax.lax.rsqrt(jnp.maximum(jnp.sum(w * w, axis=0, keepdims=True), 1e-24))
    cos = jnp.dot(e, w, precision=jax.lax.Precision.HIGHEST)
    check_logits_labels(cos, labels, "cosines")
    return jnp.clip(cos, -1.0, 1.0)


def cosface_logits(
    embeddings: jax.Array, weights: jax.Array, labels: jax.Array, s: float = 20.0, m: float = 0.2
) -> jax.Array:
    """CosFace (large-margin cosine) logits ``s * (cos - m * onehot)``.

    Args:
        embeddings: (B, D); normalised here, so raw features are fine.
        weights: (D, C) class weights; columns normalised here.
        labels: (B,) target classes.
        s, m: scale and additive cosine margin.

    Returns:
        (B, C) float32 logits for :func:`cross_entropy`.
    """
    cos = cosines(embeddings, weights, labels)
    onehot = jax.nn.one_hot(labels, cos.shape[1], dtype=jnp.float32)
    return s * (cos - m * onehot)


def arcface_logits(
    embeddings: jax.Array, weights: jax.Array, labels: jax.Array, s: float = 20.0, m: float = 0.15
) -> jax.Array:
    """ArcFace (additive angular margin) logits, insightface's convention.

    Target class: ``cos(theta + m)`` while ``cos(theta) > cos(pi - m)``, i.e.
    while ``theta + m < pi`` keeps the logit decreasing in theta; beyond it
    (insightface's non-easy-margin fallback) ``cos(theta) - m * sin(m)``
    (``sin(pi - m) * m``). Other classes keep ``cos(theta)``. Everything is
    scaled by ``s``.

    Args:
        embeddings: (B, D); normalised here.
        weights: (D, C) class weights; columns normalised here.
        labels: (B,) target classes.
        s, m: scale and angular margin (radians).

    Returns:
        (B, C) float32 logits for :func:`cross_entropy`.
    """
    cos = cosines(embeddings, weights, labels)
    onehot = jax.nn.one_hot(labels, cos.shape[1], dtype=jnp.float32)
    target = jnp.sum(cos * onehot, axis=1)
    sin_sq = 1.0 - target * target
    # Double where: sqrt'(0) is infinite, and |cos| = 1 happens for aligned vectors.
    positive = sin_sq > 0
    sin = jnp.where(positive, jnp.sqrt(jnp.where(positive, sin_sq, 1.0)), 0.0)
    with_margin = target * math.cos(m) - sin * math.sin(m)
    fallback = target - math.sin(math.pi - m) * m
    new_target = jnp.where(target > math.cos(math.pi - m), with_margin, fallback)
    return s * jnp.where(onehot > 0, new_target[:, None], cos)
