"""Model complexity: parameters and FLOPs (XLA cost analysis of a jitted eval forward).

Library functions behind paper Table 2's complexity columns and Fig. 3; the
command line is ``python -m stra_jax.tools.summary`` (``stra-summary``).

Native sizes: a family fixed to one input size (an ``input_size`` option: the
face networks, whose FC flattens the last map) runs at that size only; the
others at the ReID (256x128) and face (112x112) sizes.

FLOPs are XLA's count for one image (multiply-adds count 2), so they are twice
the "MACs" many papers call FLOPs.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.models.io import abstract_variables
from stra_jax.models.registry import create_model

REID_AND_FACE_SIZES = ((256, 128), (112, 112))


def native_sizes(model: Any) -> tuple[tuple[int, int], ...]:
    """The (H, W) input sizes ``model`` is meant for (see the module docstring)."""
    size = getattr(model, "input_size", None)
    return (tuple(size),) if size is not None else REID_AND_FACE_SIZES


def runs_at(model: Any, hw: tuple[int, int]) -> bool:
    """Whether ``model`` accepts (H, W) = ``hw`` inputs (a fixed-size family only its own)."""
    size = getattr(model, "input_size", None)
    return size is None or tuple(size) == hw


def count_params(params: Any) -> int:
    """The number of scalars in a parameter pytree (arrays or ``ShapeDtypeStruct``s)."""
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def forward_flops(model: Any, variables: Any, image_hw: tuple[int, int]) -> float:
    """XLA's FLOPs for one (1, H, W, 3) image through ``model.apply(train=False)``
    (NaN where the backend reports none). ``variables`` may be abstract."""
    images = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def complexity_table(names: Sequence[str], sizes: Sequence[tuple[int, int]] | None,
                     num_classes: Sequence[int], options: dict[str, Any] | None = None) -> str:
    """Parameters and GFLOPs of registered networks (one row per name and class
    count), each built with ``options`` on top of its registered defaults; one
    GFLOPs column per (H, W) of ``sizes`` (default: each model's native sizes;
    "-" where a fixed-size model does not run)."""
    rows = [(name, classes, create_model(name, num_classes=classes, **(options or {})))
            for name in names for classes in num_classes]
    columns = list(dict.fromkeys(sizes or [hw for *_, model in rows for hw in native_sizes(model)]))
    header = f"{'model':<24}{'classes':>8}{'params':>14}" + "".join(f"{f'GFLOPs {h}x{w}':>17}" for h, w in columns)
    lines = [header, "-" * len(header)]
    for name, classes, model in rows:
        variables = abstract_variables(model)
        wanted = sizes if sizes else native_sizes(model)
        cells = [f"{forward_flops(model, variables, hw) / 1e9:>17.2f}" if hw in wanted and runs_at(model, hw)
                 else f"{'-':>17}" for hw in columns]
        lines.append(f"{name:<24}{classes:>8}{count_params(variables['params']):>14,}" + "".join(cells))
    return "\n".join(lines)
