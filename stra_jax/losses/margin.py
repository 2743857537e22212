"""The face loss terms "softmax", "cosface" and "arcface": margin cross-entropy
on a bias-free classifier, optionally sharded along the class axis.

The paper trains its face models with the standard softmax, CosFace and
ArcFace on the same (D, C) class-weight matrix (``classifier="margin"``). With
millions of identities that matrix does not fit, or should not be copied, on
every device, so :func:`sharded_margin_cross_entropy` keeps it split along its
class axis over the mesh axis ``"data"`` (insightface's partial-FC layout, all
classes kept): each device builds the logits of its own classes for the whole
(all-gathered, small) batch of embeddings, and the softmax normaliser, target
logit and argmax are combined with collectives. The (D, C) matrix is never
gathered. :func:`margin_cross_entropy` is the same computation on one block.

Classes may be padded (``weights`` wider than ``num_classes``) so that columns
divide over the devices; padded columns never enter the softmax or the argmax.
All arithmetic is float32.
"""
from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import AbstractMesh, Mesh, PartitionSpec as P

from stra_jax.losses.classification import arcface_logits, check_logits_labels, cosface_logits, cosines
from stra_jax.losses.objective import build_objective
from stra_jax.losses.registry import LOSSES, LossContext, Objective, Term, loss_term
from stra_jax.sharding import DATA

MARGIN_LOSSES = ("softmax", "cosface", "arcface")

# Accepted ranges, wide enough for every published setting: ArcFace m=0.5 at
# s=64 (insightface), the StRA paper's m=0.15 at s=20; CosFace m=0.35 (paper)
# and 0.4 (insightface), the StRA paper's m=0.2 at s=20; MagFace margins reach
# 0.8. m >= 1 is almost surely degrees or a typo; s above 128 saturates the
# float32 softmax for no published gain. m = 0 (NormFace) is allowed.
MARGIN_RANGE = {"cosface": (0.0, 1.0), "arcface": (0.0, 1.0)}  # [lo, hi)
SCALE_RANGE = (0.0, 128.0)  # (lo, hi]

def check_margin_settings(loss: str, margin: float, scale: float, prefix: str = "train") -> None:
    """Raise ValueError naming the config key (``{prefix}.loss``,
    ``{prefix}.margin``, ``{prefix}.scale``), its value and the accepted range.

    Ranges: margin in [0, 1) for cosface and arcface (radians for arcface),
    scale in (0, 128]; ``softmax`` ignores margin and scale.
    """
    if loss not in MARGIN_LOSSES:
        raise ValueError(f"{prefix}.loss={loss!r}: expected one of {MARGIN_LOSSES}")
    if loss == "softmax":
        return
    lo, hi = MARGIN_RANGE[loss]
    unit = " rad" if loss == "arcface" else ""
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not lo <= margin < hi:
        raise ValueError(f"{prefix}.margin={margin!r}: expected a number in [{lo:g}, {hi:g}){unit} for {loss} "
                         "(published: ArcFace 0.5, CosFace 0.35-0.4, the StRA paper 0.15 / 0.2)")
    lo, hi = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not lo < scale <= hi:
        raise ValueError(f"{prefix}.scale={scale!r}: expected a number in ({lo:g}, {hi:g}] for {loss} "
                         "(published: 64, the StRA paper 20)")


def softmax_logits(embeddings: jax.Array, weights: jax.Array, labels: jax.Array) -> jax.Array:
    """The standard softmax's logits ``W^T x`` on the bias-free classifier
    (no normalisation): (B, D) x (D, C) -> (B, C) float32. ``labels`` (B,) are
    only shape-checked."""
    if embeddings.ndim != 2 or weights.ndim != 2 or embeddings.shape[1] != weights.shape[0]:
        raise ValueError(f"need embeddings (B, D) and weights (D, C), got {embeddings.shape} and {weights.shape}")
    logits = jnp.dot(embeddings.astype(jnp.float32), weights.astype(jnp.float32), precision=lax.Precision.HIGHEST)
    check_logits_labels(logits, labels)
    return logits


