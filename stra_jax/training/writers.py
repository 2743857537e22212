"""Scalars to a JSONL log and TensorBoard event files in the workdir."""
from __future__ import annotations

import json
from pathlib import Path

import jax


class MetricWriter:
    """``write(step, {name: value})`` appends one JSON line to ``metrics.jsonl``
    and writes TensorBoard scalars under ``tensorboard/``. Only process 0 writes."""

    def __init__(self, workdir: str | Path) -> None:
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        import tensorflow as tf

        workdir = Path(workdir)
        self._jsonl = open(workdir / "metrics.jsonl", "a")
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
