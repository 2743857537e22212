"""Bars of plain recipe vs :bot (issue 25) from the sweeps of benchmarks/bot_synthetic.sh.

    python benchmarks/bot_bars.py --runs runs --out docs/bot_synthetic_bars.png

One panel per set (demo, transfer): mAP mean over seeds as bars, each seed as a
dot, for the baseline and StRA under the plain recipe, :bot (16 x 4) and :bot at
batch 32. Prints the numbers it draws.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, as transfer_gap.py
from stra_jax.utils import save_figure  # noqa: E402

RECIPES = (("plain", "plain_{set}", ""), (":bot 16x4", "bot_{set}", "bot+"), (":bot at batch 32", "bot32_{set}", "bot+"))
NETWORKS = (("baseline", "baseline"), ("StRA", "paper"))


def seeds(runs: Path, folder: str, variant: str) -> list[float]:
    data = json.loads((runs / folder / "sweep.json").read_text())
    return [v["mAP"] for v in data["variants"][variant]["seeds"].values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", type=Path)
    parser.add_argument("--out", default="docs/bot_synthetic_bars.png")
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = ("#4c72b0", "#dd8452", "#55a868")
    for ax, (name, key) in zip(axes, (("demo (from scratch, 240 train images)", "demo"),
                                      ("transfer target (pretrained trunk, 480)", "transfer"))):
        for r, (label, folder, prefix) in enumerate(RECIPES):
            for n, (net, variant) in enumerate(NETWORKS):
                values = seeds(args.runs, folder.format(set=key), prefix + variant)
                x = n * 4 + r
                mean = sum(values) / len(values)
                ax.bar(x, mean, color=colours[r], label=label if n == 0 else None)
                ax.plot([x] * len(values), values, "k.", ms=5)
                ax.text(x, 1.5, f"{mean:.1f}", ha="center", fontsize=8, color="white", weight="bold")
                print(f"{key:9s} {net:8s} {label:18s} {mean:5.1f}  seeds {[round(v, 1) for v in values]}")
        ax.set_xticks([1, 5], [net for net, _ in NETWORKS])
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mAP (%), 3 seeds")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Plain recipe vs the ReID bag of tricks (:bot) on the synthetic sets", fontsize=11)
    fig.tight_layout()
    print(f"wrote {save_figure(fig, args.out, dpi=110)}")


if __name__ == "__main__":
    main()
