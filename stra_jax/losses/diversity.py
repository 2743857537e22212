"""The "diversity" loss term: StRA's L_d (Eq. 6), summed over every StRA block.

Each ``ModeAttention`` sows its per-sample penalty into the ``losses``
collection of the forward pass; the sum over blocks is
``stra_jax.layers.total_diversity_loss`` (its one home), averaged over the
batch here.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from stra_jax.layers import total_diversity_loss
from stra_jax.losses.registry import LOSSES, LossContext, Term, loss_term


def mean_diversity(collections: Mapping[str, Any]) -> jax.Array:
    """Batch mean of L_d summed over the blocks of ``collections["losses"]``:
    a float32 scalar, 0 when the model sows none."""
    return jnp.mean(jnp.asarray(total_diversity_loss(collections.get("losses", {})), jnp.float32))


@LOSSES.register("diversity")
@loss_term(metrics=("diversity",))
def diversity_term(options: dict, context: LossContext) -> Term:
    """L_d of every StRA block (:func:`mean_diversity`); metric "diversity"."""
    def term(outputs, batch, collections):
        value = mean_diversity(collections)
        return value, {"diversity": value}

    return term
