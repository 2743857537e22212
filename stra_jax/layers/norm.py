"""BatchNorm with PyTorch-equal settings, defined in one place.

PyTorch's ``nn.BatchNorm2d`` defaults are eps 1e-5 and momentum 0.1, where its
momentum weighs the *new* batch statistic; Flax's ``momentum`` weighs the *old*
running value, so the equal setting is 0.9. ``use_fast_variance=False`` computes
the variance as E[(x - mean)^2], which is what PyTorch does and is stable for
large activations.

``axis_name=None``: under ``jax.jit`` with a batch sharded over a device mesh,
the mean over the batch axis is already a global mean (GSPMD inserts the
all-reduce), so no named axis is needed and statistics are global across devices.

One known difference from PyTorch stays: PyTorch updates ``running_var`` with the
*unbiased* batch variance (n / (n - 1) times the biased one used for
normalisation); Flax uses the biased one. Normalised outputs are identical; the
running variance after one update differs by the factor n / (n - 1), negligible
for feature maps (n = B*H*W) and about 3% for a batch-32 embedding BatchNorm.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

BN_MOMENTUM = 0.9  # = 1 - PyTorch's momentum 0.1
BN_EPSILON = 1e-5


def batch_norm(
    train: bool,
    *,
    name: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    scale_init: Any = nn.initializers.ones,
    use_bias: bool = True,
) -> nn.BatchNorm:
    """A Linen BatchNorm over the last (channel) axis of an NHWC or (B, C) input.

    ``train=True`` normalises with batch statistics and updates ``batch_stats``
    (pass ``mutable=["batch_stats"]``); ``train=False`` uses the running ones.
    Statistics are always reduced in float32, whatever ``dtype`` is.
    ``use_bias=False``: no shift (beta fixed at 0: BNNeck's frozen bias).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        use_fast_variance=False,
        axis_name=None,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=scale_init,
        use_bias=use_bias,
        name=name,
    )
