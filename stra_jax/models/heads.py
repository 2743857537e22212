"""Heads: the last feature map (B, H, W, C) -> the outputs of the model contract.

A head is a Linen module ``head(feature_map, *, train) -> dict`` returning
``features`` (B, C) pooled map, ``embedding`` (B, D) the test-time feature, and
the classifier's output: ``logits`` (B, num_classes) for a linear classifier,
or ``class_weights`` (D, num_classes) for a margin classifier (CosFace/ArcFace
need the labels, so the task's loss builds the logits from the embedding and
these weights). With ``num_classes == 0`` there is no classifier.

Backbones call their head under ``nn.share_scope`` so that its parameters sit at
the top level of the model (``embed_conv``, ``embed_bn``, ``classifier``): the
names the PyTorch importer and earlier checkpoints use.

The ReID head takes the options of the ReID "bag of tricks" (Luo et al. 2019,
reid-strong-baseline; fast-reid): ``pooling="gem"`` (generalized-mean pooling
with a learnable p), ``bnneck=True`` (the metric losses on ``pre_neck``, the
feature before a bias-free BatchNorm; the identity loss on a bias-free
classifier after it; the post-BN ``embedding`` for retrieval) and
``centers=True`` (center loss's class centers ``centers`` (C, D), parameters
trained with the rest). A ReID family declares them once by mixing in
:class:`ReIDHeadOptions`.

Every output is float32 whatever ``dtype`` the head computes in.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers.conv import kaiming_fan_out, linear_init
from stra_jax.layers.norm import batch_norm
from stra_jax.registry import Registry

CLASSIFIERS = ("linear", "margin")
POOLINGS = ("avg", "gem")
#: reid-strong-baseline's ``weights_init_classifier`` for the bias-free BNNeck classifier
bnneck_classifier_init = nn.initializers.normal(stddev=0.001)
#: name -> head module class, built by :func:`make_head` (a family picks its head by name).
HEADS: Registry[type[nn.Module]] = Registry("head")


def global_average_pool(x: jax.Array, dtype: Any) -> jax.Array:
    """(B, H, W, C) -> (B, C); the mean is taken in float32 (bf16 sums lose digits)."""
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(dtype)


def generalized_mean_pool(x: jax.Array, p: jax.Array, eps: float = 1e-6) -> jax.Array:
    """GeM pooling (Radenovic et al., "Fine-tuning CNN image retrieval with no
    human annotation", TPAMI 2018, Eq. 2; fast-reid's ``GeneralizedMeanPoolingP``):
    ``(mean_hw max(x, eps)^p)^(1/p)``, (B, H, W, C) -> (B, C) float32; p (1,) or
    a scalar (p = 1: average pooling, p -> inf: max pooling)."""
    p = jnp.asarray(p, jnp.float32).reshape(())
    pooled = jnp.mean(jnp.maximum(x.astype(jnp.float32), eps) ** p, axis=(1, 2))
    return pooled ** (1.0 / p)


class Classifier(nn.Module):
    """``linear``: Dense with bias -> ``{"logits"}`` (torchreid's classifier,
    init normal(0, 0.01), zero bias); ``use_bias=False``: BNNeck's bias-free
    classifier (init normal(0, 0.001)). ``margin``: a bias-free (D, num_classes)
    weight matrix returned as ``{"class_weights"}`` for CosFace / ArcFace
    (insightface's init normal(0, 0.01))."""

    num_classes: int
    kind: str = "linear"
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, embedding: jax.Array) -> dict[str, jax.Array]:
        if self.kind == "linear":
            # bias-free (BNNeck): reid-strong-baseline's init, normal(0, 0.001)
            init = linear_init if self.use_bias else bnneck_classifier_init
            logits = nn.Dense(self.num_classes, use_bias=self.use_bias, kernel_init=init, dtype=self.dtype,
                              param_dtype=self.param_dtype, name="classifier")(embedding)
            return {"logits": logits.astype(jnp.float32)}
        if self.kind == "margin":
            weights = _ClassWeights(self.num_classes, self.param_dtype, name="classifier")(embedding.shape[-1])
            return {"class_weights": weights.astype(jnp.float32)}
        raise ValueError(f"classifier={self.kind!r}: expected one of {CLASSIFIERS}")


class _ClassWeights(nn.Module):
    """A bare (in_features, num_classes) ``kernel``, named like a Dense's."""

    num_classes: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, in_features: int) -> jax.Array:
        return self.param("kernel", linear_init, (in_features, self.num_classes), self.param_dtype)


