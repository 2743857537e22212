"""The epoch loop, the same for every task: data -> sharded train step -> logs,
evaluators, checkpoints and evaluable model directories.

The task (``config.task``, see ``stra_jax.tasks``) supplies the data, the loss
and the evaluators; the loop supplies everything else. Rerunning with the same
workdir resumes from the latest checkpoint: the schedule, the data order (a
function of seed, epoch and step) and the state continue exactly where they
stopped.

Workdir layout::

    config.json            the resolved config
    run.json               the record: config, seed, versions, devices, commit per session, final metrics
    checkpoints/<step>/    orbax TrainState + meta (latest N and the best)
    model_last/            evaluable model directory of the last evaluated state (or the final one)
    model_best/            ... of the best state by ``train.best_metric``
    metrics.jsonl, tensorboard/, final_metrics.json
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
from etils import epath

from stra_jax.evaluation.evaluators import run_evaluators, scalars, tables
from stra_jax.models import abstract_variables, create_model, frozen_param_mask, init_variables
from stra_jax.models.io import (MODEL_BEST, MODEL_LAST, copy_model_dir, load_variables, read_model_spec, save_model,
                                update_model_info)
from stra_jax.models.transplant import TransplantReport, resolve_init_source, transplant
from stra_jax.sharding import gather_to_host, make_mesh, prefetch_to_mesh, state_shardings
from stra_jax.tasks import make_task
from stra_jax.training import checkpoint
from stra_jax.training.interrupt import Interrupted, SignalGuard
from stra_jax.training.optim import optimizer_from_config
from stra_jax.training.progress import LoopClock, NonFiniteLoss, flush_metrics
from stra_jax.training.record import finish_record, start_record
from stra_jax.training.schedules import make_schedule, scaled_lr
from stra_jax.training.state import TrainState
from stra_jax.training.step import check_micro_batches, make_train_step, micro_batches
from stra_jax.training.validate import check_train_config, check_workdir
from stra_jax.training.writers import MetricWriter
from stra_jax.utils import ConfigError, as_path, write_json_atomic

__all__ = ["Interrupted", "NonFiniteLoss", "train_and_evaluate"]


def initial_variables(config, model) -> dict[str, Any]:
    """Random init (``config.seed``), or ``config.init_from`` (a path as given,
    relative to the working directory, or ``gs://``):

    * a training workdir (its ``model_best/``, else ``model_last/``) or a model
      directory (``model.json`` + ``variables/``) of any architecture of the same
      family: every tensor with the same name and shape is copied, the others
      (new modules such as StRA, a resized head) stay at their initialisation
      (``models/transplant.py``; the same architecture loads everything);
    * a PyTorch state_dict (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``:
      ImageNet or the authors' weights), loaded where name and shape match.

    Prints one report: counts, the tensors left at initialisation by module,
    conflicting shapes, unused source tensors. A source sharing no tensor with
    the model fails naming both architectures.
    """
    variables = init_variables(model, jax.random.key(config.seed))
    source = config.get("init_from")
    if not source:
        return variables
    init = resolve_init_source(source)
    if init.kind == "state_dict":
        from stra_jax.convert import load_state_dict, read_state_dict

        variables, loaded = load_state_dict(variables, read_state_dict(init.path), strict=False, model=model)
        # The same counts as a transplant; names are PyTorch's.
        report = TransplantReport(source_arch="PyTorch state_dict", target_arch=config.model.name,
                                  loaded=loaded.loaded, new=loaded.missing, conflicting=loaded.mismatched,
                                  unused=loaded.unexpected)
        print(report.describe(str(init)), flush=True)
        return variables
    source_arch = read_model_spec(init.path)["arch"]
    try:
        variables, report = transplant(variables, load_variables(init.path), target_arch=config.model.name,
                                       source_arch=source_arch)
    except ValueError as err:
        raise ValueError(f"init_from {init}: {err}") from None
    print(report.describe(str(init)), flush=True)
    return variables


def task_preprocessing(task: Any, config: Any) -> dict[str, Any] | None:
    """The task's evaluation preprocessing (``Task.preprocessing``), or None for a
    task that does not describe it."""
    try:
        return task.preprocessing(config)
    except NotImplementedError:
        return None


def write_model_dir(out: Path, arch: str, kwargs: dict[str, Any], variables: dict[str, Any],
                    info: dict[str, Any]) -> None:
    """An evaluable model directory of the current variables (process 0 writes;
    replaced atomically, so a reader sees the old or the new one)."""
    # Replicated arrays: this host's copy; split ones (a sharded classifier) are
    # gathered, which every process joins before process 0 writes.
    host = gather_to_host(variables)
    if jax.process_index() != 0:
        return
    save_model(out, arch, kwargs, host, overwrite=True, info=info)


def _best_so_far(workdir: Path, metric: str) -> float:
    try:
        logged = read_model_spec(workdir / MODEL_BEST).get("info", {}).get("metrics", {})
    except (FileNotFoundError, ValueError):
        return float("-inf")
    return checkpoint.metric_value(logged, metric)


def announce_outputs(workdir: Path, best_metric: str | None, keep: int) -> None:
    kept = f"last {keep} + best by {best_metric}" if best_metric else f"last {keep}"
    print(f"workdir {workdir}\n"
          f"  checkpoints    {workdir / 'checkpoints'} ({kept}; rerun to resume)\n"
          f"  models         {workdir / MODEL_BEST}, {workdir / MODEL_LAST} (for eval.py, extract_features)\n"
          f"  metrics        {workdir / 'metrics.jsonl'}, TensorBoard {workdir / 'tensorboard'}\n"
          f"  config, final  {workdir / 'config.json'}, {workdir / 'final_metrics.json'}", flush=True)


def train_and_evaluate(config, workdir: str | Path) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns
    the final evaluation metrics (``"<evaluator>/<metric>"``).

    Bad settings fail before anything is created. SIGINT/SIGTERM save a
    checkpoint at the current step and raise :class:`Interrupted`; a workdir
    this call created is removed again if it fails before training starts.
    """
    workdir = as_path(workdir)  # local or gs://: one API (etils epath), orbax takes either
    check_train_config(config)
    check_workdir(workdir)
    created = not workdir.exists()
    progress = {"started": False}
    with SignalGuard() as guard:
        try:
            with jax.set_mesh(make_mesh()):  # the ambient mesh, for losses that shard_map over it
                return _train(config, workdir, guard, progress)
        except BaseException:
            if created and not progress["started"] and jax.process_index() == 0:
                with contextlib.suppress(Exception):
                    workdir.rmtree(missing_ok=True)
            raise


def _train(config, workdir: epath.Path, guard: SignalGuard, progress: dict[str, bool]) -> dict[str, Any]:
    cfg = config.train
    task = make_task(config, workdir)
    print(task.load())

    mesh = make_mesh()
    if cfg.batch_size % (cfg.accum_steps * mesh.devices.size):
        raise ConfigError(f"train.batch_size={cfg.batch_size} must divide into accum_steps={cfg.accum_steps} "
                          f"micro-batches over {mesh.devices.size} devices")
    group_size = task.sampler.group_size  # examples each micro-batch keeps together (1: no grouping)
    check_micro_batches(cfg.batch_size, cfg.accum_steps, group_size)
    evaluators = task.evaluators()
    for evaluator in evaluators:
        evaluator.check(mesh)
    model_kwargs = dict(config.model.kwargs, **task.model_overrides())
    model = create_model(config.model.name, **model_kwargs)
    per_epoch = task.steps_per_epoch(cfg.batch_size)
    if per_epoch < 1:
        raise ValueError(f"{task.num_train_examples} training examples < one batch of train.batch_size="
                         f"{cfg.batch_size}")
    total_steps = per_epoch * cfg.epochs
    frozen_steps = per_epoch * cfg.frozen_epochs
    # config.train.schedule / .optimizer name registered ones (training/schedules.py, optim.py).
    base_lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.get("lr_reference_batch", 0))
    if base_lr != cfg.lr:
        print(f"lr {base_lr:.4g} = train.lr {cfg.lr:g} x train.batch_size {cfg.batch_size} / "
              f"train.lr_reference_batch {cfg.lr_reference_batch} (the linear scaling rule)", flush=True)
    schedule = make_schedule(cfg.schedule, base_lr=base_lr, steps_per_epoch=per_epoch, total_steps=total_steps)
    frozen_groups = tuple(cfg.frozen_groups) if frozen_steps else ()
    abstract_params = abstract_variables(model)["params"]
    tx = optimizer_from_config(
        cfg, schedule, frozen_steps=frozen_steps,
        frozen_mask=frozen_param_mask(model, abstract_params, frozen_groups) if frozen_groups else None)

    best_metric = task.best_metric  # the task's choice, or config.train.best_metric
    workdir.mkdir(parents=True, exist_ok=True)
    manager = checkpoint.make_manager(workdir, keep_last=cfg.keep_checkpoints, best_metric=best_metric)
    meta = {"arch": config.model.name, "model_kwargs": model_kwargs}
    abstract_state = jax.eval_shape(lambda: TrainState.create(abstract_variables(model), tx))
    # Replicated, except the leaves the task splits (e.g. a face classifier along its classes).
    state_sharding = state_shardings(abstract_state, mesh, task.sharding_rules())
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract_state, state_sharding)
    restored = checkpoint.restore_latest(manager, abstract_state, meta)
    pending_eval = False
    if restored is None:
        state = TrainState.create(initial_variables(config, model), tx)
    else:
        state, saved_meta = restored
        pending_eval = bool(saved_meta.get("pending_eval")) and bool(evaluators)
        print(f"resumed from step {int(state.step)} in {manager.directory}")
    # a loss that cannot work on the sampler's batches (triplet on one image per identity) stops here
    check_first_batch(task, cfg, config.seed, int(state.step), per_epoch, group_size)
    state = jax.device_put(state, state_sharding)
    write_json_atomic(workdir / "config.json", config.to_dict())
    start_record(workdir, config, mesh)  # run.json: seed, versions, devices, commit (a session per start)
    announce_outputs(workdir, best_metric, cfg.keep_checkpoints)

    step_kw = dict(accum_steps=cfg.accum_steps, group_size=group_size, seed=config.seed,
                   state_sharding=state_sharding)
    open_step = make_train_step(model, tx, schedule, mesh, task.loss, **step_kw)
    frozen_step = make_train_step(model, tx, schedule, mesh, task.loss, frozen=frozen_groups, **step_kw)

    preprocessing = task_preprocessing(task, config)

    def run_info(step: int) -> dict[str, Any]:
        """What a model directory records of the run: its step, epoch, config, the
        evaluation preprocessing (mean / std, resize) and (later) its metrics."""
        info = {"step": step, "epoch": step // per_epoch, "metrics": {}, "config": config.to_dict()}
        return dict(info, preprocessing=preprocessing) if preprocessing else info

    def save(step: int, **extra: Any) -> None:
        with guard.deferred(), clock.phase("checkpoint"):
            checkpoint.save(manager, state, dict(meta, step=step, **extra))

    def write_model_last(info: dict[str, Any]) -> None:
        # The checkpoint saved just before must be complete first: with orbax 0.12.8, a synchronous
        # orbax save (the model directory's variables) while an asynchronous one was still writing
        # made the latter fail (its metadata write found its directory gone; 5 of 7 runs of the
        # cifar10 mock-data test, 0 of 8 with this wait).
        checkpoint.finish(manager)
        write_model_dir(workdir / MODEL_LAST, config.model.name, model_kwargs, state.variables, info)

    def save_model_dir(info: dict[str, Any]) -> None:
        with guard.deferred(), clock.phase("checkpoint"):
            write_model_last(info)

    def evaluate_and_save(step: int, saved: bool = False) -> dict[str, Any]:
        """Checkpoint first (marked pending), then evaluate: a failed or
        interrupted evaluation never costs the epoch; it reruns on resume."""
        info = run_info(step)
        if not saved:
            save(step, pending_eval=True)
            save_model_dir(info)
        with guard.immediate(f"during the evaluation of step {step}: its checkpoint is saved and the "
                             "evaluation reruns when you rerun the same command"), clock.phase("evaluation"):
            metrics = run_evaluators(evaluators, model, state.variables, mesh)
        logged = scalars(metrics)
        with guard.deferred(), clock.phase("checkpoint"):
            writer.write(step, {f"eval/{k}": v for k, v in logged.items()})
            print(f"evaluation at step {step} (epoch {step // per_epoch}):\n{tables(evaluators, metrics)}",
                  flush=True)
            checkpoint.save(manager, state, dict(meta, step=step), metrics=logged, replace=True)
            info["metrics"] = logged
            if not (workdir / MODEL_LAST).is_dir():  # every process joins (gathers split arrays)
                write_model_last(info)
            if jax.process_index() == 0:
                update_model_info(workdir / MODEL_LAST, info)
                if best_metric and best_metric in logged and logged[best_metric] > _best_so_far(workdir, best_metric):
                    copy_model_dir(workdir / MODEL_LAST, workdir / MODEL_BEST)
        return metrics

    step = int(state.step)
    writer = MetricWriter(workdir, resume_step=step, drop_eval_at_resume=pending_eval)
    progress["started"] = True
    final: dict[str, Any] = {}
    pending: list[tuple[int, Any]] = []
    clock = LoopClock(cfg.batch_size, total_steps, step)  # where the wall time goes; the progress line
    shown = ("loss",) + tuple(task.progress_metrics)
    resume_hint = "rerun the same command to resume"
    stream = None
    compiled: set[Any] = set()  # the jitted steps already called in this session

    def evaluates(epoch: int, at: int) -> bool:
        return bool(evaluators) and (epoch % cfg.eval_every_epochs == 0 or at == total_steps)

    def saves_or_evaluates(epoch: int, at: int) -> bool:
        """Whether the end of ``epoch`` (at step ``at``) saves a checkpoint or evaluates."""
        return evaluates(epoch, at) or epoch % cfg.checkpoint_every_epochs == 0 or at == total_steps

    try:
        if pending_eval:
            print(f"step {step}: its evaluation did not finish; running it first")
            final = evaluate_and_save(step, saved=True)
        # One stream over the rest of the run: the next epoch's pipeline starts while this one's
        # last steps run, instead of after its checkpoint.
        stream = prefetch_to_mesh(run_batches(task, cfg.batch_size, step, per_epoch, total_steps), mesh,
                                  size=cfg.get("prefetch", 2))
        batches = clock.batches(stream)
        while step < total_steps:
            with guard.deferred():  # signals wait for the step in flight, then save it
                for batch in batches:
                    fn = frozen_step if step < frozen_steps else open_step
                    if fn in compiled:
                        state, metrics = fn(state, batch)
                    else:  # the first call compiles: wait for it once, so no rate or ETA carries it
                        with clock.phase("compilation"):
                            state, metrics = jax.block_until_ready(fn(state, batch))
                        compiled.add(fn)
                        print(f"[{step + 1:>6}/{total_steps}] compiled and ran the training step in "
                              f"{clock.last:.1f} s; the rates below leave it out", flush=True)
                    step += 1
                    clock.stepped()
                    pending.append((step, metrics))
                    mid_epoch = step % per_epoch != 0  # epoch ends are saved below, with metrics
                    save_now = bool(cfg.checkpoint_every_steps) and step % cfg.checkpoint_every_steps == 0
                    # Flush (which checks the loss is finite) before any save or evaluation: no NaN state
                    # is saved. Other epoch ends do not print a line (7-step epochs would print every 7).
                    if (step % cfg.log_every == 0 or save_now or guard.requested
                            or (not mid_epoch and saves_or_evaluates(step // per_epoch, step))):
                        flush_metrics(pending, writer, step, clock, shown)
                    if mid_epoch and (save_now or guard.requested):
                        save(step)
                    if mid_epoch and guard.requested:
                        raise guard.interrupted(f"at step {step}: checkpoint saved in {manager.directory}; "
                                                + resume_hint)
                    if not mid_epoch:
                        break
                epoch_done = step // per_epoch
                evaluate_now = evaluates(epoch_done, step)
                if guard.requested:  # epoch end: save it; its evaluation (if due) runs on resume
                    save(step, pending_eval=evaluate_now)
                    raise guard.interrupted(f"at step {step} (end of epoch {epoch_done}): checkpoint saved in "
                                            f"{manager.directory}; " + resume_hint)
            if evaluate_now:
                final = evaluate_and_save(step)
            elif epoch_done % cfg.checkpoint_every_epochs == 0 or step == total_steps:
                save(step)
                if step == total_steps:  # model_last: evaluated states and the final one (it costs a
                    save_model_dir(run_info(step))  # synchronous write; the checkpoint resumes)
        if not final and evaluators:  # resumed a finished run: evaluate its final state once more
            final = run_evaluators(evaluators, model, state.variables, mesh)
    finally:
        if stream is not None:
            stream.close()  # stops the prefetch thread
        with clock.phase("checkpoint"):
            checkpoint.finish(manager)  # on every exit: no checkpoint is left half-written
        writer.close()
    if clock.steps:
        print(clock.summary(), flush=True)
    write_json_atomic(workdir / "final_metrics.json", final)
    finish_record(workdir, final, step)
    if final:
        print(f"final (step {step}):\n{tables(evaluators, final)}")
    return final


def run_batches(task: Any, batch_size: int, step: int, per_epoch: int, total_steps: int) -> Iterator[Any]:
    """This host's training batches from ``step`` to ``total_steps``
    (``Task.train_stream``: one pipeline for the rest of the run where the task
    has one). A stream that ends early is an error of the task."""
    epoch, in_epoch = divmod(step, per_epoch)
    epochs = -(-total_steps // per_epoch) - epoch
    if epochs < 1:
        return
    for batch in task.train_stream(epoch=epoch, start_step=in_epoch, epochs=epochs, global_batch=batch_size,
                                   process_index=jax.process_index(), process_count=jax.process_count()):
        yield batch
        step += 1
        if step == total_steps:
            return
    raise ValueError(f"the {type(task).__name__}'s training batches ended at step {step}, expected "
                     f"{total_steps} ({per_epoch} steps per epoch at batch size {batch_size})")


def check_first_batch(task, cfg, seed: int, step: int, per_epoch: int, group_size: int) -> None:
    """The loss terms' label checks (``Task.check_batch_labels``) on the global
    batch that step ``step`` trains on, split into the micro-batches the step
    computes its loss on: read from the sampler's order and the training labels
    (the same on every host), before training starts."""
    if step >= per_epoch * cfg.epochs or not task.checks_batch_labels:
        return
    epoch, in_epoch = divmod(step, per_epoch)
    order = task.sampler.epoch_order(cfg.batch_size, seed, epoch)[in_epoch]
    labels = np.asarray(task.train_labels())[order]
    for micro in np.asarray(micro_batches(labels, cfg.accum_steps, group_size)):
        task.check_batch_labels(micro)
