"""One table of runs: their final metrics over seeds, with what each was made on.

    python -m stra_jax.tools.report runs/table3                    # a sweep: every WORKDIR/<variant>/seedN
    python -m stra_jax.tools.report runs/a runs/b --metrics reid/mAP,reid/rank1 --json report.json

Every WORKDIR is a run (it holds ``run.json`` or, for runs made before run.json
existed, ``config.json``) or a folder searched for runs. Runs whose configs are
equal except for ``seed`` (the flattened config dicts compared key by key)
form one row: label, finished runs, seeds, each metric as mean +- sample std
(ddof=1; percent for metrics that are fractions, as the sweep does), final
step, devices (``8x TPU v4``; ``mixed (...)`` when the sessions differ) and git
commit(s); runs without final metrics are listed as unfinished. The label is
the group's folder below the runs' common folder when that tells the groups
apart (a sweep's variants), else the config values that do. With more than one
group, a second table lists every config key whose value differs between
groups. Default metrics: each run's ``train.best_metric`` and its ``rank1``
sibling, else every scalar of its final metrics. Bad input (a missing path, a
folder without runs, corrupt JSON) prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from typing import Any, Iterator, Sequence

from etils import epath

from stra_jax.tools.cli import fail
from stra_jax.tools.runs_table import format_mean_std, mean_std, metric_value
from stra_jax.training.record import RECORD_FILE, read_record
from stra_jax.utils import as_path, write_json_atomic

MAX_DEPTH = 8  # how deep a folder is searched for runs (a sweep's runs sit 2 deep)
ABSENT = "(absent)"


@dataclasses.dataclass
class RunInfo:
    """One run: where it is (``name``: the path as the user wrote it) and its record."""

    name: str
    record: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.record.get("config") or {}

    @property
    def seed(self) -> Any:
        return self.record.get("seed", self.config.get("seed"))

    @property
    def final(self) -> dict[str, Any] | None:
        return self.record.get("final")


@dataclasses.dataclass
class Group:
    """Runs whose configs are equal except for the seed."""

    runs: list[RunInfo]
    label: str = ""

    @property
    def finished(self) -> list[RunInfo]:
        return [r for r in self.runs if r.final is not None]


def _is_run(folder: epath.Path) -> bool:
    return (folder / RECORD_FILE).exists() or (folder / "config.json").exists()


def _search(folder: epath.Path, name: str, depth: int = 0) -> Iterator[tuple[epath.Path, str]]:
    """Run folders under ``folder`` (not inside a run: its model dirs are not runs)."""
    if _is_run(folder):
        yield folder, name
        return
    if depth >= MAX_DEPTH:
        return
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if not child.name.startswith(".") and child.is_dir():
            yield from _search(child, f"{name.rstrip('/')}/{child.name}", depth + 1)


def find_runs(paths: Sequence[str]) -> list[RunInfo]:
    """Every run in or under ``paths`` with its record; ValueError for a missing
    path, one without runs or a corrupt file."""
    runs: list[RunInfo] = []
    for text in paths:
        path = as_path(text)
        if not path.exists():
            raise ValueError(f"{text}: no such file or directory")
        if not path.is_dir():
            raise ValueError(f"{text}: not a directory (expected a run's workdir or a folder of runs)")
        found = list(_search(path, text))
        if not found:
            raise ValueError(f"{text}: not a run ({RECORD_FILE} or config.json) and holds no runs")
        runs += [RunInfo(name, read_record(folder)) for folder, name in found]
    return runs


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; an empty dict stays a value."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def group_runs(runs: Sequence[RunInfo]) -> list[Group]:
    """Runs with equal flattened configs apart from ``seed``, in order of first appearance."""
    groups: dict[str, Group] = {}
    for run in runs:
        flat = {k: v for k, v in flatten(run.config).items() if k != "seed"}
        groups.setdefault(_canonical(flat), Group([])).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: (str(r.seed), r.name))
    return list(groups.values())


def differences(groups: Sequence[Group]) -> dict[str, list[Any]]:
    """Flattened config key -> its value in each group (``ABSENT`` where missing),
    for the keys that differ between groups."""
    flats = [{k: v for k, v in flatten(g.runs[0].config).items() if k != "seed"} for g in groups]
    keys = sorted(set().union(*flats))
    table = {k: [f.get(k, ABSENT) for f in flats] for k in keys}
    return {k: vals for k, vals in table.items() if len({_canonical(v) for v in vals}) > 1}


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.rstrip("/").split("/") for n in names]
    common = []
    for items in zip(*parts):
        if len(set(items)) > 1:
            break
        common.append(items[0])
    return "/".join(common)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def assign_labels(groups: Sequence[Group], diffs: dict[str, list[Any]]) -> None:
    """Each group's folder below the common folder of all runs when these differ,
    else the fewest differing config values (``key=value``) that tell groups apart."""
    prefixes = [_common_prefix([r.name for r in g.runs]) for g in groups]
    if len(groups) == 1:
        groups[0].label = prefixes[0] or groups[0].runs[0].name
        return
    root = _common_prefix([r.name for g in groups for r in g.runs])
    rel = [p[len(root):].strip("/") if p.startswith(root) else p for p in prefixes]
    if all(rel) and len(set(rel)) == len(rel):
        for group, label in zip(groups, rel):
            group.label = label
        return
    chosen: list[str] = []
    for key, values in diffs.items():  # greedy: a key joins when it separates groups still alike
        labels = [tuple(_canonical(diffs[k][i]) for k in chosen) for i in range(len(groups))]
        if len(set(labels)) == len(groups):
            break
        if len({(lab, _canonical(v)) for lab, v in zip(labels, values)}) > len(set(labels)):
            chosen.append(key)
    for i, group in enumerate(groups):
        group.label = ", ".join(f"{k}={_show(diffs[k][i])}" for k in chosen) or f"group {i + 1}"


def default_metrics(runs: Sequence[RunInfo]) -> list[str]:
    """Each finished run's ``train.best_metric`` and its ``rank1`` sibling when its
    final metrics hold them, else all its final scalars; in order of appearance."""
    metrics: list[str] = []
    for run in runs:
        if run.final is None:
            continue
        final = run.final.get("metrics") or {}
        best = (run.config.get("train") or {}).get("best_metric")
        if best and best in final:
            sibling = (best.rsplit("/", 1)[0] + "/" if "/" in best else "") + "rank1"
            chosen = [best] + ([sibling] if sibling in final and sibling != best else [])
        else:
            chosen = sorted(final)
        metrics += [m for m in chosen if m not in metrics]
    return metrics


def _value(run: RunInfo, metric: str) -> float | None:
    try:
        value = metric_value(run.final.get("metrics") or {}, metric, run.name)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _device_label(session: dict[str, Any]) -> str:
    return f"{session.get('device_count', '?')}x {session.get('device_kind', '?')}"


def _short_commit(commit: str | None) -> str:
    if commit is None:
        return "?"
    sha, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    return (sha[:10] if re.fullmatch(r"[0-9a-f]{40}", sha) else sha) + ("-dirty" if dirty else "")


def summarize(groups: Sequence[Group], metrics: Sequence[str]) -> dict[str, Any]:
    """Every group's runs, values and mean/std per metric, ready for the table and --json.
    A metric whose values are all within [0, 1] is shown in percent."""
    values = {m: [v for g in groups for r in g.finished if (v := _value(r, m)) is not None] for m in metrics}
    percent = {m: bool(values[m]) and all(0.0 <= v <= 1.0 for v in values[m]) for m in metrics}
    out_groups = []
    for group in groups:
        runs = []
        for run in group.runs:
            sessions = run.record.get("sessions") or []
            runs.append(dict(workdir=run.name, seed=run.seed, finished=run.final is not None,
                             step=(run.final or {}).get("step"), format=run.record.get("format"),
                             metrics={m: v for m in metrics if run.final is not None
                                      and (v := _value(run, m)) is not None},
                             devices=[_device_label(s) for s in sessions] or ["?"],
                             commits=[s.get("commit") for s in sessions]))
        summary = {}
        for m in metrics:
            scale = 100.0 if percent[m] else 1.0
            got = [scale * r["metrics"][m] for r in runs if m in r["metrics"]]
            mean, std = mean_std(got) if got else (math.nan, math.nan)
            summary[m] = dict(mean=None if math.isnan(mean) else mean, std=None if math.isnan(std) else std,
                              n=len(got))
        out_groups.append(dict(label=group.label, runs=runs, summary=summary))
    return dict(metrics=list(metrics), percent=percent, groups=out_groups)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _unique(items: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def format_report(summary: dict[str, Any], diffs: dict[str, list[Any]]) -> str:
    """The markdown table (one row per group) and, for several groups, the config differences."""
    metrics, percent = summary["metrics"], summary["percent"]
    heads = [f"{m} (%)" if percent[m] else m for m in metrics]
    lines = ["| run | runs | seeds | " + " | ".join(heads) + (" | " if heads else "")
             + "step | devices | commit | notes |", "|" + "---|" * (len(metrics) + 7)]
    for group in summary["groups"]:
        done = [r for r in group["runs"] if r["finished"]]
        cells = []
        for m in metrics:
            s = group["summary"][m]
            spec = ".1f" if percent[m] else ".4g"
            cells.append("-" if s["n"] == 0 else format_mean_std(s["mean"], math.nan if s["std"] is None
                                                                  else s["std"], spec))
        notes = [f"{m} in {group['summary'][m]['n']} of {len(done)} runs" for m in metrics
                 if 0 < group["summary"][m]["n"] < len(done)]
        notes += [f"unfinished: {r['workdir']}" for r in group["runs"] if not r["finished"]]
        legacy = sum(r["format"] == "legacy" for r in group["runs"])
        if legacy:
            notes.append(f"{legacy} of {len(group['runs'])} runs without {RECORD_FILE} (made before it existed)")
        devices = _unique([d for r in group["runs"] for d in r["devices"]])
        commits = _unique([_short_commit(c) for r in group["runs"] for c in r["commits"]])
        steps = _unique([r["step"] for r in done])
        row = [group["label"], len(done), ",".join(str(r["seed"]) for r in done) or "-", *cells,
               ", ".join("?" if s is None else str(s) for s in steps) or "-",
               devices[0] if len(devices) == 1 else f"mixed ({', '.join(devices)})",
               ", ".join(commits) or "?", "; ".join(notes)]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines += ["", "Mean +- sample std (ddof=1) over each row's finished runs"
              + ("; (%): percent." if any(percent.values()) else ".")]
    if len(summary["groups"]) > 1:
        labels = [g["label"] for g in summary["groups"]]
        lines += ["", "### configs differ in more than the seed", "",
                  "| key | " + " | ".join(_cell(lab) for lab in labels) + " |", "|" + "---|" * (len(labels) + 1)]
        lines += ["| " + " | ".join(_cell(c) for c in [key, *map(_show, vals)]) + " |" for key, vals in diffs.items()]
    return "\n".join(lines)


def report(paths: Sequence[str], metrics: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The markdown report of the runs in ``paths`` and its data (for --json)."""
    runs = find_runs(paths)
    groups = group_runs(runs)
    diffs = differences(groups)
    assign_labels(groups, diffs)
    metrics = list(metrics) if metrics else default_metrics(runs)
    finished = [r for r in runs if r.final is not None]
    for m in metrics:
        if finished and all(_value(r, m) is None for r in finished):
            known = sorted({k for r in finished for k in (r.final.get("metrics") or {})})
            raise ValueError(f"--metrics {m}: no finished run has it; their final metrics: {known}")
    summary = summarize(groups, metrics)
    summary["differences"] = diffs  # key -> value per group, ABSENT where a group lacks the key
    return format_report(summary, diffs), summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stra_jax.tools.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="a run's workdir, or a folder of runs")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated final metrics, e.g. reid/mAP,reid/rank1 (a bare name: its "
                             "one <evaluator>/name); default: each run's best metric and rank1")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the table's data to OUT")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics is not None else None
    if metrics is not None and not metrics:
        fail(f"--metrics {args.metrics!r}: expected a comma-separated list, e.g. reid/mAP,reid/rank1")
    try:
        text, data = report(args.workdirs, metrics)
    except (ValueError, OSError) as err:
        fail(str(err))
    print(text)
    if args.json:
        print(f"wrote {write_json_atomic(args.json, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
