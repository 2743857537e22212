"""Squeeze-and-excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018), NHWC.

A block's output U (B, H, W, C) is recalibrated channel by channel:

* squeeze (Eq. 2): z = GAP(U), (B, C),
* excitation (Eq. 3): s = sigmoid(W2 relu(W1 z)), W1: C -> C/r, W2: C/r -> C,
* scale (Eq. 4): U * s, broadcast over the H x W positions.

Layout as Cadene's ``pretrainedmodels`` ``SEModule`` (which torchreid uses):
W1 and W2 are 1x1 convolutions *with* bias (``fc1``, ``fc2``) on the pooled
(B, 1, 1, C) map, so their kernels are (1, 1, C, C/r) and (1, 1, C/r, C), the
PyTorch tensors of ``se_module.fc1`` / ``se_module.fc2`` transposed.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.precision import upcast


def check_se_reduction(block: str, channels: int, reduction: Any) -> None:
    """``reduction`` must be a positive int leaving at least one hidden channel
    (``channels // reduction >= 1``); the ``ValueError`` names ``block``."""
    if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
        raise ValueError(f"{block}: squeeze-and-excitation reduction={reduction!r} for channels={channels}: "
                         "expected a positive integer")
    if channels // reduction < 1:
        raise ValueError(f"{block}: squeeze-and-excitation reduction={reduction} is larger than channels={channels} "
                         f"(channels // reduction = 0 hidden units); expected reduction <= {channels}")


def squeeze_excite(u: jax.Array, fc1: Callable[[jax.Array], jax.Array],
                   fc2: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Hu et al. Eq. 2-3 (and the scaling of Eq. 4): U * sigmoid(fc2(relu(fc1(GAP(U))))).

    u: (B, H, W, C). ``fc1`` maps (B, 1, 1, C) -> (B, 1, 1, C/r), ``fc2`` maps
    it back to (B, 1, 1, C). Returns (B, H, W, C) in ``u``'s dtype. The squeeze
    (a mean over H*W) is taken in at least float32: a bf16 sum loses digits.
    """
    z = jnp.mean(upcast(u), axis=(1, 2), keepdims=True).astype(u.dtype)  # Eq. 2, (B, 1, 1, C)
    s = jax.nn.sigmoid(fc2(nn.relu(fc1(z))))                              # Eq. 3, (B, 1, 1, C)
    return u * s.astype(u.dtype)                                           # Eq. 4


class SqueezeExcitation(nn.Module):
    """Channel recalibration of a (B, H, W, C) map; ``fc1`` (C -> C // reduction)
    and ``fc2`` (back to C) are 1x1 convs with bias, as in Cadene's ``SEModule``.

    ``reduction``: r of the paper (16 in SE-ResNet-50). A reduction that is not
    a positive int, or leaves no hidden channel, fails naming this module's path
    (the block), the channels and the reduction.
    """

    reduction: int = 16
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        block = "/".join(self.scope.path) if self.scope is not None and self.scope.path else "SqueezeExcitation"
        check_se_reduction(block, channels, self.reduction)
        kw = dict(kernel_size=(1, 1), use_bias=True, kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros,
                  dtype=self.dtype, param_dtype=self.param_dtype)
        fc1 = nn.Conv(channels // self.reduction, name="fc1", **kw)
        fc2 = nn.Conv(channels, name="fc2", **kw)
        return squeeze_excite(x, fc1, fc2)
