"""Mixed-precision rules: compute in the module dtype, but never *below* float32
for softmaxes, reductions and L_d (bf16 -> float32; float64 stays float64)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def accum_dtype(dtype: Any) -> Any:
    """The dtype for softmaxes and sums: float32, or wider if ``dtype`` is wider."""
    return jnp.promote_types(dtype, jnp.float32)


def upcast(x: jax.Array) -> jax.Array:
    """``x`` in at least float32."""
    return x.astype(accum_dtype(x.dtype))
