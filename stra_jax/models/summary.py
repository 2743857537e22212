"""Parameters and FLOPs per model (XLA cost analysis of a jitted eval forward).

    python -m stra_jax.models.summary                      # both models, 256x128 and 112x112
    python -m stra_jax.models.summary --models stra_resnet50 --sizes 256x128

FLOPs are XLA's count for one image (multiply-adds count 2), so they are twice
the "MACs" many papers call FLOPs.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.models.io import abstract_variables
from stra_jax.models.registry import create_model, list_models


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
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 128), (112, 112)])
    parser.add_argument("--num-classes", type=int, default=751)
    args = parser.parse_args(argv)

    header = f"{'model':<16}{'classes':>8}{'params':>14}" + "".join(
        f"{f'GFLOPs {h}x{w}':>17}" for h, w in args.sizes)
    print(header)
    print("-" * len(header))
    for name in args.models:
        model = create_model(name, num_classes=args.num_classes)
        variables = abstract_variables(model)
        flops = [forward_flops(model, variables, hw) / 1e9 for hw in args.sizes]
        print(f"{name:<16}{args.num_classes:>8}{count_params(variables['params']):>14,}"
              + "".join(f"{f:>17.2f}" for f in flops))


if __name__ == "__main__":
    main()
