"""Where the training loop's wall time goes, and the progress line built from it.

The jitted step runs asynchronously: the loop only waits for the device when it
fetches metrics (every ``train.log_every`` steps) or saves. So the loop times
what it does itself and takes the rest as step time:

* ``input``: waiting for the next batch (the host pipeline and the copy to the
  devices), what torchreid / fast-reid print as ``data`` time;
* ``checkpoint``: saving the state and writing the model directory;
* ``evaluation``: the evaluators;
* ``compilation``: the first call of each jitted step (the loop waits for its
  result once, so the compilation is measured apart and printed);
* ``step``: everything else in the training windows.

The progress line's img/s and ETA come from the last window (``log_every``
steps), not from the whole run, and leave out compilation, checkpoints and
evaluations, so the first line already shows the steady rate. ``summary()`` is printed at the end of a run and
``train/img_per_s`` / ``train/input_wait`` go to ``metrics.jsonl`` with each
line, which ``benchmarks/loop_overhead.py`` reads.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np

PHASES = ("compilation", "step", "input", "checkpoint", "evaluation")


class NonFiniteLoss(RuntimeError):
    pass


class LoopClock:
    """Wall-time bookkeeping of one training session (one start or resume).

    ``now`` is the clock (seconds); tests pass a synthetic one.
    """

    def __init__(self, batch_size: int, total_steps: int, start_step: int,
                 now: Callable[[], float] = time.perf_counter) -> None:
        self.batch_size, self.total_steps = batch_size, total_steps
        self.now = now
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.window_start = now()
        self.window_steps = 0
        self.window_excluded = 0.0  # compilation / checkpoint / evaluation time inside the window
        self.window_input = 0.0
        self.last = 0.0  # the duration of the last phase() block
        self.steps = 0
        self.start_step = start_step

    def batches(self, iterator: Iterable[Any]) -> Iterator[Any]:
        """``iterator``'s items, timing the wait for each as ``input``."""
        it = iter(iterator)
        while True:
            start = self.now()
            try:
                item = next(it)
            except StopIteration:
                return
            self.window_input += self.now() - start
            yield item

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a block of the loop as ``compilation``, ``checkpoint`` or
        ``evaluation`` (``PHASES``); it does not count towards the window's
        throughput. Its duration is ``last`` afterwards."""
        if name not in PHASES[:1] + PHASES[3:]:
            raise ValueError(f"loop phase {name!r}: expected one of compilation, checkpoint, evaluation")
        start = self.now()
        try:
            yield
        finally:
            self.last = self.now() - start
            self.totals[name] += self.last
            self.window_excluded += self.last

    def stepped(self) -> None:
        self.window_steps += 1
        self.steps += 1

    def close_window(self) -> tuple[float, float]:
        """End the current window (the loop has just fetched its metrics): returns
        (img/s over the window's training time, fraction of it spent waiting for
        input)."""
        now = self.now()
        train_time = max(now - self.window_start - self.window_excluded, 1e-9)
        self.totals["step"] += train_time - self.window_input
        self.totals["input"] += self.window_input
        rate = self.window_steps * self.batch_size / train_time
        wait = self.window_input / train_time
        self.window_start, self.window_steps, self.window_excluded, self.window_input = now, 0, 0.0, 0.0
        return rate, wait

    def summary(self) -> str:
        """One line: the session's wall time by phase."""
        t = self.totals
        steady = t["step"] + t["input"]
        parts = ", ".join(f"{name} {t[name]:.1f} s" for name in PHASES if t[name] > 0)
        line = f"loop time over {self.steps} steps: {parts}"
        if steady > 0:
            line += f"; input wait {100 * t['input'] / steady:.1f}% of the steady-state training time"
        return line


def flush_metrics(pending: list[tuple[int, Any]], writer: Any, step: int, clock: LoopClock,
                  progress: tuple[str, ...] = ("loss",)) -> None:
    """Fetch the metrics of the last steps, stop on a non-finite loss, log them
    with the window's throughput and print the progress line."""
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
        if not math.isfinite(float(m["loss"])):
            raise NonFiniteLoss(f"non-finite loss {float(m['loss'])} at step {s}; the last good "
                                "checkpoint is kept, nothing newer was written")
    steps = [s for s, _ in pending]
    mean = {k: float(np.mean([m[k] for m in host])) for k in host[-1]}
    pending.clear()
    rate, wait = clock.close_window()
    if writer is not None:
        writer.write(step, {**{f"train/{k}": v for k, v in mean.items()},
                            "train/img_per_s": rate, "train/input_wait": wait})
    eta = (clock.total_steps - step) * clock.batch_size / max(rate, 1e-9)
    shown = " ".join(f"{k} {100 * mean[k]:5.1f}" if k == "accuracy" else f"{k} {mean[k]:.4f}"
                     for k in progress if k in mean)
    print(f"[{step:>6}/{clock.total_steps}] {shown} lr {mean['lr']:.2e} | {rate:6.1f} img/s "
          f"(input {100 * wait:3.0f}%) | ETA {eta / 60:5.1f} min  (steps {steps[0]}-{steps[-1]})", flush=True)
