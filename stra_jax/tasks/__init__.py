"""Task plug-ins for the trainer: ``config.task`` names one of these.

A task (``base.Task``) supplies its data, its loss and its evaluators; the
trainer and ``eval.py`` are the same for all. Add one as a new file plus one
lazy entry in ``TASKS`` below (or ``register_task`` / ``TASKS.register`` from
your own code).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stra_jax.registry import Registry
from stra_jax.tasks.base import Task

#: name -> Task subclass. Lazy "module:Class" entries: a task's module (and its
#: data and model imports) loads only when a config selects it.
TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("reid", "stra_jax.tasks.reid:ReIDTask")
TASKS.register("face", "stra_jax.tasks.face:FaceTask")
TASKS.register("classification", "stra_jax.tasks.classification:ClassificationTask")


def register_task(name: str, task: type[Task] | str, *, overwrite: bool = False) -> None:
    """Make ``config.task = name`` select ``task`` (a class or "module:Class")."""
    TASKS.register(name, task, overwrite=overwrite)


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return TASKS.names()


def get_task(name: str) -> type[Task]:
    """The task class ``config.task = name`` selects; an unknown name lists the known ones."""
    return TASKS.get(name, key="config.task")


def make_task(config: Any, workdir: str | Path | None = None) -> Task:
    """The task ``config.task`` (default "reid") for this config and workdir."""
    return get_task(config.get("task", "reid"))(config, workdir)


__all__ = ["TASKS", "Task", "get_task", "list_tasks", "make_task", "register_task"]
