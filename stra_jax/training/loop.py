"""The epoch loop: data -> sharded train step -> logs, evaluation, checkpoints.

Rerunning with the same workdir resumes from the latest checkpoint: the
schedule, the data order (a function of seed, epoch and step) and the state
continue exactly where they stopped.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from stra_jax.data.pipeline import Augment, steps_per_epoch, train_dataset
from stra_jax.data.reid import prepare_dataset
from stra_jax.evaluation.features import extract_features
from stra_jax.evaluation.reid import evaluate
from stra_jax.models import abstract_variables, create_model, frozen_param_mask, init_variables, load_model
from stra_jax.models.io import shape_mismatches
from stra_jax.training import checkpoint
from stra_jax.training.mesh import host_batch_to_global, make_mesh, replicated
from stra_jax.training.optim import make_optimizer, step_decay_schedule
from stra_jax.training.state import TrainState
from stra_jax.training.step import make_train_step
from stra_jax.training.writers import MetricWriter


class NonFiniteLoss(RuntimeError):
    pass


def _write_json(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=list)
        f.write("\n")
    os.replace(tmp, path)


def initial_variables(config, model) -> dict[str, Any]:
    """Random init, or ``config.init_from``: a PyTorch file (ImageNet or the
    authors' weights, loaded where name and shape match, the rest reported) or
    a model directory of exactly this architecture."""
    variables = init_variables(model, jax.random.key(config.seed))
    source = config.get("init_from")
    if not source:
        return variables
    from stra_jax.convert import load_state_dict, read_state_dict

    if Path(source).is_dir():
        _, loaded = load_model(source)
        problems = shape_mismatches(variables, loaded)
        if problems:
            raise ValueError(f"init_from {source}: another architecture:\n  " + "\n  ".join(problems))
        return loaded
    variables, report = load_state_dict(variables, read_state_dict(source), strict=False)
    print(f"init_from {source}: {len(report.loaded)} tensors loaded, "
          f"{len(report.initialised)} left at initialisation")
    return variables


def evaluate_model(config, model, variables, dataset, mesh) -> dict[str, float]:
    cfg = config.eval
    kw = dict(batch_size=cfg.batch_size, image_size=tuple(cfg.image_size), flip=cfg.flip, output=cfg.output,
              mesh=mesh)
    qf = extract_features(model, variables, [r.path for r in dataset.query], **kw)
    gf = extract_features(model, variables, [r.path for r in dataset.gallery], **kw)
    result = evaluate(qf, gf, [r.pid for r in dataset.query], [r.pid for r in dataset.gallery],
                      [r.camid for r in dataset.query], [r.camid for r in dataset.gallery],
                      metric=cfg.metric, normalize=cfg.normalize, rerank=cfg.rerank, max_rank=cfg.max_rank)
    return {"mAP": result.mAP, "mINP": result.mINP, "rank1": result.rank1, "rank5": result.rank5,
            "rank10": result.rank10, "rank20": result.rank20}


def train_and_evaluate(config, workdir: str | Path) -> dict[str, float]:
    """Train ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns
    the final evaluation metrics."""
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = config.train
    synthetic = config.dataset.get("synthetic")
    root = config.dataset.root or str(workdir / "data" / config.dataset.name)
    dataset = prepare_dataset(config.dataset.name, root, synthetic.to_dict() if synthetic else None)
    print(dataset.summary())

    mesh = make_mesh()
    if cfg.batch_size % (cfg.accum_steps * mesh.devices.size):
        raise ValueError(f"train.batch_size={cfg.batch_size} must divide into accum_steps={cfg.accum_steps} "
                         f"micro-batches over {mesh.devices.size} devices")
    num_classes = dataset.num_train_pids
    model_kwargs = dict(config.model.kwargs, num_classes=num_classes)
    model = create_model(config.model.name, **model_kwargs)
    per_epoch = steps_per_epoch(len(dataset.train), cfg.batch_size)
    if per_epoch < 1:
        raise ValueError(f"{len(dataset.train)} training images < one batch of {cfg.batch_size}")
    total_steps = per_epoch * cfg.epochs
    frozen_steps = per_epoch * cfg.frozen_epochs
    schedule = step_decay_schedule(cfg.lr, per_epoch, decay_every_epochs=cfg.lr_decay_every, gamma=cfg.lr_gamma)
    frozen_groups = tuple(cfg.frozen_groups) if frozen_steps else ()
    abstract_params = abstract_variables(model)["params"]
    tx = make_optimizer(cfg.optimizer, schedule, weight_decay=cfg.weight_decay,
                        frozen_mask=frozen_param_mask(abstract_params, frozen_groups) if frozen_groups else None,
                        frozen_steps=frozen_steps, b1=cfg.b1, b2=cfg.b2)

    manager = checkpoint.make_manager(workdir, keep_last=cfg.keep_checkpoints)
    meta = {"arch": config.model.name, "model_kwargs": json.loads(json.dumps(model_kwargs, default=list))}
    abstract_state = jax.eval_shape(lambda: TrainState.create(abstract_variables(model), tx))
    restored = checkpoint.restore_latest(manager, abstract_state, meta)
    if restored is None:
        state = TrainState.create(initial_variables(config, model), tx)
    else:
        state = restored[0]
        print(f"resumed from step {int(state.step)} in {manager.directory}")
    state = jax.device_put(state, replicated(mesh))
    _write_json(workdir / "config.json", config.to_dict())

    step_kw = dict(label_smoothing=cfg.label_smoothing, diversity_weight=cfg.diversity_weight,
                   accum_steps=cfg.accum_steps)
    open_step = make_train_step(model, tx, schedule, mesh, **step_kw)
    frozen_step = make_train_step(model, tx, schedule, mesh, frozen=frozen_groups, **step_kw)
    augmentation = Augment(**config.input.augment.to_dict())
    writer = MetricWriter(workdir)
    step = int(state.step)
    final: dict[str, float] = {}
    pending: list[tuple[int, Any]] = []
    start_time, start_step = time.perf_counter(), step
    try:
        while step < total_steps:
            epoch, in_epoch = divmod(step, per_epoch)
            batches = train_dataset(dataset.train, global_batch=cfg.batch_size,
                                    image_size=tuple(config.input.image_size), seed=config.seed, epoch=epoch,
                                    start_step=in_epoch, augmentation=augmentation,
                                    process_index=jax.process_index(), process_count=jax.process_count())
            for batch in batches.as_numpy_iterator():
                fn = frozen_step if step < frozen_steps else open_step
                state, metrics = fn(state, host_batch_to_global(batch, mesh))
                step += 1
                pending.append((step, metrics))
                mid_epoch = step % per_epoch != 0  # epoch ends are saved below, with metrics
                save_now = bool(cfg.checkpoint_every_steps) and step % cfg.checkpoint_every_steps == 0
                # Flush (which checks the loss is finite) before any save: no NaN state is saved.
                if step % cfg.log_every == 0 or not mid_epoch or save_now:
                    _flush(pending, writer, step, total_steps, start_time, start_step, cfg.batch_size)
                if save_now and mid_epoch:
                    checkpoint.save(manager, state, dict(meta, step=step))
            epoch_done = step // per_epoch
            if epoch_done % cfg.eval_every_epochs == 0 or step == total_steps:
                final = evaluate_model(config, model, state.variables, dataset, mesh)
                writer.write(step, {f"eval/{k}": v for k, v in final.items()})
                print(f"epoch {epoch_done}: " + "  ".join(f"{k} {100 * v:.1f}" for k, v in final.items()))
                checkpoint.save(manager, state, dict(meta, step=step), metrics=final)
            elif epoch_done % cfg.checkpoint_every_epochs == 0:
                checkpoint.save(manager, state, dict(meta, step=step))
        if not final:  # resumed a finished run: evaluate its final state once more
            final = evaluate_model(config, model, state.variables, dataset, mesh)
    finally:
        writer.close()
    _write_json(workdir / "final_metrics.json", final)
    return final


def _flush(pending, writer, step, total_steps, start_time, start_step, batch_size) -> None:
    """Fetch the metrics of the last steps, stop on a non-finite loss, print progress."""
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
        if not math.isfinite(float(m["loss"])):
            raise NonFiniteLoss(f"non-finite loss {float(m['loss'])} at step {s}; the last good "
                                "checkpoint is kept, nothing newer was written")
    steps = [s for s, _ in pending]
    mean = {k: float(np.mean([m[k] for m in host])) for k in host[-1]}
    pending.clear()
    writer.write(step, {f"train/{k}": v for k, v in mean.items()})
    elapsed = time.perf_counter() - start_time
    done = step - start_step
    rate = done * batch_size / max(elapsed, 1e-9)
    eta = (total_steps - step) * batch_size / max(rate, 1e-9)
    print(f"[{step:>6}/{total_steps}] loss {mean['loss']:.4f} ce {mean.get('ce', float('nan')):.4f} "
          f"div {mean.get('diversity', float('nan')):.3f} acc {100 * mean.get('accuracy', 0):5.1f} "
          f"lr {mean['lr']:.2e} | {rate:6.1f} img/s | ETA {eta / 60:5.1f} min  (steps {steps[0]}-{steps[-1]})",
          flush=True)
