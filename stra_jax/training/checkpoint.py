"""Orbax checkpoints of a run: keep the latest N and the best by one metric; resume.

``WORKDIR/checkpoints/<step>/{state, meta}``: ``state`` is the TrainState
(StandardSave), ``meta`` JSON with the architecture, the epoch position and
the metrics. A workdir holding another architecture's checkpoint is refused
before anything is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from stra_jax.utils import as_json, shape_mismatches

BEST_METRIC = "reid/mAP"


def metric_value(metrics: dict[str, float], name: str) -> float:
    """``metrics[name]``; checkpoints written before evaluator names were
    prefixed (``mAP`` for ``reid/mAP``) are read by the last path segment."""
    if name in metrics:
        return metrics[name]
    return metrics.get(name.rsplit("/", 1)[-1], float("-inf"))


def make_manager(workdir: str | Path, keep_last: int = 3, best_metric: str = BEST_METRIC) -> ocp.CheckpointManager:
    """Manager keeping the ``keep_last`` latest checkpoints plus the best by
    ``best_metric`` (higher is better; a name from the evaluators, e.g. "reid/mAP")."""
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=keep_last),
        pp.BestN(get_metric_fn=lambda m: metric_value(m, best_metric), n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=False,
                                           create=True)
    # Handlers named up front, so a fresh process can read item metadata before restoring.
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=options,
                                 item_handlers=handlers)


def save(manager: ocp.CheckpointManager, state: Any, meta: dict[str, Any],
         metrics: dict[str, float] | None = None) -> None:
    step = int(jax.device_get(state.step))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)),
                 metrics=metrics, force=True)
    manager.wait_until_finished()


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   expected_meta: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The latest (state, meta), or None for a fresh workdir. Fails clearly if the
    checkpoint is of another model (arch, options or parameter shapes)."""
    step = manager.latest_step()
    if step is None:
        return None
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    expected_meta = as_json(expected_meta)  # tuples -> lists, as saved
    where = manager.directory / str(step)
    for key in ("arch", "model_kwargs"):
        if meta.get(key) != expected_meta.get(key):
            raise ValueError(f"{where}: checkpoint holds {key}={meta.get(key)!r}, this run has "
                             f"{expected_meta.get(key)!r}; use another --workdir (nothing was overwritten)")
    saved = manager.item_metadata(step)["state"]
    problems = shape_mismatches(abstract_state, saved)
    if problems:
        raise ValueError(f"{where}: checkpoint does not match this run's state:\n  " + "\n  ".join(problems))
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"], meta
