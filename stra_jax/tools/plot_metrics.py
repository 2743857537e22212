"""Training curves of one or more runs from their ``metrics.jsonl``.

    python -m stra_jax.tools.plot_metrics runs/synthetic                       # -> runs/synthetic/curves.png
    python -m stra_jax.tools.plot_metrics runs/stra runs/base --out cmp.png --labels StRA,ResNet

Each workdir's ``metrics.jsonl`` holds one JSON object per line with ``"step"``
and scalars: ``train/...`` (loss, ce, diversity = L_d, accuracy, lr, grad_norm)
and ``eval/<evaluator>/<metric>`` (``eval/reid/mAP``, ``eval/face/mean_accuracy``,
``eval/face/lfw/accuracy``). One panel per train scalar (loss, CE, L_d,
accuracy, lr on a log scale, then any other), then one per eval metric name
(mAP, rank-1, mean accuracy, accuracy first; bookkeeping such as
``extract_seconds``, ``num_queries`` or ``pairs`` is left out); x axis: the
training step. Fraction metrics (mAP, rank-k, accuracy, VAL) are drawn in
percent. Runs are overlaid, one colour each; in a panel of several series of one
run (the face accuracy of each verification set) each series has its own colour,
marker and legend entry. A key a run lacks is absent from that panel, and an L_d that is 0 throughout (a network without StRA logs
0) is left out and noted. The PNG is written atomically; bad input (no
``metrics.jsonl``, a malformed line) stops before anything is written.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from stra_jax.utils import as_path

Series = dict[str, tuple[list[int], list[float]]]  # key -> (steps, values), ascending steps

TRAIN_PANELS = {"train/loss": "loss", "train/ce": "cross-entropy (CE)", "train/diversity": "L_d (diversity loss)",
                "train/accuracy": "train accuracy", "train/lr": "learning rate (log)"}
EVAL_FIRST = ("mAP", "rank1", "mean_accuracy", "accuracy")
EVAL_TITLES = {"rank1": "rank-1", "mean_accuracy": "mean accuracy", "val": "VAL@FAR"}
BOOKKEEPING = re.compile(r"(seconds|num_queries|num_valid_queries|feature_dim|pairs)$")
# Evaluation metrics that are fractions: drawn in percent, as the console tables and the sweep print them.
PERCENT = re.compile(r"(mAP|mINP|rank\d+|accuracy|val|top\d+)$")
MARKERS = ("o", "s", "^", "D", "v", "P")


def read_metrics(path: str | Path) -> Series:
    """``metrics.jsonl`` -> {key: (steps, values)}, numbers only, ascending step (a
    repeated step keeps its last value). ValueError names the file and line of a
    malformed line; FileNotFoundError a missing file."""
    path = as_path(path)  # a local or gs:// workdir's log
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected a training workdir's metrics.jsonl "
                                "(one JSON object per line with \"step\" and scalar metrics)")
    points: dict[str, dict[int, float]] = {}
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}); expected one JSON object "
                                 "per line") from None
            step = row.get("step") if isinstance(row, dict) else None
            if isinstance(step, bool) or not isinstance(step, (int, float)) or step != int(step):
                raise ValueError(f"{path}:{number}: expected a JSON object with an integer \"step\", "
                                 f"got {line.strip()[:80]!r}")
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    points.setdefault(key, {})[int(step)] = float(value)
    if not points:
        raise ValueError(f"{path}: no metrics; expected lines such as "
                         "{\"step\": 10, \"train/loss\": 2.3}")
    return {k: (sorted(v), [v[s] for s in sorted(v)]) for k, v in points.items()}


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def panels(runs: Sequence[Series]) -> list[tuple[str, list[str]]]:
    """[(title, keys)] over all runs: the train panels, then one per eval metric name."""
    keys = set().union(*runs)
    out = [(title, [k]) for k, title in TRAIN_PANELS.items() if k in keys]
    out += [(k[len("train/"):].replace("_", " "), [k]) for k in sorted(keys, key=_natural)
            if k.startswith("train/") and k not in TRAIN_PANELS]
    by_name: dict[str, list[str]] = {}
    for k in sorted(keys, key=_natural):
        if not k.startswith("train/") and not BOOKKEEPING.search(k):
            by_name.setdefault(k.rsplit("/", 1)[-1], []).append(k)
    names = [n for n in EVAL_FIRST if n in by_name] + sorted(set(by_name) - set(EVAL_FIRST), key=_natural)
    out += [(f"{EVAL_TITLES.get(n, n)} (eval{', %' if PERCENT.search(n) else ''})", by_name[n]) for n in names]
    return out


def plot(runs: Sequence[Series], labels: Sequence[str], out: str | Path) -> Path:
    """Draw every panel of :func:`panels` for ``runs`` (one colour per label) into the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stra_jax.utils import save_figure

    layout = panels(runs)
    cols = min(4, len(layout))
    rows = math.ceil(len(layout) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 2.9 * rows + 0.5), dpi=90, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    all_steps = [s for series in runs for steps, _ in series.values() for s in steps]
    lo, hi = min(all_steps), max(all_steps)
    pad = max(1.0, 0.03 * (hi - lo))
    for ax, (title, keys) in zip(axes.flat, layout):
        zero_runs = []
        for r, (series, label) in enumerate(zip(runs, labels)):
            for j, key in enumerate(keys):
                if key not in series:
                    continue
                steps, values = series[key]
                if key == "train/diversity" and not any(values):
                    zero_runs.append(label)
                    continue
                prefix = key.split("/", 1)[1] if key.startswith("eval/") else key
                series_name = prefix.rsplit("/", 1)[0]
                name = label if len(keys) == 1 else (series_name if len(runs) == 1 else f"{label}: {series_name}")
                percent = key.startswith("eval/") and bool(PERCENT.search(key))
                if percent:
                    values = [100 * v for v in values]
                # One run: a colour per series; several: a colour per run, a line style and marker per series.
                color = colors[(j if len(runs) == 1 else r) % len(colors)]
                ax.plot(steps, values, styles[j % len(styles)], color=color, lw=max(1.2, 2.4 - 0.6 * r),
                        marker=MARKERS[j % len(MARKERS)] if len(steps) < 20 else None, ms=4, label=name)
                if len(keys) == 1 and not key.startswith("train/"):  # label the latest eval value
                    ax.annotate(f"{values[-1]:.1f}" if percent else f"{values[-1]:.3g}", (steps[-1], values[-1]),
                                xytext=(-6, 6), textcoords="offset points", ha="right", va="bottom", fontsize=7,
                                color=color)
        if zero_runs:
            ax.text(0.98, 0.95, "0 throughout, not drawn: " + ", ".join(zero_runs), transform=ax.transAxes,
                    ha="right", va="top", fontsize=7, color="grey")
        if keys == ["train/lr"]:
            ax.set_yscale("log")
        elif not keys[0].startswith("train/"):
            ax.margins(y=0.12)  # room for the latest value's label inside the frame
        ax.set_title(title, fontsize=10)
        ax.set_xlim(lo - pad, hi + pad)  # one step range for every panel, also where eval ran once
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(layout):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colors[r % len(colors)], lw=2) for r in range(len(labels))]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return save_figure(fig, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stra_jax.tools.plot_metrics",
                                     description="Training curves (x: step) of runs from their metrics.jsonl.")
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="training workdir(s) with metrics.jsonl")
    parser.add_argument("--out", help="PNG to write (default for one run: WORKDIR/curves.png)")
    parser.add_argument("--labels", help="comma-separated legend labels, one per workdir (default: folder names)")
    args = parser.parse_args(argv)
    try:
        workdirs = [as_path(w) for w in args.workdirs]
        labels = args.labels.split(",") if args.labels else [w.resolve().name for w in workdirs]
        if len(labels) != len(workdirs):
            raise ValueError(f"--labels {args.labels!r} has {len(labels)} labels for {len(workdirs)} workdirs")
        if args.out is None and len(workdirs) > 1:
            raise ValueError("--out PNG is required with several workdirs")
        out = as_path(args.out) if args.out else workdirs[0] / "curves.png"
        runs = [read_metrics(w / "metrics.jsonl") for w in workdirs]
        print(f"wrote {plot(runs, labels, out)}")
    except (ValueError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
