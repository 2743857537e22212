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
    # equivalently: @EVALUATORS.register("my_eval") on the class
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import jax

from stra_jax.registry import Registry


class Evaluator(abc.ABC):
    """Base class of what the loop and ``eval.py`` call; every registered
    evaluator subclasses it.

    * ``check(mesh)`` runs before training (cheap validation, e.g. the batch
      size against the mesh);
    * ``run`` returns metrics (floats, plus JSON-friendly extras such as a CMC
      curve); ``table`` formats them for people;
    * pictures and files beside the metrics (``eval.py``): the evaluator names
      the ``eval.py`` options it understands in ``artifact_options``;
      ``prepare_artifacts(options)`` is called before ``run`` and
      ``write_artifacts(metrics, out_dir, ...)`` after it. The tools call these
      on every evaluator and know none of them by type.
    """

    name: str
    #: ``eval.py`` options (e.g. ``visualize_ranks``) this evaluator's artifacts use.
    artifact_options: ClassVar[tuple[str, ...]] = ()

    def check(self, mesh: jax.sharding.Mesh) -> None:
        """Validate the settings against the mesh before anything runs."""

    @abc.abstractmethod
    def run(self, model: Any, variables: dict[str, Any], mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
        """The metrics of ``model`` with ``variables``."""

    @abc.abstractmethod
    def table(self, metrics: Mapping[str, Any]) -> str:
        """``metrics`` (this evaluator's, without its prefix) as a table for people."""

    def prepare_artifacts(self, options: Mapping[str, Any]) -> None:
        """Called before :meth:`run` when artifacts will be written (e.g. keep
        the features that ``run`` extracts for pictures drawn afterwards)."""

    def write_artifacts(self, metrics: Mapping[str, Any], out_dir: str | Path, *, model: Any = None,
                        variables: dict[str, Any] | None = None,
                        options: Mapping[str, Any] | None = None) -> list[Path]:
        """Pictures or files of the last :meth:`run` in ``out_dir``; the written paths."""
        return []


Factory = Callable[[str, dict[str, Any], Mapping[str, Any]], Evaluator]

#: type -> factory. Lazy "module:attribute" entries: no heavy imports until a
#: config names the type.
EVALUATORS: Registry[Factory] = Registry("evaluator")
EVALUATORS.register("reid_retrieval", "stra_jax.evaluation.reid_retrieval:ReIDRetrieval")
EVALUATORS.register("face_verification", "stra_jax.evaluation.face_verification:FaceVerification")
EVALUATORS.register("classification", "stra_jax.evaluation.classification:ClassificationAccuracy")


def register_evaluator(type_name: str, factory: Factory | str, *, overwrite: bool = False) -> None:
    """Make ``type=type_name`` usable in ``config.evals`` (a factory or "module:attribute")."""
    EVALUATORS.register(type_name, factory, overwrite=overwrite)


def list_evaluators() -> list[str]:
    """The registered evaluator types, sorted."""
    return EVALUATORS.names()


def build_evaluators(evals: Mapping[str, Any] | None, context: Mapping[str, Any]) -> list[Evaluator]:
    """One evaluator per entry of ``config.evals`` (in name order)."""
    built = []
    for name in sorted(evals or {}):
        settings = dict(evals[name])
        type_name = settings.pop("type", None)
        factory = EVALUATORS.get(type_name, key=f"config.evals.{name}.type")
        evaluator = factory(name, settings, context)
        if not isinstance(evaluator, Evaluator):
            raise TypeError(f"config.evals.{name}: the {type_name!r} factory returned a "
                            f"{type(evaluator).__name__}, not a stra_jax.evaluation.Evaluator subclass")
        built.append(evaluator)
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
