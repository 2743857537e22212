"""``config.train.losses`` -> the training objective: weighted registered terms.

``train.losses`` maps a term name (``LOSSES``) to ``{"weight": w, **options}``
(a bare number is the weight)::

    {"ce": {"weight": 1.0, "label_smoothing": 0.1}, "diversity": {"weight": 1.0}}

The objective's total is ``sum_i w_i * value_i`` in float32, in the entries'
order (a ConfigDict iterates its keys sorted; addition of two terms is exact
either way round), and its metrics are ``{"loss": total, **each term's}``.
Everything is checked when the objective is built, before training starts.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from stra_jax.losses.registry import LOSSES, LossContext, Objective, Term
from stra_jax.utils import check_moved_keys

# Keys of config.train before train.losses -> where their setting lives now.
LEGACY_KEYS = {
    "label_smoothing": "train.losses.ce.label_smoothing",
    "diversity_weight": "train.losses.diversity.weight",
    "loss": "train.losses.<name> (the loss term's name, e.g. train.losses.arcface)",
    "margin": "train.losses.<arcface|cosface>.margin",
    "scale": "train.losses.<arcface|cosface>.scale",
    "straight_through": "train.losses.<arcface|cosface>.straight_through",
}
EXAMPLE = "{'ce': {'weight': 1.0, 'label_smoothing': 0.0}, 'diversity': {'weight': 1.0}}"


def check_legacy_keys(train_config: Any) -> None:
    """Refuse a ``config.train`` that still sets a loss key of before
    ``train.losses``, naming the key and its new home."""
    check_moved_keys(train_config, LEGACY_KEYS,
                     note=f"config.train.losses names weighted loss terms, e.g. {EXAMPLE}")


def train_objective(train_config: Any, context: LossContext) -> Objective:
    """:func:`build_objective` of ``train_config.losses`` after
    :func:`check_legacy_keys`: what a task calls with ``config.train``."""
    check_legacy_keys(train_config)
    if "losses" not in train_config:
        raise ValueError(f"train.losses: missing; expected weighted loss terms, e.g. {EXAMPLE}; "
                         f"known loss terms: {LOSSES.names()}")
    return build_objective(train_config["losses"], context, key="train.losses")


def _as_dict(value: Any) -> dict[str, Any]:
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _weight_and_options(entry: Any, key: str) -> tuple[float, dict[str, Any]]:
    """An entry (a number, or a mapping with "weight") -> (weight, the other keys)."""
    if hasattr(entry, "keys"):
        options = _as_dict(entry)
        if "weight" not in options:
            raise ValueError(f"{key}.weight: missing; every loss term needs a weight (a number >= 0)")
        weight = options.pop("weight")
    elif isinstance(entry, numbers.Real) and not isinstance(entry, bool):
        weight, options = entry, {}
    else:
        raise ValueError(f"{key}={entry!r}: expected a weight (a number >= 0) or a mapping "
                         "{'weight': w, ...options}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{key}.weight={weight!r}: expected a number >= 0")
    return float(weight), options


def _with_defaults(name: str, factory: Any, options: dict[str, Any], key: str) -> dict[str, Any]:
    """Options with the factory's declared defaults filled in; an undeclared option fails."""
    declared = getattr(factory, "options", None)
    if declared is None:
        return options
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ValueError(f"{key}: unknown option(s) {unknown} for the loss term {name!r}; valid options: "
                         f"{sorted(declared) + ['weight']}")
    return {**declared, **options}


def _claim(owners: dict[str, str], metrics: Any, name: str, key: str) -> None:
    """Record that term ``name`` reports ``metrics``: one metric name, one term."""
    for metric in metrics:
        if metric == "loss":
            raise ValueError(f"{key}.{name}: the loss term reports a metric 'loss', the name of the objective's "
                             "total; rename it")
        if metric in owners:
            raise ValueError(f"{key}: the loss terms {owners[metric]!r} and {name!r} both report the metric "
                             f"{metric!r}; keep one of them")
        owners[metric] = name


def build_objective(losses_config: Mapping[str, Any], context: LossContext, key: str = "train.losses") -> Objective:
    """The training objective of weighted registered loss terms.

    Args:
        losses_config: term name -> ``{"weight": w, **options}`` or a bare
            weight (dict or ConfigDict), in the order the total is summed.
        context: what the task knows (:class:`LossContext`).
        key: the config key of ``losses_config``, for messages.

    Returns:
        ``objective(outputs, batch, collections) -> (total, metrics)``: float32
        scalar ``sum_i w_i * value_i`` and ``{"loss": total, **every term's
        metrics}``, traced inside the train step. ``objective.check_labels(labels
        (B,))`` runs the host-side checks of the terms that have one (a term's
        ``check_labels`` attribute: e.g. batch-hard triplet refuses a batch with
        one image per identity), on the labels of a global (micro-)batch;
        ``objective.has_label_checks`` says whether any term has one.

    Raises:
        ValueError naming the key: no terms, an unknown term (with the known
        ones), a missing / negative / non-number weight, an unknown option
        (with the valid ones), a bad option value (the term's own check), two
        terms reporting one metric name.
    """
    if not hasattr(losses_config, "keys"):
        raise ValueError(f"{key}={losses_config!r}: expected a mapping of loss term names to weighted "
                         f"options, e.g. {EXAMPLE}")
    if not list(losses_config.keys()):
        raise ValueError(f"{key} is empty: name at least one loss term, e.g. {EXAMPLE}; "
                         f"known loss terms: {LOSSES.names()}")
    terms: list[tuple[str, float, Term]] = []
    owners: dict[str, str] = {}
    for name in losses_config.keys():
        factory = LOSSES.get(name, key=key)
        entry_key = f"{key}.{name}"
        weight, options = _weight_and_options(losses_config[name], entry_key)
        options = _with_defaults(name, factory, options, entry_key)
        if getattr(factory, "metrics", None) is not None:
            _claim(owners, factory.metrics, name, key)
        terms.append((name, weight, factory(options, dataclasses.replace(context, key=entry_key))))

    def objective(outputs, batch, collections):
        total = None
        metrics: dict[str, jax.Array] = {}
        traced: dict[str, str] = {}
        for name, weight, term in terms:
            value, term_metrics = term(outputs, batch, collections)
            value = jnp.asarray(value, jnp.float32)
            if value.shape != ():
                raise ValueError(f"{key}.{name}: the loss term returned a value of shape {value.shape}, "
                                 "expected a scalar")
            _claim(traced, term_metrics, name, key)  # undeclared metrics: found at the first trace
            # w = 1 adds the value itself: exact, and the graph of the objectives before train.losses.
            part = value if weight == 1.0 else jnp.float32(weight) * value
            total = part if total is None else total + part
            metrics.update(term_metrics)
        return total, {"loss": total, **metrics}

    checks = [getattr(term, "check_labels") for _, _, term in terms if callable(getattr(term, "check_labels", None))]

    def check_labels(labels: Any) -> None:
        for check in checks:
            check(labels)

    objective.check_labels = check_labels  # type: ignore[attr-defined]
    objective.has_label_checks = bool(checks)  # type: ignore[attr-defined]
    return objective
