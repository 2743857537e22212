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
#: name -> head module class, built by :func:`make_head` (a family picks its head by name).
HEADS: Registry[type[nn.Module]] = Registry("head")


def global_average_pool(x: jax.Array, dtype: Any) -> jax.Array:
    """(B, H, W, C) -> (B, C); the mean is taken in float32 (bf16 sums lose digits)."""
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(dtype)


class Classifier(nn.Module):
    """``linear``: Dense with bias -> ``{"logits"}`` (torchreid's classifier,
    init normal(0, 0.01), zero bias). ``margin``: a bias-free (D, num_classes)
    weight matrix returned as ``{"class_weights"}`` for CosFace / ArcFace
    (insightface's init normal(0, 0.01))."""

    num_classes: int
    kind: str = "linear"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, embedding: jax.Array) -> dict[str, jax.Array]:
        if self.kind == "linear":
            logits = nn.Dense(self.num_classes, kernel_init=linear_init, dtype=self.dtype,
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
    """The ReID heads. ``embedding_dim=512`` (the authors' StRA head): GAP -> 1x1
    conv (no bias; on a pooled map it is a bias-free Dense) -> BatchNorm = the
    embedding. ``embedding_dim=None`` (torchvision ResNet-50, and the paper's
    2048-d variant): the GAP feature is the embedding. The classifier sits on
    the embedding."""

    num_classes: int = 0
    embedding_dim: int | None = 512
    classifier: str = "linear"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        features = global_average_pool(x, self.dtype)
        embedding = features
        if self.embedding_dim is not None:
            embedding = nn.Dense(self.embedding_dim, use_bias=False, kernel_init=kaiming_fan_out,
                                 name="embed_conv", **kw)(features)
            embedding = batch_norm(train, name="embed_bn", **kw)(embedding)
        return _outputs(self, features, embedding)


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


def _outputs(head: nn.Module, features: jax.Array, embedding: jax.Array) -> dict[str, jax.Array]:
    """The contract's dict: float32 features and embedding, plus the classifier's
    output (created in ``head``'s scope) when ``head.num_classes`` > 0."""
    out = {"features": features.astype(jnp.float32), "embedding": embedding.astype(jnp.float32)}
    if head.num_classes:
        classifier = Classifier(head.num_classes, head.classifier, dtype=head.dtype, param_dtype=head.param_dtype)
        out.update(_shared(head, classifier)(embedding))
    return out


def _shared(parent: nn.Module, child: nn.Module) -> nn.Module:
    """``child`` with its variables in ``parent``'s scope (no extra name level)."""
    nn.share_scope(parent, child)
    return child