@HEADS.register("reid")
class ReIDHead(nn.Module):
    """The ReID heads. ``embedding_dim=512`` (the authors' StRA head): pool -> 1x1
    conv (no bias; on a pooled map it is a bias-free Dense) -> BatchNorm
    (``embed_bn``) = the embedding. ``embedding_dim=None`` (torchvision
    ResNet-50, and the paper's 2048-d variant): the pooled feature is the
    embedding. The classifier sits on the embedding.

    ``pooling``: "avg" (GAP) or "gem" (:func:`generalized_mean_pool`, p a
    parameter ``gem_p`` initialised at 3). ``bnneck``: the feature before the
    BatchNorm is returned as ``pre_neck`` (B, D) for the metric losses, the
    BatchNorm has no shift (``embed_bn``, or ``neck_bn`` when
    ``embedding_dim=None`` adds one) and the classifier no bias (Luo et al.
    2019). ``centers``: a ``centers`` (num_classes, D) parameter (normal(0, 1),
    as reid-strong-baseline's ``CenterLoss``) returned as ``centers``.
    """

    num_classes: int = 0
    embedding_dim: int | None = 512
    classifier: str = "linear"
    pooling: str = "avg"
    bnneck: bool = False
    centers: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.pooling == "gem":
            p = self.param("gem_p", nn.initializers.constant(3.0), (1,), self.param_dtype)
            features = generalized_mean_pool(x, p).astype(self.dtype)
        else:
            features = global_average_pool(x, self.dtype)
        pre_neck = features
        if self.embedding_dim is not None:
            pre_neck = nn.Dense(self.embedding_dim, use_bias=False, kernel_init=kaiming_fan_out,
                                name="embed_conv", **kw)(features)
        embedding = pre_neck
        if self.embedding_dim is not None or self.bnneck:
            name = "embed_bn" if self.embedding_dim is not None else "neck_bn"
            embedding = batch_norm(train, name=name, use_bias=not self.bnneck, **kw)(pre_neck)
        out = _outputs(self, features, embedding, classifier_bias=not self.bnneck)
        if self.bnneck:
            out["pre_neck"] = pre_neck.astype(jnp.float32)
        if self.centers:
            if not self.num_classes:
                raise ValueError("centers=True needs num_classes > 0 (one center per training identity)")
            centers = self.param("centers", nn.initializers.normal(1.0), (self.num_classes, pre_neck.shape[-1]),
                                 self.param_dtype)
            out["centers"] = centers.astype(jnp.float32)
        return out


class ReIDHeadOptions(nn.Module):
    """The ReID head's bag-of-tricks options, declared and checked once for every
    ReID family (a Linen mixin, like ``StRAOptions``): ``pooling``, ``bnneck``,
    ``centers`` (see :class:`ReIDHead`). A family defines ``num_classes``,
    ``embedding_dim`` and ``classifier`` and builds its head with
    :meth:`reid_head`."""

    pooling: str = "avg"
    bnneck: bool = False
    centers: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: expected one of {POOLINGS}")
        for name in ("bnneck", "centers"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected true or false")
        if self.centers and not self.num_classes:  # type: ignore[attr-defined]
            raise ValueError("centers=True needs num_classes > 0 (one center per training identity)")
        super().__post_init__()

    def reid_head(self) -> nn.Module:
        """The :class:`ReIDHead` of this family's options."""
        return make_head("reid", num_classes=self.num_classes, embedding_dim=self.embedding_dim,  # type: ignore[attr-defined]
                         classifier=self.classifier, pooling=self.pooling, bnneck=self.bnneck,  # type: ignore[attr-defined]
                         centers=self.centers, dtype=self.dtype, param_dtype=self.param_dtype)  # type: ignore[attr-defined]


@HEADS.register("face")
class FaceHead(nn.Module):
    """The face head of the paper's face recipe (insightface's "E" output):
    BatchNorm on the map -> Dropout -> flatten -> Dense -> BatchNorm = the
    ``embedding_dim`` embedding. Training with ``dropout > 0`` needs a
    ``"dropout"`` rng (the train step passes one)."""

    num_classes: int = 0
    embedding_dim: int = 512
    dropout: float = 0.4
    classifier: str = "margin"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        features = global_average_pool(x, self.dtype)
        y = batch_norm(train, name="face_bn_map", **kw)(x)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.Dense(self.embedding_dim, kernel_init=kaiming_fan_out, name="face_fc", **kw)(
            y.reshape(y.shape[0], -1))
        embedding = batch_norm(train, name="face_bn_embed", **kw)(y)
        return _outputs(self, features, embedding)


def make_head(name: str, **kwargs: Any) -> nn.Module:
    """A head by name (``HEADS``); unknown names list the known ones."""
    if name not in HEADS:
        raise ValueError(f"head={name!r}: expected one of {HEADS.names()}")
    return HEADS.get(name)(**kwargs)


def _outputs(head: nn.Module, features: jax.Array, embedding: jax.Array,
             classifier_bias: bool = True) -> dict[str, jax.Array]:
    """The contract's dict: float32 features and embedding, plus the classifier's
    output (created in ``head``'s scope) when ``head.num_classes`` > 0."""
    out = {"features": features.astype(jnp.float32), "embedding": embedding.astype(jnp.float32)}
    if head.num_classes:
        classifier = Classifier(head.num_classes, head.classifier, use_bias=classifier_bias, dtype=head.dtype,
                                param_dtype=head.param_dtype)
        out.update(_shared(head, classifier)(embedding))
    return out


def _shared(parent: nn.Module, child: nn.Module) -> nn.Module:
    """``child`` with its variables in ``parent``'s scope (no extra name level)."""
    nn.share_scope(parent, child)
    return child
