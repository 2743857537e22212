"""Evaluators built from the config (big_vision's ``config.evals``), shared by
the training loop and ``eval.py`` so the two cannot drift.

``config.evals`` maps a name to the evaluator's settings plus its ``type``::

    config.evals.reid = dict(type="reid_retrieval", image_size=(256, 128), batch_size=128, ...)

The type names a factory ``factory(name, settings, context) -> Evaluator``;
``context`` holds what the task supplies (e.g. ``reid_dataset``). Metrics are
reported as ``"<name>/<metric>"`` (``reid/mAP``), so several evaluators of one
run never collide.

Register your own (from any module)::

    register_evaluator("my_eval", MyEvaluator)            # or "package.module:MyEvaluator"
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Protocol

import jax


class Evaluator(Protocol):
    """What the loop and ``eval.py`` call. ``check`` runs before training (cheap
    validation, e.g. the batch size against the mesh); ``run`` returns metrics
    (floats, plus JSON-friendly extras such as a CMC curve); ``table`` formats
    them for people."""

    name: str

    def check(self, mesh: jax.sharding.Mesh) -> None: ...

    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]: ...

    def table(self, metrics: Mapping[str, Any]) -> str: ...


Factory = Callable[[str, dict[str, Any], Mapping[str, Any]], Evaluator]

# type -> factory, or "module:attribute" imported on first use (no heavy imports here).
_EVALUATORS: dict[str, Factory | str] = {
    "reid_retrieval": "stra_jax.evaluation.reid_retrieval:ReIDRetrieval",
    "face_verification": "stra_jax.evaluation.face_verification:FaceVerification",
}


def register_evaluator(type_name: str, factory: Factory | str, *, overwrite: bool = False) -> None:
    """Make ``type=type_name`` usable in ``config.evals``."""
    if type_name in _EVALUATORS and not overwrite:
        raise ValueError(f"evaluator type {type_name!r} is already registered (pass overwrite=True to replace it)")
    _EVALUATORS[type_name] = factory


def list_evaluators() -> list[str]:
    return sorted(_EVALUATORS)


def _factory(type_name: str) -> Factory:
    factory = _EVALUATORS[type_name]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def build_evaluators(evals: Mapping[str, Any] | None, context: Mapping[str, Any]) -> list[Evaluator]:
    """One evaluator per entry of ``config.evals`` (in name order)."""
    built = []
    for name in sorted(evals or {}):
        settings = dict(evals[name])
        type_name = settings.pop("type", None)
        if type_name not in _EVALUATORS:
            raise ValueError(f"config.evals.{name}.type={type_name!r}: unknown evaluator; "
                             f"known evaluators: {list_evaluators()}")
        built.append(_factory(type_name)(name, settings, context))
    return built


def run_evaluators(evaluators: list[Evaluator], model: Any, variables: dict[str, Any],
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
    """All evaluators' metrics, flattened to ``"<name>/<metric>"``."""
    out: dict[str, Any] = {}
    for evaluator in evaluators:
        out.update({f"{evaluator.name}/{k}": v for k, v in evaluator.run(model, variables, mesh).items()})
    return out


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The float-valued metrics (what logs, TensorBoard and checkpoint policies take)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def of_evaluator(metrics: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``"<name>/..."`` entries of flattened metrics, without the prefix."""
    prefix = f"{name}/"
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def tables(evaluators: list[Evaluator], metrics: Mapping[str, Any]) -> str:
    """Every evaluator's table of its part of flattened ``metrics``."""
    return "\n".join(e.table(of_evaluator(metrics, e.name)) for e in evaluators)


def check_settings(name: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``settings``; an unknown key names the valid ones."""
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"config.evals.{name}: unknown setting(s) {unknown}; valid settings: {sorted(defaults)}")
    return {**defaults, **settings}
