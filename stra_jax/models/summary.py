"""Parameters and FLOPs per model (XLA cost analysis of a jitted eval forward).

    python -m stra_jax.models.summary                      # every model at its native sizes
    python -m stra_jax.models.summary --models stra_resnet50 --sizes 256x128
    python -m stra_jax.models.summary --models resnet50_face stra_resnet50_face --num-classes 751 10572

Native sizes: a family fixed to one input size (an ``input_size`` option: the
face networks, whose FC flattens the last map) runs at that size only; the
others at the ReID (256x128) and face (112x112) sizes. ``--sizes`` overrides
them; a fixed-size model shows "-" for the other sizes.

FLOPs are XLA's count for one image (multiply-adds count 2), so they are twice
the "MACs" many papers call FLOPs.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.models.io import abstract_variables
from stra_jax.models.registry import create_model, list_models


REID_AND_FACE_SIZES = ((256, 128), (112, 112))


def native_sizes(model: Any) -> tuple[tuple[int, int], ...]:
    """The input sizes ``model`` is meant for (see the module docstring)."""
    size = getattr(model, "input_size", None)
    return (tuple(size),) if size is not None else REID_AND_FACE_SIZES


def runs_at(model: Any, hw: tuple[int, int]) -> bool:
    size = getattr(model, "input_size", None)
    return size is None or tuple(size) == hw


def count_params(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def forward_flops(model, variables, image_hw: tuple[int, int]) -> float:
    images = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 256x128") from err
    return h, w


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of the model zoo.")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                        help="HxW sizes (default: each model's native sizes)")
    parser.add_argument("--num-classes", nargs="+", type=int, default=[751], help="one table row per count")
    args = parser.parse_args(argv)

    rows = [(name, classes, create_model(name, num_classes=classes))
            for name in args.models for classes in args.num_classes]
    sizes = list(dict.fromkeys(args.sizes or [hw for *_, model in rows for hw in native_sizes(model)]))
    header = f"{'model':<20}{'classes':>8}{'params':>14}" + "".join(f"{f'GFLOPs {h}x{w}':>17}" for h, w in sizes)
    print(header)
    print("-" * len(header))
    for name, classes, model in rows:
        variables = abstract_variables(model)
        wanted = sizes if args.sizes else native_sizes(model)
        cells = [f"{forward_flops(model, variables, hw) / 1e9:>17.2f}" if hw in wanted and runs_at(model, hw)
                 else f"{'-':>17}" for hw in sizes]
        print(f"{name:<20}{classes:>8}{count_params(variables['params']):>14,}" + "".join(cells))


if __name__ == "__main__":
    main()