def straight_through_logits(margined: jax.Array, plain: jax.Array) -> jax.Array:
    """The value of ``margined`` with the gradient of ``plain = s * cos(theta)``:
    ``plain + stop_gradient(margined - plain)``. insightface arcface_torch
    applies the ArcFace margin in place under ``torch.no_grad()``, so its
    gradient is that of the unmargined scaled cosine."""
    return plain + lax.stop_gradient(margined - plain)


def margin_logits(
    loss: str,
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    margin: float,
    scale: float,
    straight_through: bool = False,
) -> jax.Array:
    """(B, C) float32 logits of ``loss`` for embeddings (B, D), weights (D, C)
    and labels (B,).

    - ``softmax``: ``W^T x`` (:func:`softmax_logits`; margin, scale ignored).
    - ``cosface``: ``s (cos theta_y - m)`` on the target, ``s cos theta_j``
      elsewhere (``losses.cosface_logits``).
    - ``arcface``: ``s cos(theta_y + m)`` on the target while theta_y + m < pi,
      insightface's fallback ``s (cos theta_y - m sin m)`` beyond
      (``losses.arcface_logits``; finite gradients at theta = 0 and pi).

    A label outside [0, C) puts no margin anywhere (the sharded path relies on
    this: a device's block has no margin for labels of other blocks).
    ``straight_through``: margin in the value only (:func:`straight_through_logits`).
    """
    if loss == "softmax":
        return softmax_logits(embeddings, weights, labels)
    if loss == "cosface":
        margined = cosface_logits(embeddings, weights, labels, s=scale, m=margin)
    elif loss == "arcface":
        margined = arcface_logits(embeddings, weights, labels, s=scale, m=margin)
    else:
        raise ValueError(f"loss={loss!r}: expected one of {MARGIN_LOSSES}")
    if not straight_through:
        return margined
    return straight_through_logits(margined, scale * cosines(embeddings, weights, labels))


