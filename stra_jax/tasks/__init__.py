"""Task plug-ins for the trainer: ``config.task`` names one of these.

A task (``base.Task``) supplies its data, its loss and its evaluators; the
trainer and ``eval.py`` are the same for all. Add one as a new file plus a line
in ``_TASKS`` (or ``register_task`` from your own code).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from stra_jax.tasks.base import Task

# name -> Task subclass, or "module:Class" imported on first use.
_TASKS: dict[str, type[Task] | str] = {
    "reid": "stra_jax.tasks.reid:ReIDTask",
    "face": "stra_jax.tasks.face:FaceTask",
}


def register_task(name: str, task: type[Task] | str, *, overwrite: bool = False) -> None:
    """Make ``config.task = name`` select ``task``."""
    if name in _TASKS and not overwrite:
        raise ValueError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    _TASKS[name] = task


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    if name not in _TASKS:
        raise ValueError(f"config.task={name!r}: unknown task; known tasks: {list_tasks()}")
    task = _TASKS[name]
    if isinstance(task, str):
        module, attr = task.split(":")
        task = getattr(importlib.import_module(module), attr)
    return task


def make_task(config: Any, workdir: str | Path | None = None) -> Task:
    """The task ``config.task`` (default "reid") for this config and workdir."""
    return get_task(config.get("task", "reid"))(config, workdir)


__all__ = ["Task", "get_task", "list_tasks", "make_task", "register_task"]
