"""Orbax checkpoints of a run: keep the latest N and the best by one metric; resume.

``WORKDIR/checkpoints/<step>/{state, meta}``: ``state`` is the TrainState
(StandardSave), ``meta`` JSON with the architecture, the step and whether an
evaluation of that step is still pending. A workdir holding another
architecture's checkpoint is refused before anything is written; a damaged
step is moved to ``WORKDIR/checkpoints_damaged/`` and the previous one used.
"""
from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from stra_jax.utils import as_json, as_path, shape_mismatches, tree_shapes


def metric_value(metrics: dict[str, float], name: str) -> float:
    """``metrics[name]``; checkpoints written before evaluator names were
    prefixed (``mAP`` for ``reid/mAP``) are read by the last path segment."""
    if name in metrics:
        return metrics[name]
    return metrics.get(name.rsplit("/", 1)[-1], float("-inf"))


def make_manager(workdir: str | epath.Path, keep_last: int = 3, best_metric: str | None = None,
                 ) -> ocp.CheckpointManager:
    """Manager keeping the ``keep_last`` latest checkpoints plus, with
    ``best_metric`` (higher is better; an evaluator metric such as "reid/mAP",
    chosen by the task or ``config.train.best_metric``), the best by it."""
    policies = [pp.LatestN(n=keep_last)]
    if best_metric:
        policies.append(pp.BestN(get_metric_fn=lambda m: metric_value(m, best_metric), n=1,
                                 keep_checkpoints_without_metrics=False))
    policy = pp.AnyPreservationPolicy(policies)
    # Asynchronous: ``save`` returns once the state is in host memory and the files are written
    # in the background (the loop blocked 0.1 s per save instead of about 1 s). Callers call
    # ``finish`` before anything reads the directory and before any other orbax save.
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=True,
                                           create=True)
    # Handlers named up front, so a fresh process can read item metadata before restoring.
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(as_path(workdir) / "checkpoints", options=options,
                                 item_handlers=handlers)


def save(manager: ocp.CheckpointManager, state: Any, meta: dict[str, Any],
         metrics: dict[str, float] | None = None, *, replace: bool = False) -> None:
    """Save ``state`` at its step. ``replace=True`` rewrites an existing step
    (used to attach the evaluation's metrics to the checkpoint saved before it).

    Returns once ``state`` is in host memory; the files are written in the
    background (:func:`make_manager`). Callers call :func:`finish` before the
    process ends or anything reads the checkpoint directory.
    """
    step = int(jax.device_get(state.step))
    if replace:
        finish(manager)  # the step to replace must be complete before it is deleted
        if step in manager.all_steps():
            manager.delete(step)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)),
                 metrics=metrics, force=True)


def finish(manager: ocp.CheckpointManager) -> None:
    """Wait until every checkpoint saved so far is completely written."""
    manager.wait_until_finished()


def _short(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


def quarantine(manager: ocp.CheckpointManager, step: int, why: str) -> epath.Path:
    """Move a damaged step aside (never delete it) to ``checkpoints_damaged/`` next
    to the checkpoints, say so, and forget it."""
    src = manager.directory / str(step)
    dest_root = manager.directory.parent / "checkpoints_damaged"
    dest = dest_root / str(step)
    if jax.process_index() == 0:
        dest_root.mkdir(parents=True, exist_ok=True)
        n = 1
        while dest.exists():
            dest, n = dest_root / f"{step}.{n}", n + 1
        src.rename(dest)  # epath: a local rename, or a copy on gs://
        print(f"checkpoint {src} is damaged ({why}); moved to {dest} and skipped", flush=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"quarantine {step}")
    manager.reload()
    return dest


# Model options that change how, not what, is computed: a run may resume with others.
COMPUTATION_ONLY = ("attention_implementation", "attention_grouped_conv")


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in COMPUTATION_ONLY}
    return value


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   expected_meta: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The newest (state, meta) that restores, or None for a fresh workdir.

    A step that does not restore (missing or truncated files, missing metadata)
    is moved to ``checkpoints_damaged/`` and the next older one is tried. A
    readable checkpoint of another model (arch, options or state shapes) is
    refused with a ValueError, nothing touched.
    """
    finish(manager)  # a save of this process still being written
    expected_meta = as_json(expected_meta)  # tuples -> lists, as saved
    damaged = 0
    for step in sorted(manager.all_steps(), reverse=True):
        where = manager.directory / str(step)
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # orbax/tensorstore raise many types for unreadable files
            quarantine(manager, step, f"meta does not read: {_short(err)}")
            damaged += 1
            continue
        for key in ("arch", "model_kwargs"):
            if _comparable(meta.get(key)) != _comparable(expected_meta.get(key)):
                raise ValueError(f"{where}: checkpoint holds {key}={meta.get(key)!r}, this run has "
                                 f"{expected_meta.get(key)!r}; use another --workdir (nothing was overwritten)")
        try:
            saved = manager.item_metadata(step)["state"]
        except Exception:  # noqa: BLE001 - unreadable metadata counts as missing
            saved = None
        if saved is None or not tree_shapes(saved):
            quarantine(manager, step, "its state metadata (_METADATA) is missing or unreadable")
            damaged += 1
            continue
        problems = shape_mismatches(abstract_state, saved)
        if problems:
            raise ValueError(f"{where}: checkpoint does not match this run's state (another optimiser or "
                             "model option?); use another --workdir:\n  " + "\n  ".join(problems))
        try:
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
        except Exception as err:  # missing or truncated array files
            quarantine(manager, step, f"state does not restore: {_short(err)}")
            damaged += 1
            continue
        if damaged:
            print(f"resuming from step {step}, the newest checkpoint that restores", flush=True)
        return restored["state"], meta
    if damaged:
        print(f"all {damaged} checkpoints were damaged (moved aside); starting from scratch", flush=True)
    return None