def _margin_ce_block(
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    loss: str,
    margin: float,
    scale: float,
    num_classes: int,
    straight_through: bool,
    axis_name: str | None,
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy ``log sum_j exp(z_j) - z_y`` and ``argmax_j z_j == y`` from
    one block of classes: weights (D, C_block) hold the global classes
    [offset, offset + C_block), offset = axis_index * C_block. With
    ``axis_name=None`` the block is all classes and the collectives are no-ops.

    Returns (B,) float32 CE (NaN for labels outside [0, num_classes)) and (B,) bool.
    """
    def across(op, x):
        return x if axis_name is None else op(x, axis_name)

    block = weights.shape[1]
    offset = 0 if axis_name is None else lax.axis_index(axis_name) * block
    columns = offset + jnp.arange(block)
    # Local labels outside [0, block) belong to another device: no margin here.
    logits = margin_logits(loss, embeddings, weights, labels - offset, margin, scale, straight_through)
    # Padded classes: -inf gives exp() = 0 and never wins the argmax; the select
    # passes them no gradient. Every block with only padding still has a finite
    # global max, since num_classes >= 1.
    logits = jnp.where(columns[None, :] < num_classes, logits, -jnp.inf)

    # Stable log-sum-exp: the shift is a constant (its gradient cancels), so a
    # stop-gradient max keeps pmax out of autodiff.
    values = lax.stop_gradient(logits)
    shift = across(lax.pmax, jnp.max(values, axis=1))
    sum_exp = across(lax.psum, jnp.sum(jnp.exp(logits - shift[:, None]), axis=1))
    target = across(lax.psum, jnp.sum(jnp.where(columns[None, :] == labels[:, None], logits, 0.0), axis=1))
    ce = jnp.log(sum_exp) + shift - target
    valid = (labels >= 0) & (labels < num_classes)
    ce = jnp.where(valid, ce, jnp.nan)  # like losses.cross_entropy: a label bug shows under jit

    # Distributed argmax with jnp.argmax's tie rule (first index): the lowest
    # global index among the blocks that hold the global maximum.
    best = jnp.max(values, axis=1)
    top = across(lax.pmax, best)
    candidate = jnp.where(best == top, offset + jnp.argmax(values, axis=1), jnp.iinfo(jnp.int32).max)
    predicted = across(lax.pmin, candidate.astype(jnp.int32))
    return ce, predicted == labels


def _check_classes(weights: jax.Array, num_classes: int, devices: int = 1) -> None:
    if weights.ndim != 2:
        raise ValueError(f"weights must be (D, C_padded), got shape {weights.shape}")
    if not 1 <= num_classes <= weights.shape[1]:
        raise ValueError(f"num_classes={num_classes}: expected 1 <= num_classes <= weights.shape[1]={weights.shape[1]}")
    if weights.shape[1] % devices:
        raise ValueError(f"weights have {weights.shape[1]} columns, not divisible by the {devices} devices of the "
                         f"mesh axis {DATA!r}: pad the classifier to a multiple of {devices}")


def margin_cross_entropy(
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    loss: str,
    margin: float,
    scale: float,
    num_classes: int,
    straight_through: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Per-sample margin cross-entropy with a replicated (unsharded) classifier.

    Args:
        embeddings: (B, D); labels: (B,) in [0, num_classes).
        weights: (D, C_padded), C_padded >= num_classes; columns from
            ``num_classes`` on are padding, left out of softmax and argmax.
        loss, margin, scale, straight_through: see :func:`margin_logits`.

    Returns:
        ``(ce, correct)``: (B,) float32 and (B,) bool (argmax of the logits
        the CE sees, margin included, equals the label).
    """
    _check_classes(weights, num_classes)
    return _margin_ce_block(embeddings, weights, labels, loss=loss, margin=margin, scale=scale,
                            num_classes=num_classes, straight_through=straight_through, axis_name=None)


def _ambient_mesh(mesh: Mesh | AbstractMesh | None) -> Mesh | AbstractMesh:
    mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
    if mesh.empty or DATA not in mesh.axis_names:
        raise ValueError(f"a classifier sharded over the classes needs a mesh with a {DATA!r} axis: pass mesh= or "
                         f"call inside `with jax.set_mesh(mesh)` (got {mesh})")
    return mesh


def sharded_margin_cross_entropy(
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    loss: str,
    margin: float,
    scale: float,
    num_classes: int,
    straight_through: bool = False,
    mesh: Mesh | AbstractMesh | None = None,
) -> tuple[jax.Array, jax.Array]:
    """:func:`margin_cross_entropy` with ``weights`` split along the class axis
    over the mesh axis "data" (spec ``P(None, "data")``), never gathered.

    Embeddings (B, D) and labels (B,) enter replicated (the global batch is
    all-gathered: B x D is small, as in insightface's partial FC); each device
    makes its (B, C_padded / n) logits, and the log-softmax and argmax are
    combined with pmax / psum / pmin. ``mesh``: default the ambient one
    (``jax.set_mesh``). C_padded must divide by the size of "data".

    Returns:
        ``(ce, correct)``: (B,) float32 and (B,) bool, replicated.
    """
    mesh = _ambient_mesh(mesh)
    _check_classes(weights, num_classes, mesh.shape[DATA])
    block = functools.partial(_margin_ce_block, loss=loss, margin=margin, scale=scale, num_classes=num_classes,
                              straight_through=straight_through, axis_name=DATA)
    # check_vma (default) makes the transpose of the replicated embeddings'
    # implicit broadcast a psum, so their gradient sums every device's classes.
    specs = (P(), P(None, DATA), P())
    if dict(zip(mesh.axis_names, mesh.axis_types))[DATA] == jax.sharding.AxisType.Explicit:
        # An explicit mesh (jax.make_mesh's default) types the arrays' shardings:
        # shard_map then wants the inputs resharded to its specs, not inferred.
        embeddings, weights, labels = (jax.reshard(x, spec) for x, spec in zip((embeddings, weights, labels), specs))
    sharded = jax.shard_map(block, mesh=mesh, in_specs=specs, out_specs=(P(), P()))
    return sharded(embeddings, weights, labels)


def margin_objective(
    loss: str = "arcface",
    margin: float = 0.15,
    scale: float = 20.0,
    *,
    diversity_weight: float = 0.1,
    num_classes: int,
    straight_through: bool = False,
    shard_classifier: bool = False,
) -> Objective:
    """The face training objective as a train-step loss function
    ``(outputs, batch, collections) -> (loss, metrics)``: the ``loss`` term
    plus ``diversity_weight`` x the "diversity" term, i.e.
    ``train.losses = {loss: {"weight": 1, margin, scale, straight_through},
    "diversity": {"weight": diversity_weight}}``.

    ``total = mean CE + diversity_weight * mean L_d`` with CE from
    :func:`margin_cross_entropy` (``shard_classifier``:
    :func:`sharded_margin_cross_entropy` over the ambient mesh) on
    ``outputs["embedding"]`` (B, D), ``outputs["class_weights"]`` (D, C_padded)
    and ``batch["labels"]`` (B,); L_d summed over every StRA block of
    ``collections["losses"]``. Metrics: float32 scalars "loss", "ce",
    "diversity", "accuracy". Settings are checked here, not at the first step.
    """
    check_margin_settings(loss, margin, scale)
    options = {} if loss == "softmax" else {"margin": margin, "scale": scale, "straight_through": straight_through}
    return build_objective({loss: {"weight": 1.0, **options}, "diversity": {"weight": diversity_weight}},
                           LossContext(num_classes=num_classes, shard_classifier=shard_classifier))


def margin_term(loss: str, options: dict, context: LossContext) -> Term:
    """The term ``loss`` (one of :data:`MARGIN_LOSSES`): mean margin
    cross-entropy of ``outputs["embedding"]`` (B, D) with
    ``outputs["class_weights"]`` (D, C_padded) against ``batch["labels"]``
    (B,), the classifier sharded over the classes when
    ``context.shard_classifier``; metrics "ce" and "accuracy" (argmax of the
    margined logits). ``options``: ``margin``, ``scale``, ``straight_through``
    (none for softmax), checked now and named under ``context.key``."""
    margin, scale = options.get("margin", 0.0), options.get("scale", 1.0)
    straight_through = options.get("straight_through", False)
    check_margin_settings(loss, margin, scale, prefix=context.key)
    if not isinstance(straight_through, bool):
        raise ValueError(f"{context.key}.straight_through={straight_through!r}: expected True or False")
    per_sample = sharded_margin_cross_entropy if context.shard_classifier else margin_cross_entropy

    def term(outputs, batch, collections):
        if "class_weights" not in outputs:
            raise ValueError(f"the {loss} loss term needs a model with classifier='margin' "
                             f"(outputs['class_weights']); the model returned {sorted(outputs)}")
        if context.num_classes is None:
            raise ValueError(f"the {loss} loss term needs the class count: build it with "
                             "LossContext(num_classes=...) once the data is read")
        ce, correct = per_sample(outputs["embedding"], outputs["class_weights"], batch["labels"], loss=loss,
                                    margin=margin, scale=scale, num_classes=context.num_classes,
                                    straight_through=straight_through)
        ce = jnp.mean(ce)
        return ce, {"ce": ce, "accuracy": jnp.mean(correct.astype(jnp.float32))}

    return term


METRICS = ("ce", "accuracy")


@LOSSES.register("softmax")
@loss_term(metrics=METRICS)
def softmax_term(options: dict, context: LossContext) -> Term:
    """Softmax cross-entropy on the bias-free classifier's plain logits."""
    return margin_term("softmax", options, context)


@LOSSES.register("cosface")
@loss_term(metrics=METRICS, options={"margin": 0.2, "scale": 20.0, "straight_through": False})
def cosface_term(options: dict, context: LossContext) -> Term:
    """CosFace: ``s (cos theta_y - m)`` on the target (the StRA paper: m 0.2, s 20)."""
    return margin_term("cosface", options, context)


@LOSSES.register("arcface")
@loss_term(metrics=METRICS, options={"margin": 0.15, "scale": 20.0, "straight_through": False})
def arcface_term(options: dict, context: LossContext) -> Term:
    """ArcFace: ``s cos(theta_y + m)`` on the target (the StRA paper: m 0.15, s 20)."""
    return margin_term("arcface", options, context)


__all__ = ["MARGIN_LOSSES", "check_margin_settings", "margin_cross_entropy", "margin_logits", "margin_objective",
           "margin_term", "sharded_margin_cross_entropy", "softmax_logits", "straight_through_logits"]
