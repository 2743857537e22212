"""Run every (config variant, seed) of an experiment and tabulate mean +- std (paper Table 3).

    python -m stra_jax.tools.sweep --config configs/reid_synthetic.py \\
        --variants baseline,local_only,no_interaction,paper --seeds 0,1,2 --workdir runs/table3
    python -m stra_jax.tools.sweep ... --print-commands        # one line per run, for a cluster scheduler
    python -m stra_jax.tools.sweep ... --collect-only          # only the table of what has finished

Each run is ``python train.py --config CONFIG:VARIANT --workdir WORKDIR/VARIANT/seedS
--config.seed=S`` (plus ``--set KEY=VALUE`` overrides, passed as ``--config.KEY=VALUE``),
its output in ``WORKDIR/logs/VARIANT-seedS.log``. Rerunning the same command skips
finished runs (``final_metrics.json`` present) and resumes interrupted ones (train.py
resumes from the run's checkpoints); a failed run is reported with its log and the
sweep goes on with the others (exit status 1 at the end). Variants combine with
``+`` (``authors+k5`` is ``CONFIG:authors,k5``). Results: ``WORKDIR/sweep.md`` (a
markdown table, mean +- sample std over the seeds that finished),
``WORKDIR/sweep.json`` (every seed's values) and ``WORKDIR/sweep.png`` (bars).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from stra_jax.tools.cli import check_overrides, fail, load_config
from stra_jax.tools.runs_table import format_mean_std, mean_std, metric_value
from stra_jax.utils import atomic_file, read_json, save_figure, write_json_atomic

STATUS_FILE = "sweep_status.json"


@dataclasses.dataclass(frozen=True)
class Run:
    """One (variant, seed) of a sweep and where it lives."""

    variant: str
    seed: int
    workdir: Path
    log: Path

    @property
    def name(self) -> str:
        return f"{self.variant}/seed{self.seed}"

    @property
    def finished(self) -> bool:
        return (self.workdir / "final_metrics.json").is_file()

    @property
    def started(self) -> bool:
        return (self.workdir / "checkpoints").is_dir()


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        fail(f"--{what} {text!r}: expected a comma-separated list")
    if len(set(items)) != len(items):
        fail(f"--{what} {text!r}: an entry is repeated")
    return items


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for item in parse_list(text, "seeds"):
        try:
            seeds.append(int(item))
        except ValueError:
            fail(f"--seeds {text!r}: {item!r} is not an integer; expected e.g. 0,1,2")
    return seeds


def config_arg(variant: str) -> str:
    """A sweep variant -> the config's ``:variant`` argument (``a+b`` -> ``a,b``)."""
    return variant.replace("+", ",")


def check_variants(config_path: str, variants: Sequence[str], overrides: Sequence[str]) -> None:
    """Every variant loads (an unknown one fails listing the known ones) and every
    override names a key of it, before any run starts."""
    for variant in variants:
        config = load_config(f"{config_path}:{config_arg(variant)}")
        check_overrides([f"--config.{o}" for o in overrides], config)


