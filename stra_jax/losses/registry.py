"""The loss-term registry and what a term factory is given.

A loss term is registered under the name ``config.train.losses`` uses for it::

    @LOSSES.register("center")
    @loss_term(metrics=("center",), options={"alpha": 0.5})
    def center_term(options, context):
        def term(outputs, batch, collections):
            value = ...                        # float32 scalar
            return value, {"center": value}
        return term

``options`` holds the entry's keys other than ``weight``, the declared defaults
filled in; ``context`` (:class:`LossContext`) what the task knows (class count,
classifier layout). The term is traced inside the jitted train step with the
model's outputs dict, the batch (``labels`` (B,), ...) and the mutable
collections of the forward pass (``losses``: StRA's sown L_d).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax

from stra_jax.registry import Registry

#: term(outputs, batch, collections) -> (float32 scalar, {metric: float32 scalar})
Term = Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array], Mapping[str, Any]],
                tuple[jax.Array, dict[str, jax.Array]]]
#: objective(outputs, batch, collections) -> (total, {"loss": total, **metrics}); the same call as a Term
Objective = Term


@dataclasses.dataclass(frozen=True)
class LossContext:
    """What a term factory may use besides its options.

    Attributes:
        num_classes: classes of the training set; ``None`` while a config is
            checked before the data is read.
        shard_classifier: the classifier's (D, C) weights are split over the
            mesh axis "data" along the classes (margin terms shard their loss).
        key: the config key of the term's entry (``"train.losses.arcface"``),
            for messages; set by ``build_objective``.
    """

    num_classes: int | None = None
    shard_classifier: bool = False
    key: str = "train.losses"


TermFactory = Callable[[dict[str, Any], LossContext], Term]

LOSSES: Registry[TermFactory] = Registry("loss term")


def loss_term(*, metrics: tuple[str, ...], options: Mapping[str, Any] | None = None
              ) -> Callable[[TermFactory], TermFactory]:
    """Declare a factory's metric names and its options with their defaults, so
    that ``build_objective`` refuses unknown options and two terms reporting one
    metric before training starts. A factory without it gets its options as
    given, and a clash of metric names is found at the first trace."""
    def declare(factory: TermFactory) -> TermFactory:
        factory.metrics = tuple(metrics)  # type: ignore[attr-defined]
        factory.options = dict(options or {})  # type: ignore[attr-defined]
        return factory

    return declare
