"""Parameters and FLOPs per model; paper Table 2 and Fig. 3 of trained runs.

    python -m stra_jax.tools.summary                      # every model at its native sizes
    python -m stra_jax.tools.summary --models stra_resnet50 --sizes 256x128
    python -m stra_jax.tools.summary --models resnet50_face stra_resnet50_face --num-classes 751 10572
    python -m stra_jax.tools.summary --models se_resnet50 sasa_resnet50 --sizes 256x128 \
        --options last_stride=1 embedding_dim=512          # Table 2's complexity columns, StRA's ReID head
    python -m stra_jax.tools.summary --results runs/*/final_metrics.json --plot fig3.png   # Table 2 + Fig. 3

(installed: ``stra-summary``). With ``--results`` (the ``final_metrics.json``
of ReID training runs, or their workdirs) it prints Table 2 for those runs
instead: each run's own network (as saved in its model directory) with its
parameters, FLOPs at its input size, mAP and rank-1, and draws Fig. 3 (model
size vs mAP, FLOPs as marker size) to ``--plot`` (``models/comparison.py``).

Without ``--sizes`` each model runs at its native sizes (a fixed-size face
network at its ``input_size`` only; a fixed-size model shows "-" for the other
sizes); FLOPs are XLA's count for one image (``models/complexity.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from stra_jax.models.comparison import plot_size_vs_map, read_run, results_table, with_complexity
from stra_jax.models.complexity import complexity_table
from stra_jax.models.registry import list_models
from stra_jax.utils import parse_size


def parse_option(text: str) -> tuple[str, Any]:
    """'last_stride=1' -> ('last_stride', 1); values are JSON (strings may be bare)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r}: expected KEY=VALUE, e.g. last_stride=1")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of the model zoo; Table 2 / Fig. 3 of runs.")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--sizes", nargs="+", type=lambda text: parse_size(text, "--sizes"), default=None,
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
