"""Mode attention (paper Eq. 2, 5, 6) and the diversity loss L_d, NHWC.

Given the local-attention output S (B, H, W, C) split into G heads of n = C/G
channels, each head g is a *mode*:

* spatial mode masks M^g: a grouped two-layer 1x1 branch, softmaxed over all
  H*W positions (``spatial_mode_masks``),
* modal values z_g = sum_i M^g_i s_i^g (``modal_values``, the paper's xi_g),
* node-to-mode coefficients r_ig = gate(BN(<s_i^g, z_g>)) (Eq. 5) and the
  context y_i^g = r_ig z_g + s_i^g (Eq. 2 plus the skip connection),
* mode interaction z' = softmax(sqrt(G) * normalise(Z Z^T)) Z (Eq. 6), followed
  by a second pass y <- gate(BN(<y_i^g, z'_g>)) z'_g + y,
* L_d = G - sum_i max_g M^g_i per sample, sown into the ``losses`` collection
  under the name ``diversity`` (no module-level state).

For inspection (paper Fig. 4) the module also sows into the ``intermediates``
collection: ``mode_masks`` M^g (B, H, W, G), ``mode_gates`` r of the first pass
(B, H, W, G) and, with interaction, ``mode_gates_interaction`` (B, H, W, G).
They are recorded only when ``intermediates`` is mutable (``apply(...,
mutable=["intermediates"])``; see ``stra_jax.models.modes``): training applies
with ``mutable=["batch_stats", "losses"]``, where these sows are no-ops.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks
from stra_jax.layers.conv import conv1x1
from stra_jax.layers.norm import batch_norm
from stra_jax.layers.precision import accum_dtype, upcast

DIVERSITY = "diversity"  # name of the sown L_d in the "losses" collection


def spatial_mode_masks(mask_logits: jax.Array) -> jax.Array:
    """M^g: softmax of (B, H, W, G) logits over all H*W positions, per head.

    Returns (B, H, W, G) in at least float32; each head's mask sums to 1 over positions.
    """
    b, h, w, g = mask_logits.shape
    flat = upcast(mask_logits).reshape(b, h * w, g)
    return jax.nn.softmax(flat, axis=1).reshape(b, h, w, g)


def modal_values(masks: jax.Array, s: jax.Array) -> jax.Array:
    """Modal values z_g = sum over positions i of M^g_i * s_i^g (Sec. 4.3).

    masks: (B, H, W, G); s: (B, H, W, G, n). Returns (B, G, n) in s's dtype,
    accumulated in at least float32.
    """
    z = jnp.einsum("bhwg,bhwgn->bgn", masks.astype(s.dtype), s,
                   preferred_element_type=accum_dtype(s.dtype))
    return z.astype(s.dtype)


def node_mode_similarity(s: jax.Array, z: jax.Array) -> jax.Array:
    """Eq. 5 inner product <s_i^g, z_g>: (B, H, W, G, n), (B, G, n) -> (B, H, W, G)."""
    sim = jnp.einsum("bhwgn,bgn->bhwg", s, z, preferred_element_type=accum_dtype(s.dtype))
    return sim.astype(s.dtype)


def mode_gate(logits: jax.Array, gate: str) -> jax.Array:
    """Eq. 5 gating sigma: ``sigmoid`` per mode, or ``softmax`` across the G modes.

    logits: (B, H, W, G); computed in at least float32.
    """
    logits = upcast(logits)
    if gate == "sigmoid":
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)


def mode_context(r: jax.Array, z: jax.Array, s: jax.Array) -> jax.Array:
    """Eq. 2 with the skip connection: y_i^g = r_ig * z_g + s_i^g.

    r: (B, H, W, G); z: (B, G, n); s: (B, H, W, G, n) -> (B, H, W, G, n).
    """
    context = upcast(r)[..., None] * upcast(z)[:, None, None]
    return (context + upcast(s)).astype(s.dtype)


def mode_interaction(z: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Eq. 6: z'_g = sum_j softmax_j(<z_g, z_j>) z_j, as the authors compute it.

    P = Z Z^T (B, G, G) is L2-normalised along its last axis (norm floored at
    ``eps``), scaled by sqrt(G) and softmaxed along the last axis; Z' = P Z.
    z: (B, G, n) -> (B, G, n).
    """
    zf = upcast(z)
    p = jnp.einsum("bgn,bjn->bgj", zf, zf)
    norm = jnp.sqrt(jnp.sum(p * p, axis=-1, keepdims=True))
    p = p / jnp.maximum(norm, eps)
    p = jax.nn.softmax(p * math.sqrt(z.shape[1]), axis=-1)
    return jnp.einsum("bgj,bjn->bgn", p, zf).astype(z.dtype)


