"""Scalars to a JSONL log and TensorBoard event files in the workdir."""
from __future__ import annotations

import json
from pathlib import Path

import jax

from stra_jax.utils import as_path, atomic_file


def truncate_log(path: Path, resume_step: int, drop_eval_at_resume: bool) -> None:
    """Drop the rows a resumed run will write again: every row after
    ``resume_step`` (written after the checkpoint it resumes from) and, when that
    step's evaluation is still pending, its ``eval/`` row. Rewritten atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        step = row.get("step", 0)
        is_eval = any(k.startswith("eval/") for k in row)
        if step < resume_step or (step == resume_step and not (drop_eval_at_resume and is_eval)):
            kept.append(line + "\n")
    with atomic_file(path) as f:
        f.write("".join(kept))


class MetricWriter:
    """``write(step, {name: value})`` appends one JSON line to ``metrics.jsonl``
    and writes TensorBoard scalars under ``tensorboard/``. Only process 0 writes.

    ``resume_step``: the step training continues from; rows the interrupted run
    wrote past it are dropped first, so a resumed log has no duplicates.
    """

    def __init__(self, workdir: str | Path, resume_step: int = 0, drop_eval_at_resume: bool = False) -> None:
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        import tensorflow as tf

        workdir = as_path(workdir)
        truncate_log(workdir / "metrics.jsonl", resume_step, drop_eval_at_resume)
        self._jsonl = (workdir / "metrics.jsonl").open("a")
        self._tf = tf
        self._tb = tf.summary.create_file_writer(str(workdir / "tensorboard"))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")
        self._jsonl.flush()
        with self._tb.as_default():
            for name, value in scalars.items():
                self._tf.summary.scalar(name, float(value), step=int(step))
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
