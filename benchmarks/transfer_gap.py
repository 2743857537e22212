"""The StRA-vs-baseline gap against the size of the ReID target (issue #24).

Reads the sweeps of ``benchmarks/transfer_synthetic.sh`` (``sweep.json`` of
``RUNS/transfer_n240``, ``RUNS/table3_transfer`` (480 training images),
``RUNS/transfer_n960``, ``RUNS/transfer_n1920``, ``RUNS/transfer_n3840``; those
absent are skipped), prints a markdown table (mAP mean +- std per network and
size, the gap) and draws mAP against training images for both networks (seeds
as dots). If the gap shrinks, a straight line through the gap against
log2(training images) says where the lines would cross (an extrapolation,
printed as such).

    python benchmarks/transfer_gap.py --runs runs --out docs/transfer_gap.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# sweep directory -> (training images, variant names of the baseline and full StRA in it)
SWEEPS = {"transfer_n240": (240, "n240+baseline", "n240+paper"),
          "table3_transfer": (480, "baseline", "paper"),
          "transfer_n960": (960, "n960+baseline", "n960+paper"),
          "transfer_n1920": (1920, "n1920+baseline", "n1920+paper"),
          "transfer_n3840": (3840, "n3840+baseline", "n3840+paper")}


def read_points(runs: Path, metric: str) -> list[tuple[int, list[float], list[float]]]:
    """(training images, baseline values per seed, StRA values per seed) per size found."""
    points = []
    for folder, (images, base, stra) in SWEEPS.items():
        path = runs / folder / "sweep.json"
        if not path.is_file():
            continue
        variants = json.loads(path.read_text())["variants"]
        values = [[v[metric] for v in variants.get(name, {}).get("seeds", {}).values()] for name in (base, stra)]
        if all(values):
            points.append((images, *values))
    return points


def crossing(sizes: np.ndarray, gaps: np.ndarray) -> float | None:
    """Training images where a least-squares line of gap vs log2(images) reaches 0
    (None unless the gap shrinks)."""
    if len(sizes) < 2:
        return None
    slope, intercept = np.polyfit(np.log2(sizes), gaps, 1)
    if slope >= 0:
        return None
    return float(2 ** (-intercept / slope))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs", help="the OUT folder of benchmarks/transfer_synthetic.sh")
    p.add_argument("--out", default=None, help="PNG to draw (default: only the table)")
    p.add_argument("--metric", default="mAP")
    args = p.parse_args(argv)
    points = read_points(Path(args.runs), args.metric)
    if not points:
        print(f"{args.runs}: no finished sweep of {sorted(SWEEPS)}", file=sys.stderr)
        return 1
    print(f"| training images | baseline {args.metric} | StRA {args.metric} | gap (baseline - StRA) | seeds |")
    print("|---:|---:|---:|---:|---:|")
    sizes, gaps = [], []
    for images, base, stra in points:
        def fmt(v):
            return f"{np.mean(v):.1f}" + (f" +- {np.std(v, ddof=1):.1f}" if len(v) > 1 else "")
        gap = float(np.mean(base) - np.mean(stra))
        sizes.append(images)
        gaps.append(gap)
        print(f"| {images} | {fmt(base)} | {fmt(stra)} | {gap:+.1f} | {len(base)} / {len(stra)} |")
    cross = crossing(np.array(sizes, float), np.array(gaps))
    if cross is None:
        print("\nThe gap does not shrink with the target's size (least-squares slope against log2 images >= 0).")
    else:
        print(f"\nA straight line through the gap against log2(training images) reaches 0 at about "
              f"{cross:,.0f} training images (an extrapolation).")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        for k, (label, colour, marker) in enumerate((("baseline (ResNet)", "tab:blue", "o"),
                                                     ("full StRA", "tab:red", "s"))):
            means = [np.mean(pt[1 + k]) for pt in points]
            ax.plot(sizes, means, color=colour, marker=marker, label=label)
            for images, *vals in points:
                ax.scatter([images] * len(vals[k]), vals[k], color=colour, alpha=0.35, s=14, marker=marker)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("training images of the ReID target (log scale)\n(as many test identities as training identities)", fontsize=9)
        ax.set_ylabel(f"{args.metric} (%)")
        ax.set_title("Transplanted trunk, paper's freezing: mAP vs target size", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=130)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