def diversity_loss(masks: jax.Array) -> jax.Array:
    """L_d = G - sum over positions of max_g M^g (Sec. 4.3), per sample.

    masks: (B, H, W, G), each head summing to 1 over positions. Returns (B,) in
    at least float32, in [0, G-1]; 0 only when the heads activate disjoint single positions.
    """
    b, h, w, g = masks.shape
    peak = jnp.max(upcast(masks).reshape(b, h * w, g), axis=-1)
    return g - jnp.sum(peak, axis=-1)


class ModeAttention(nn.Module):
    """Mode attention over G heads (Eq. 2, 5, 6); sows L_d as ``losses/diversity``.

    Input and output (B, H, W, C), C divisible by ``heads``. Parameters:
    ``mask_conv1`` (grouped 1x1 C -> mask_hidden_per_head*G, bias), ``mask_bn1``,
    ``mask_conv2`` (grouped 1x1 -> G, bias), ``mask_bn2``, ``gate_bn1`` (BN over the
    G similarity maps of Eq. 5) and, with interaction, ``gate_bn2`` (second pass).
    """

    heads: int = 8
    gate: str = "sigmoid"
    mode_interaction: bool = True
    mask_hidden_per_head: int = 8
    grouped_conv: str = "auto"  # see stra_jax.layers.conv.conv1x1; same parameters for all
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        checks.check_positive_int("heads", self.heads)
        checks.check_gate(self.gate)
        checks.check_positive_int("mask_hidden_per_head", self.mask_hidden_per_head)
        checks.check_grouped_conv(self.grouped_conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, s: jax.Array, *, train: bool) -> jax.Array:
        checks.check_feature_map(s, self.heads, "ModeAttention")
        b, h, w, channels = s.shape
        g = self.heads
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        s = s.astype(self.dtype)

        conv = dict(kw, implementation=self.grouped_conv)
        m = conv1x1(self.mask_hidden_per_head * g, groups=g, use_bias=True, name="mask_conv1", **conv)(s)
        m = jnp.tanh(batch_norm(train, name="mask_bn1", **kw)(m))
        m = conv1x1(g, groups=g, use_bias=True, name="mask_conv2", **conv)(m)
        masks = spatial_mode_masks(batch_norm(train, name="mask_bn2", **kw)(m))
        # Not during init: ``init`` returns every collection it wrote, and a stale
        # L_d fed back through ``apply`` would be added to the new one.
        if not self.is_initializing():
            self.sow(
                "losses",
                DIVERSITY,
                diversity_loss(masks),
                init_fn=lambda: jnp.zeros((), accum_dtype(self.dtype)),
                reduce_fn=lambda total, new: total + new,
            )
            self.sow("intermediates", "mode_masks", masks)

        sg = s.reshape(b, h, w, g, channels // g)
        z = modal_values(masks, sg)
        sim = batch_norm(train, name="gate_bn1", **kw)(node_mode_similarity(sg, z))
        r = mode_gate(sim, self.gate)
        if not self.is_initializing():
            self.sow("intermediates", "mode_gates", r)
        y = mode_context(r, z, sg)
        if self.mode_interaction:
            z2 = mode_interaction(z)
            sim2 = batch_norm(train, name="gate_bn2", **kw)(node_mode_similarity(y, z2))
            r2 = mode_gate(sim2, self.gate)
            if not self.is_initializing():
                self.sow("intermediates", "mode_gates_interaction", r2)
            y = mode_context(r2, z2, y)
        return y.reshape(b, h, w, channels)
