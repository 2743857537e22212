"""The training loop's throughput against its jitted step's alone, per task.

For each task's demo config (evaluation off), in one process:

1. ``step``: the jitted train step alone, repeated on one batch already on the
   devices (``training/step.py``, the loop's own builder), img/s;
2. ``loop``: the real loop (``train_and_evaluate``) for ``--epochs`` epochs:
   input pipeline, device prefetch, step, metric fetches, per-epoch checkpoints
   and model directories. "window img/s" is the median of its progress windows
   (``train/img_per_s`` in metrics.jsonl: compilation and checkpoints left
   out); "loop img/s" is every image over the loop's whole training time
   (waits for input and per-epoch checkpoints included, compilation not), from
   the loop's own summary (``training/progress.py``);
3. ``step`` again, so that machine drift hits both sides; the table shows their mean;
4. ``input``: the task's input pipeline alone over the same epochs, its CPU time
   per image (all threads, ``time.process_time``).

"loop / step" (loop img/s over step img/s) is the share of the step's throughput the loop keeps; "input" the
time the loop waited for a batch, "checkpoint" the time its saves blocked it, both as a
share of the loop's training time. On a host whose cores the step already uses
(a CPU-only machine), the input pipeline's CPU work is done on the same cores:
"CPU bound img/s" = 1 / (1 / step img/s + input CPU per image / cores) is the
most any loop can reach there, and "loop / bound" the share of it this loop
keeps. On a GPU or TPU host the step does not use the host's cores, and the
bound is the step.

    python benchmarks/loop_overhead.py                        # reid and face demos, 2 epochs
    python benchmarks/loop_overhead.py --tasks face --epochs 3
    python benchmarks/loop_overhead.py --quick                # smoke configs, seconds
    python benchmarks/loop_overhead.py --tasks reid --epochs 10 --checkpoint-every-epochs 1   # a save per epoch
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.network_step import cpu_line  # noqa: E402

CONFIGS = {"reid": "configs/reid_synthetic.py", "face": "configs/face_synthetic.py"}


def _config(task: str, quick: bool, epochs: int, checkpoint_every_epochs: int | None):
    from stra_jax.tools.cli import load_config

    config = load_config(os.path.join(REPO, CONFIGS[task]) + (":smoke" if quick else ""))
    config.evals = {}
    config.train.update(epochs=epochs, frozen_epochs=0)
    if checkpoint_every_epochs:
        config.train.checkpoint_every_epochs = checkpoint_every_epochs
    if quick:
        config.train.log_every = 1
    return config


def step_only(config, workdir: str, steps: int) -> float:
    """img/s of the jitted step alone on one device-resident batch."""
    from stra_jax.models import create_model, init_variables
    from stra_jax.sharding import host_batch_to_global, make_mesh
    from stra_jax.tasks import make_task
    from stra_jax.training.optim import optimizer_from_config
    from stra_jax.training.schedules import make_schedule
    from stra_jax.training.state import TrainState
    from stra_jax.training.step import make_train_step

    cfg = config.train
    with contextlib.redirect_stdout(io.StringIO()):
        task = make_task(config, os.path.join(workdir, "step"))
        task.load()
    mesh = make_mesh()
    model = create_model(config.model.name, **dict(config.model.kwargs, **task.model_overrides()))
    per_epoch = task.steps_per_epoch(cfg.batch_size)
    schedule = make_schedule(cfg.schedule, base_lr=cfg.lr, steps_per_epoch=per_epoch,
                             total_steps=per_epoch * cfg.epochs)
    tx = optimizer_from_config(cfg, schedule, frozen_steps=0, frozen_mask=None)
    with jax.set_mesh(mesh):
        state = TrainState.create(init_variables(model, jax.random.key(0)), tx)
        step = make_train_step(model, tx, schedule, mesh, task.loss, accum_steps=cfg.accum_steps,
                               group_size=task.sampler.group_size, seed=config.seed)
        batch = next(iter(task.train_batches(epoch=0, start_step=0, global_batch=cfg.batch_size,
                                             process_index=0, process_count=1)))
        batch = host_batch_to_global(batch, mesh)
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
        return steps * cfg.batch_size / (time.perf_counter() - start)


def input_cpu_per_image(config, workdir: str) -> float:
    """CPU seconds (all threads) per image of the task's input pipeline alone,
    over the loop's epochs, read as the loop reads them (``loop.run_batches``)."""
    from stra_jax.tasks import make_task
    from stra_jax.training.loop import run_batches

    cfg = config.train
    with contextlib.redirect_stdout(io.StringIO()):
        task = make_task(config, os.path.join(workdir, "input"))
        task.load()
    per_epoch = task.steps_per_epoch(cfg.batch_size)
    start, images = time.process_time(), 0
    for batch in run_batches(task, cfg.batch_size, 0, per_epoch, per_epoch * cfg.epochs):
        images += len(batch["labels"])
    return (time.process_time() - start) / images


