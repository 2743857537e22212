"""Numbers of several runs side by side, shared by the sweep (``sweep.py``) and the
report (``report.py``): a metric looked up in a final-metrics dict, mean and
sample std over seeds, and the ``mean +- std`` cell of their tables."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from stra_jax.evaluation.evaluators import scalars


def metric_value(data: Mapping[str, Any], metric: str, source: Any) -> float:
    """``data[metric]``, or the one scalar ``<evaluator>/<metric>`` when ``metric``
    is a bare name (``mAP``); ValueError naming ``source`` (the file) and its
    scalar metrics otherwise."""
    values = scalars(data)
    if metric in values:
        return values[metric]
    found = [v for k, v in values.items() if k.split("/")[-1] == metric]
    if len(found) != 1:
        raise ValueError(f"{source}: expected one '<evaluator>/{metric}' value, found {len(found)}; "
                         f"its metrics: {sorted(values)} (choose with --metrics)")
    return found[0]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN with one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def format_mean_std(mean: float, std: float, spec: str = ".1f") -> str:
    """``"45.0 +- 7.1"`` (``"45.0"`` when the std is NaN: one seed)."""
    return f"{mean:{spec}}" + ("" if math.isnan(std) else f" +- {std:{spec}}")
