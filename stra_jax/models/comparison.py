"""Trained runs side by side: complexity and accuracy (paper Table 2) and model
size vs mAP (paper Fig. 3).

A run is a training workdir (``train.py --workdir``); its ``final_metrics.json``
holds the accuracy, its ``model_last``/``model_best`` directory the exact
network (name and options, classes included) and its ``config.json`` the input
size. Complexity is measured on that network at that size, so a narrow demo
run is reported as the network it really is, not as the full-size one.

    python -m stra_jax.tools.summary --results runs/t2_*/final_metrics.json --plot fig3.png

Complexity comes from ``models/complexity.py``; the command line is ``tools/summary.py``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from stra_jax.models.complexity import count_params, forward_flops
from stra_jax.models.io import abstract_variables, read_model_spec
from stra_jax.models.registry import create_model

MODEL_DIRS = ("model_last", "model_best")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One trained run: what it is and how it scored."""

    label: str            # the workdir's name
    arch: str             # registered network
    kwargs: dict          # its options, as saved in model.json
    image_size: tuple[int, int]
    map: float            # mAP, percent
    rank1: float          # rank-1, percent
    params: int = 0
    flops: float = 0.0    # XLA FLOPs for one image at image_size


def _metric(metrics: dict, name: str, path: Path) -> float:
    """The ``<evaluator>/<name>`` value (one ReID evaluator per run; a fraction) as a percentage."""
    found = [v for k, v in metrics.items() if k.split("/")[-1] == name]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one '<evaluator>/{name}' entry (a ReID run's final metrics), "
                         f"found {len(found)} among keys {sorted(metrics)}")
    return 100.0 * float(found[0])


def read_run(path: str | Path) -> RunResult:
    """A run from its ``final_metrics.json`` (or its workdir); fails naming the file that is missing or wrong."""
    path = Path(path)
    metrics_path = path / "final_metrics.json" if path.is_dir() else path
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: no such file; expected a training workdir's final_metrics.json")
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{metrics_path}: not JSON ({err}); expected the final metrics a training run writes") from None
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{metrics_path}: no metrics in it (did the run evaluate?); expected a JSON object such as "
                         '{"reid/mAP": 0.61, "reid/rank1": 0.78}')
    map_, rank1 = _metric(metrics, "mAP", metrics_path), _metric(metrics, "rank1", metrics_path)
    workdir = metrics_path.parent
    model_dir = next((workdir / d for d in MODEL_DIRS if (workdir / d / "model.json").is_file()), None)
    if model_dir is None:
        raise FileNotFoundError(f"{workdir}: no {' or '.join(MODEL_DIRS)}/model.json beside {metrics_path.name}; "
                                "expected the workdir of a training run")
    spec = read_model_spec(model_dir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing; expected the workdir of a training run")
    size = json.loads(config_path.read_text()).get("input", {}).get("image_size")
    if not size or len(size) != 2:
        raise ValueError(f"{config_path}: input.image_size = {size!r}; expected [height, width]")
    return RunResult(label=workdir.name, arch=spec["arch"], kwargs=dict(spec.get("kwargs", {})),
                     image_size=(int(size[0]), int(size[1])), map=map_, rank1=rank1)


def with_complexity(run: RunResult) -> RunResult:
    """``run`` with the parameters and FLOPs of its exact network."""
    model = create_model(run.arch, **run.kwargs)
    variables = abstract_variables(model)
    return dataclasses.replace(run, params=count_params(variables["params"]),
                               flops=forward_flops(model, variables, run.image_size))


def results_table(runs: Sequence[RunResult]) -> str:
    """Paper Table 2's columns for trained runs."""
    header = f"{'run':<24}{'network':<24}{'params':>13}{'GFLOPs':>9}{'size':>9}{'mAP':>7}{'R-1':>7}"
    lines = [header, "-" * len(header)]
    for r in runs:
        size = f"{r.image_size[0]}x{r.image_size[1]}"
        lines.append(f"{r.label:<24}{r.arch:<24}{r.params:>13,}{r.flops / 1e9:>9.3f}{size:>9}{r.map:>7.1f}"
                     f"{r.rank1:>7.1f}")
    return "\n".join(lines)


def plot_size_vs_map(runs: Sequence[RunResult], out: str | Path) -> Path:
    """Fig. 3: parameters (millions) against mAP, marker area proportional to
    FLOPs, one labelled marker per run. Written atomically (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stra_jax.utils import save_figure

    out = Path(out)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    biggest = max(r.flops for r in runs) or 1.0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(runs):
        area = 60 + 1400 * r.flops / biggest
        ax.scatter(r.params / 1e6, r.map, s=area, alpha=0.55, color=colors[i % len(colors)],
                   edgecolors="black", linewidths=0.6)
        ax.annotate(f"{r.label}\n{r.flops / 1e9:.2g} GFLOPs", (r.params / 1e6, r.map), fontsize=7,
                    xytext=(6, 6), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("mAP (%)")
    ax.set_title("Model size vs mAP (marker area: FLOPs per image)")
    ax.grid(alpha=0.3)
    ax.margins(0.2)
    fig.tight_layout()
    return save_figure(fig, out)