def plan(workdir: Path, variants: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Seed-major order: a sweep cut short has every variant with the same seeds."""
    return [Run(v, s, workdir / v / f"seed{s}", workdir / "logs" / f"{v}-seed{s}.log")
            for s in seeds for v in variants]


TRAIN_MODULE = "stra_jax.tools.train"  # what train.py runs


def train_command(run: Run, config_path: str, overrides: Sequence[str], train_script: str,
                  python: str = sys.executable) -> list[str]:
    """The command line that trains (or resumes) one run (``train_script``: a file,
    or ``-m MODULE``)."""
    script = train_script.split() if train_script.startswith("-m ") else [train_script]
    return [python, *script, "--config", f"{config_path}:{config_arg(run.variant)}",
            "--workdir", str(run.workdir), f"--config.seed={run.seed}",
            *[f"--config.{o}" for o in overrides]]


class Sweep:
    """Runs the pending runs one after the other (or ``jobs`` at a time), keeps
    ``sweep_status.json`` current, and forwards SIGINT/SIGTERM to the runs, which
    checkpoint and stop; the next invocation resumes them."""

    def __init__(self, workdir: Path, jobs: int = 1):
        self.workdir, self.jobs = workdir, jobs
        self.status_path = workdir / STATUS_FILE
        self.status = json.loads(self.status_path.read_text()) if self.status_path.is_file() else {}
        self.children: list[subprocess.Popen] = []
        self.stopped: int | None = None

    def _record(self, run: Run, state: str, rc: int | None = None) -> None:
        self.status[run.name] = dict(state=state, returncode=rc, log=str(run.log), time=time.time())
        write_json_atomic(self.status_path, self.status)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 (signal handler signature)
        self.stopped = signum
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def execute(self, runs: Sequence[tuple[Run, list[str]]]) -> list[Run]:
        """Run each (run, command); returns the runs that failed."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        failed, queue = [], list(runs)
        try:
            running: list[tuple[Run, subprocess.Popen, object]] = []
            while queue or running:
                while queue and len(running) < self.jobs and self.stopped is None:
                    run, cmd = queue.pop(0)
                    run.log.parent.mkdir(parents=True, exist_ok=True)
                    log = open(run.log, "a")
                    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                              f"{'resume' if run.started else 'start'}: {shlex.join(cmd)}\n")
                    log.flush()
                    print(f"{'resume' if run.started else 'start '} {run.name}  (log: {run.log})", flush=True)
                    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                    self.children.append(child)
                    self._record(run, "running")
                    running.append((run, child, log))
                if self.stopped is not None:
                    queue = []
                time.sleep(0.2)
                for item in list(running):
                    run, child, log = item
                    rc = child.poll()
                    if rc is None:
                        continue
                    running.remove(item)
                    self.children.remove(child)
                    log.close()
                    if rc == 0 and run.finished:
                        self._record(run, "finished", rc)
                        print(f"done   {run.name}", flush=True)
                    elif self.stopped is not None:
                        self._record(run, "interrupted", rc)
                        print(f"stopped {run.name} (rerun the sweep to resume it)", flush=True)
                    else:
                        self._record(run, "failed", rc)
                        failed.append(run)
                        print(f"FAILED {run.name} (exit {rc}); log: {run.log}", flush=True)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return failed


def read_values(run: Run, metrics: Sequence[str]) -> dict[str, float]:
    """``<evaluator>/<metric>`` of a finished run's final_metrics.json, in percent."""
    path = run.workdir / "final_metrics.json"
    data = read_json(path)
    return {metric: 100.0 * metric_value(data, metric, path) for metric in metrics}


def collect(runs: Sequence[Run], metrics: Sequence[str], status: dict) -> dict:
    """Per variant: every seed's values, the finished/missing/failed runs and mean/std."""
    table: dict[str, dict] = {}
    for run in runs:
        row = table.setdefault(run.variant, dict(seeds={}, failed=[], missing=[]))
        if run.finished:
            row["seeds"][run.seed] = read_values(run, metrics)
        elif status.get(run.name, {}).get("state") == "failed":
            row["failed"].append(dict(seed=run.seed, log=str(run.log)))
        else:
            row["missing"].append(run.seed)
    for row in table.values():
        row["summary"] = {m: mean_std([v[m] for v in row["seeds"].values()]) for m in metrics} if row["seeds"] else {}
    return table


def format_table(table: dict, metrics: Sequence[str], seeds: Sequence[int]) -> str:
    """Table 3 style: one row per variant, mean +- std in percent, and what is missing."""
    header = "| variant | seeds done | " + " | ".join(metrics) + " | per seed | notes |"
    lines = [header, "|" + "---|" * (len(metrics) + 4)]
    for variant, row in table.items():
        done = sorted(row["seeds"])
        cells = []
        for m in metrics:
            if not done:
                cells.append("-")
                continue
            cells.append(format_mean_std(*row["summary"][m]))
        per_seed = "; ".join(f"s{s}: " + "/".join(f"{row['seeds'][s][m]:.1f}" for m in metrics) for s in done)
        notes = [f"FAILED seed {f['seed']} (log: {f['log']})" for f in row["failed"]]
        if row["missing"]:
            notes.append(f"not finished: seeds {row['missing']}")
        lines.append(f"| {variant} | {len(done)}/{len(seeds)} | " + " | ".join(cells)
                     + f" | {per_seed or '-'} | {'; '.join(notes) or ''} |")
    lines.append("")
    lines.append(f"Percent; mean +- sample std (ddof=1) over the finished seeds; per seed: {'/'.join(metrics)}.")
    return "\n".join(lines)


