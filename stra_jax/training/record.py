"""A record of every run: ``WORKDIR/run.json``, what a result was made with.

One file per workdir, written by process 0 only (atomically, local or ``gs://``)::

    {"format": "stra-jax-run/1",
     "config": {...resolved config...}, "seed": 0, "task": "reid", "arch": "stra_resnet50",
     "sessions": [{"started": ISO UTC time, "versions": {"jax": "0.10.2", ..., "tensorflow": null},
                   "platform": "tpu", "device_kind": "TPU v4", "device_count": 8,
                   "local_device_count": 4, "process_count": 2, "host": "...",
                   "commit": "<git sha>[-dirty]" | null, "command": sys.argv}, ...],
     "final": {"metrics": {scalars}, "step": 800, "finished": ISO UTC time} | null}

:func:`start_record` appends one session per start or resume (a resumed run may
run on other devices or code), :func:`finish_record` sets ``final``;
:func:`read_record` also reads workdirs made before run.json existed (built from
``config.json`` + ``final_metrics.json``, ``"format": "legacy"``).
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import jax

from stra_jax.evaluation.evaluators import scalars
from stra_jax.utils import AnyPath, as_path, is_remote, read_json, write_json_atomic

RECORD_FILE = "run.json"
FORMAT = "stra-jax-run/1"
LEGACY_FORMAT = "legacy"
COMMIT_ENV = "STRA_JAX_COMMIT"  # set by a launcher that copies the code without its .git

# Record key -> distribution names to try (the first installed one wins: the
# CPU wheel of TensorFlow is "tensorflow-cpu").
PACKAGES: dict[str, tuple[str, ...]] = {
    "jax": ("jax",), "jaxlib": ("jaxlib",), "flax": ("flax",), "optax": ("optax",),
    "orbax-checkpoint": ("orbax-checkpoint",), "numpy": ("numpy",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "tensorflow-datasets": ("tensorflow-datasets", "tfds-nightly"), "ml-collections": ("ml-collections",),
    "stra_jax": ("stra-jax",),
}


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Python and the packages a result depends on -> version (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, names in PACKAGES.items():
        versions[key] = None
        for name in names:
            try:
                versions[key] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    if versions["stra_jax"] is None:  # a repository checkout, not pip-installed
        import stra_jax

        versions["stra_jax"] = getattr(stra_jax, "__version__", None)
    return versions


def _git(source: Path, *args: str) -> str | None:
    """``git -C source ARGS`` stdout, or None when git is missing or fails."""
    try:
        proc = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"))  # never take the index lock
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def code_commit(source: AnyPath | None = None) -> str | None:
    """The git commit of the code: ``$STRA_JAX_COMMIT`` if set, else ``git rev-parse
    HEAD`` of the checkout holding ``source`` (default: the stra_jax package), with
    ``-dirty`` when a tracked file has changes; None when ``source`` is not
    tracked by git (e.g. pip-installed) or git is missing."""
    override = os.environ.get(COMMIT_ENV)
    if override:
        return override
    source = Path(source) if source is not None else Path(__file__).resolve().parents[1]
    # Only a checkout that tracks the code counts (not, say, a repository around a virtualenv).
    if not _git(source, "ls-files", "--", "."):
        return None
    head = _git(source, "rev-parse", "HEAD")
    if not head:
        return None
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    return head.strip() + ("-dirty" if status and status.strip() else "")


def session_info(mesh: Any = None) -> dict[str, Any]:
    """This start of the run: time, versions, the devices it runs on (``mesh``'s,
    else all; ``device_count`` over all processes, ``local_device_count`` this
    process's), host, commit and command line."""
    devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    return {
        "started": utc_now(), "versions": package_versions(), "platform": jax.default_backend(),
        "device_kind": devices[0].device_kind, "device_count": len(devices),
        "local_device_count": sum(d.process_index == jax.process_index() for d in devices),
        "process_count": jax.process_count(),
        "host": socket.gethostname(), "commit": code_commit(), "command": list(sys.argv),
    }


def _load(path: Any) -> Any:
    return read_json(path, "fix or remove the file")


def _config_dict(config: Any) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def start_record(workdir: AnyPath, config: Any, mesh: Any = None) -> None:
    """Create or update ``WORKDIR/run.json`` at the start (or resume) of a run:
    the resolved config and one more session. Process 0 only; the others return."""
    if jax.process_index() != 0:
        return
    path = as_path(workdir) / RECORD_FILE
    cfg = _config_dict(config)
    record = read_record(workdir) if path.exists() else {"sessions": [], "final": None}
    record.update({"format": FORMAT, "config": cfg, "seed": cfg.get("seed"), "task": cfg.get("task"),
                   "arch": (cfg.get("model") or {}).get("name")})
    record["sessions"] = list(record.get("sessions") or []) + [session_info(mesh)]
    record.setdefault("final", None)  # a resumed finished run keeps its result until it finishes again
    write_json_atomic(path, record)


def finish_record(workdir: AnyPath, final_metrics: Mapping[str, Any], step: int) -> None:
    """Set ``final`` of ``WORKDIR/run.json``: the scalar final metrics, the step and
    the time. Process 0 only. A workdir without run.json gets one (no sessions)."""
    if jax.process_index() != 0:
        return
    path = as_path(workdir) / RECORD_FILE
    record = read_record(workdir) if path.exists() else {"format": FORMAT, "sessions": []}
    metrics = {k: (None if math.isnan(v) else v) for k, v in scalars(final_metrics).items()}
    record["final"] = {"metrics": metrics, "step": int(step), "finished": utc_now()}
    write_json_atomic(path, record)


def _last_step(path: Any) -> int | None:
    """The step of the last line of a metrics.jsonl (None if absent or unreadable)."""
    if not path.exists():
        return None
    for line in reversed(path.read_text().splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def read_record(workdir: AnyPath) -> dict[str, Any]:
    """``WORKDIR/run.json``; for a workdir made before it existed, what
    ``config.json`` + ``final_metrics.json`` (+ the last step of metrics.jsonl)
    tell, with ``"format": "legacy"`` and no sessions. ValueError naming the file
    for corrupt JSON or a folder that is not a run."""
    workdir = as_path(workdir)
    path = workdir / RECORD_FILE
    if path.exists():
        record = _load(path)
        if not isinstance(record, dict) or not str(record.get("format", "")).startswith("stra-jax-run/"):
            raise ValueError(f"{path}: not a run record (expected a JSON object with \"format\": \"{FORMAT}\")")
        return record
    config_path = workdir / "config.json"
    if not config_path.exists():
        if not workdir.exists():
            raise ValueError(f"{workdir}: no such directory")
        raise ValueError(f"{workdir}: not a run (no {RECORD_FILE} or config.json)")
    cfg = _load(config_path)
    if not isinstance(cfg, dict):
        raise ValueError(f"{config_path}: expected a JSON object (the resolved config)")
    final = None
    final_path = workdir / "final_metrics.json"
    if final_path.exists():
        metrics = _load(final_path)
        if not isinstance(metrics, dict):
            raise ValueError(f"{final_path}: expected a JSON object of metrics")
        finished = None
        if not is_remote(final_path):  # the file's time; a bucket's would cost a stat call per run
            finished = datetime.datetime.fromtimestamp(os.path.getmtime(final_path), datetime.timezone.utc)
            finished = finished.isoformat(timespec="seconds")
        final = {"metrics": scalars(metrics), "step": _last_step(workdir / "metrics.jsonl"),
                 "finished": finished}
    return {"format": LEGACY_FORMAT, "config": cfg, "seed": cfg.get("seed"), "task": cfg.get("task"),
            "arch": (cfg.get("model") or {}).get("name"), "sessions": [], "final": final}
