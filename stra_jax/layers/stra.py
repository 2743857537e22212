"""StRAttention: local attention followed by mode attention (paper Fig. 2)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers import checks
from stra_jax.layers.local_attention import LocalAttention
from stra_jax.layers.mode_attention import DIVERSITY, ModeAttention


class StRAttention(nn.Module):
    """Structure-Regularized Attention, a drop-in for a bottleneck's K x K conv.

    x: (B, H, W, C) NHWC with C % heads == 0 -> (B, ceil(H/stride), ceil(W/stride), C).
    With ``mode_attention=True`` the block sows L_d, shape (B,), into the
    ``losses`` collection as ``.../mode/diversity``; apply with
    ``mutable=["batch_stats", "losses"]`` in training and sum it with
    :func:`total_diversity_loss`.

    Ablations (paper Table 3): ``mode_attention=False`` is local attention only,
    ``mode_interaction=False`` drops Eq. 6, ``gate="softmax"`` gates across modes.
    ``implementation`` picks how local attention gathers neighbours and
    ``grouped_conv`` how the grouped 1x1 convolutions run (see
    :class:`LocalAttention`); neither changes parameters or outputs.
    """

    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    stride: int = 1
    dilation: int = 1
    gate: str = "sigmoid"
    mode_attention: bool = True
    mode_interaction: bool = True
    implementation: str = "auto"
    grouped_conv: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        # Validate here too: the children are only built on the first call.
        checks.check_local_attention(self.heads, self.kernel_size, self.reduction, self.stride,
                                     self.dilation, self.implementation)
        checks.check_gate(self.gate)
        checks.check_grouped_conv(self.grouped_conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        checks.check_feature_map(x, self.heads, "StRAttention")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LocalAttention(
            heads=self.heads,
            kernel_size=self.kernel_size,
            reduction=self.reduction,
            stride=self.stride,
            dilation=self.dilation,
            implementation=self.implementation,
            grouped_conv=self.grouped_conv,
            name="local",
            **kw,
        )(x, train=train)
        if self.mode_attention:
            y = ModeAttention(
                heads=self.heads,
                gate=self.gate,
                mode_interaction=self.mode_interaction,
                grouped_conv=self.grouped_conv,
                name="mode",
                **kw,
            )(y, train=train)
        return y


def total_diversity_loss(losses: Any) -> jax.Array:
    """Sum every L_d sown under ``diversity`` anywhere in a ``losses`` collection.

    Returns (B,) per-sample totals over all StRA blocks, or a float32 scalar 0
    when nothing was sown (e.g. ``mode_attention=False`` or a plain ResNet).
    """
    total = jnp.zeros((), jnp.float32)
    leaves = jax.tree_util.tree_flatten_with_path(losses)[0]
    for path, value in leaves:
        last = path[-1] if path else None
        key = getattr(last, "key", None)
        if key is None and len(path) >= 2:  # a sow tuple: (..., DictKey, SequenceKey)
            key = getattr(path[-2], "key", None)
        if key == DIVERSITY:
            total = total + value
    return total