def plot_table(table: dict, metrics: Sequence[str], out: Path) -> Path:
    """One bar panel per metric: mean over seeds, std error bars, every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.2 + 1.3 * len(variants) * len(metrics), 3.6),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, v in enumerate(variants):
            row = table[v]
            if not row["seeds"]:
                ax.text(i, 0, "none", ha="center", va="bottom", fontsize=8, color="red")
                continue
            mean, std = row["summary"][m]
            ax.bar(i, mean, yerr=None if math.isnan(std) else std, capsize=4, color=f"C{i}", alpha=0.75)
            ys = [row["seeds"][s][m] for s in sorted(row["seeds"])]
            ax.scatter([i] * len(ys), ys, color="black", s=10, zorder=3)
            ax.text(i, mean / 2, f"{mean:.1f}", ha="center", va="center", fontsize=9, color="white",
                    fontweight="bold")  # inside the bar: clear of the error bar and the dots
        ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{m} (%)")
        ax.set_title(f"{m}: mean +- std, dots = seeds", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=120)


def write_results(workdir: Path, table: dict, metrics: Sequence[str], seeds: Sequence[int]) -> str:
    text = format_table(table, metrics, seeds)
    with atomic_file(workdir / "sweep.md") as f:
        f.write(text + "\n")
    write_json_atomic(workdir / "sweep.json", dict(metrics=list(metrics), variants=table))
    if any(row["seeds"] for row in table.values()):
        plot_table(table, metrics, workdir / "sweep.png")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stra_jax.tools.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/<exp>.py (its variants are swept)")
    p.add_argument("--variants", required=True, help="comma-separated config variants; a+b combines two")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (config.seed)")
    p.add_argument("--workdir", required=True, help="one sub-directory per run, plus the results")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (e.g. train.epochs=20); repeatable")
    p.add_argument("--metrics", default="mAP,rank1", help="final metrics to tabulate (last name component)")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    p.add_argument("--train-script", default=None,
                   help=f"default: train.py beside the stra_jax package, else -m {TRAIN_MODULE} (pip install)")
    p.add_argument("--print-commands", action="store_true", help="print the commands of unfinished runs and exit")
    p.add_argument("--collect-only", action="store_true", help="only tabulate what has finished")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config.count(":"):
        path, _, given = args.config.partition(":")
        combined = ",".join("+".join(given.split(",") + [v]) for v in (args.variants or "VARIANT").split(",")
                            if v and v not in given.split(","))
        fail(f"--config {args.config}: give the file only; the variants come from --variants. To apply "
             f"{given} to every variant, join them with +: --config {path} --variants {combined or given}")
    if not Path(args.config).is_file():
        fail(f"--config {args.config}: no such file (expected configs/<exp>.py)")
    if args.jobs < 1:
        fail(f"--jobs {args.jobs}: expected a positive integer")
    for o in args.set:
        if "=" not in o:
            fail(f"--set {o!r}: expected KEY=VALUE, e.g. train.epochs=20")
    variants, seeds = parse_list(args.variants, "variants"), parse_seeds(args.seeds)
    metrics = parse_list(args.metrics, "metrics")
    beside = Path(__file__).resolve().parents[2] / "train.py"  # a repository checkout
    train_script = args.train_script or (str(beside) if beside.is_file() else f"-m {TRAIN_MODULE}")
    if not train_script.startswith("-m ") and not Path(train_script).is_file():
        fail(f"--train-script {train_script}: no such file (expected the project's train.py)")
    check_variants(args.config, variants, args.set)
    workdir = Path(args.workdir)
    runs = plan(workdir, variants, seeds)
    pending = [r for r in runs if not r.finished]
    commands = [(r, train_command(r, args.config, args.set, train_script)) for r in pending]
    if args.print_commands:
        for run, cmd in commands:
            print(f"mkdir -p {shlex.quote(str(run.log.parent))} && {shlex.join(cmd)} >> {shlex.quote(str(run.log))} 2>&1")
        print(f"# {len(runs) - len(pending)} of {len(runs)} runs already finished", file=sys.stderr)
        return 0
    workdir.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(workdir, jobs=args.jobs)
    if not args.collect_only:
        skipped = len(runs) - len(pending)
        if skipped:
            print(f"{skipped} of {len(runs)} runs already finished (skipped)", flush=True)
        sweep.execute(commands)
    try:
        table = collect(runs, metrics, sweep.status)
    except ValueError as err:
        fail(str(err), status=1)
    print(write_results(workdir, table, metrics, seeds))
    print(f"wrote {workdir / 'sweep.md'}, {workdir / 'sweep.json'}"
          + (f", {workdir / 'sweep.png'}" if (workdir / "sweep.png").is_file() else ""))
    if sweep.stopped is not None:
        print("sweep interrupted; rerun the same command to resume", file=sys.stderr)
        return 128 + int(sweep.stopped)
    failed = [r for r in runs if sweep.status.get(r.name, {}).get("state") == "failed" and not r.finished]
    if failed:
        print("failed runs: " + ", ".join(f"{r.name} (log: {r.log})" for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
