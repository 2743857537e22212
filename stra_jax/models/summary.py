"""Parameters and FLOPs per model (XLA cost analysis of a jitted eval forward).

    python -m stra_jax.models.summary                      # every model at its native sizes
    python -m stra_jax.models.summary --models stra_resnet50 --sizes 256x128
    python -m stra_jax.models.summary --models resnet50_face stra_resnet50_face --num-classes 751 10572
    python -m stra_jax.models.summary --models se_resnet50 sasa_resnet50 --sizes 256x128 \
        --options last_stride=1 embedding_dim=512          # Table 2's complexity columns, StRA's ReID head
    python -m stra_jax.models.summary --results runs/*/final_metrics.json --plot fig3.png   # Table 2 + Fig. 3

With ``--results`` (the ``final_metrics.json`` of ReID training runs, or their
workdirs) it prints Table 2 for those runs instead: each run's own network
(as saved in its model directory) with its parameters, FLOPs at its input
size, mAP and rank-1, and draws Fig. 3 (model size vs mAP, FLOPs as marker
size) to ``--plot`` (see ``models/comparison.py``).

Native sizes: a family fixed to one input size (an ``input_size`` option: the
face networks, whose FC flattens the last map) runs at that size only; the
others at the ReID (256x128) and face (112x112) sizes. ``--sizes`` overrides
them; a fixed-size model shows "-" for the other sizes.

FLOPs are XLA's count for one image (multiply-adds count 2), so they are twice
the "MACs" many papers call FLOPs.
"""
from __future__ import annotations

import argparse
import json
import sys
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


def parse_option(text: str) -> tuple[str, Any]:
    """'last_stride=1' -> ('last_stride', 1); values are JSON (strings may be bare)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r}: expected KEY=VALUE, e.g. last_stride=1")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def complexity_table(names: Sequence[str], sizes: Sequence[tuple[int, int]] | None,
                     num_classes: Sequence[int], options: dict[str, Any] | None = None) -> str:
    """Parameters and GFLOPs of registered networks (one row per name and class
    count), each built with ``options`` on top of its registered defaults."""
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of the model zoo; Table 2 / Fig. 3 of runs.")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                        help="HxW sizes (default: each model's native sizes)")
    parser.add_argument("--num-classes", nargs="+", type=int, default=[751], help="one table row per count")
    parser.add_argument("--options", nargs="+", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="options for every model, e.g. last_stride=1 embedding_dim=512 (Table 2's shared head)")
    parser.add_argument("--results", nargs="+", default=None,
                        help="final_metrics.json files (or workdirs) of ReID runs: Table 2 and Fig. 3 for them")
    parser.add_argument("--plot", default="fig3_size_vs_map.png", help="Fig. 3 PNG (with --results)")
    args = parser.parse_args(argv)
    if not args.results:
        try:
            print(complexity_table(args.models, args.sizes, args.num_classes, dict(args.options)))
        except ValueError as err:  # an option a network does not have: names the option and the family
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    from stra_jax.models.comparison import plot_size_vs_map, read_run, results_table, with_complexity

    try:
        runs = [read_run(path) for path in args.results]  # every file checked before any work
        runs = [with_complexity(run) for run in runs]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(results_table(runs))
    print(f"wrote {plot_size_vs_map(runs, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