def loop(config, workdir: str) -> tuple[float, dict[str, float], int]:
    """(median window img/s, the loop's time split in s, steps)."""
    from stra_jax.training.loop import train_and_evaluate

    out = os.path.join(workdir, "loop")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train_and_evaluate(config, out)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [r["train/img_per_s"] for r in map(json.loads, f) if "train/img_per_s" in r]
    summary = [ln for ln in printed.getvalue().splitlines() if ln.startswith("loop time over")][-1]
    split = {name: float(sec) for name, sec in re.findall(r"(compilation|step|input|checkpoint|evaluation) "
                                                          r"([0-9.]+) s", summary)}
    steps = int(re.search(r"over (\d+) steps", summary).group(1))
    return float(np.median(rates)), split, steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reid", "face"], choices=sorted(CONFIGS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="steps of each step-only measurement")
    parser.add_argument("--quick", action="store_true", help="the tasks' smoke configs (a check, not a figure)")
    parser.add_argument("--checkpoint-every-epochs", type=int, default=None,
                        help="override the config's train.checkpoint_every_epochs (default: the config's own)")
    args = parser.parse_args(argv)

    rows = []
    cores = os.cpu_count() or 1
    for task in args.tasks:
        config = _config(task, args.quick, args.epochs, args.checkpoint_every_epochs)
        with tempfile.TemporaryDirectory() as tmp:
            before = step_only(config, tmp, args.steps)
            rate, split, steps = loop(config, tmp)
            after = step_only(config, tmp, args.steps)
            cpu = input_cpu_per_image(config, tmp)
        rows.append((task, config.train.batch_size, (before + after) / 2, rate, split, steps, cpu,
                     config.train.checkpoint_every_epochs))

    print(f"# loop vs step, {cpu_line()}, {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}")
    header = (f"{'task':<6}{'batch':>6}{'steps':>7}{'ckpt every':>11}{'step img/s':>12}{'window img/s':>14}"
              f"{'loop img/s':>12}{'loop / step':>13}{'input':>8}{'checkpoint':>12}{'compilation s':>15}"
              f"{'input CPU ms/img':>18}{'CPU bound img/s':>17}{'loop / bound':>14}")
    print(header)
    print("-" * len(header))
    for task, batch, step_rate, window_rate, split, steps, cpu, every in rows:
        train_time = split.get("step", 0.0) + split.get("input", 0.0) + split.get("checkpoint", 0.0)
        loop_rate = steps * batch / max(train_time, 1e-9)
        share = {k: 100 * split.get(k, 0.0) / max(train_time, 1e-9) for k in ("input", "checkpoint")}
        bound = 1.0 / (1.0 / step_rate + cpu / cores)
        print(f"{task:<6}{batch:>6}{steps:>7}{every:>8} ep{step_rate:>12.1f}{window_rate:>14.1f}{loop_rate:>12.1f}"
              f"{loop_rate / step_rate:>13.2f}{share['input']:>7.1f}%{share['checkpoint']:>11.1f}%"
              f"{split.get('compilation', 0.0):>15.1f}{1000 * cpu:>18.2f}{bound:>17.1f}{loop_rate / bound:>14.2f}")


if __name__ == "__main__":
    main()
