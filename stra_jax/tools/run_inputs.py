"""What a trained model expects as input, read from its run: the tools that feed
a model themselves (``export``, ``visualize_modes``) ask here instead of
guessing from the network.

The run's config is the workdir's ``config.json`` or, for a bare model
directory, the config that training recorded in ``model.json``
(``info.config``). Its ``task`` names the :class:`stra_jax.tasks.Task` whose
``preprocessing`` / ``eval_images`` are the evaluation's own; a model with no
recorded run (e.g. converted PyTorch weights) uses the task its family declares
(``TASK`` class attribute of the model contract), else ``--task`` / "reid".
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import ml_collections

from stra_jax.training.checkpoint import COMPUTATION_ONLY

REID_IMAGE_SIZE = (256, 128)  # the ReID evaluator's default (evaluation/reid_retrieval.py)


def run_config(model_dir: Path, workdir: Path | None) -> tuple[dict[str, Any], str]:
    """``(the run's config as a dict, where it was read)``; ``({}, "")`` when none was recorded."""
    from stra_jax.models.io import read_model_spec

    if workdir is not None and (workdir / "config.json").is_file():
        return json.loads((workdir / "config.json").read_text()), f"{workdir / 'config.json'}"
    recorded = read_model_spec(model_dir).get("info", {}).get("config")
    if isinstance(recorded, dict):
        return recorded, f"{model_dir / 'model.json'} (info.config)"
    return {}, ""


def input_settings(model: Any, model_dir: Path, workdir: Path | None, image_size: tuple[int, int] | None,
                   task: str | None = None) -> tuple[tuple[int, int], str, str]:
    """``(image size (H, W), task name, where the size came from)`` for ``model``.

    The task: the run's ``config.task``, else ``task`` (a tool's ``--task``),
    else the one the model's family declares, else "reid". The size:
    ``image_size`` (``--image-size``), else the run's ``input.image_size``, else
    the model's ``input_size``, else the ReID evaluator's default 256x128.
    """
    config, source = run_config(model_dir, workdir)
    name = config.get("task") or task or getattr(type(model), "TASK", None) or "reid"
    if image_size is not None:
        return image_size, name, "--image-size"
    size = (config.get("input") or {}).get("image_size")
    if size:
        return (int(size[0]), int(size[1])), name, f"input.image_size of {source}"
    if getattr(model, "input_size", None):
        return tuple(int(v) for v in model.input_size), name, "the model's input_size"
    return REID_IMAGE_SIZE, name, "the ReID default"


def task_and_config(model_dir: Path, workdir: Path | None, task: str) -> tuple[type, ml_collections.ConfigDict]:
    """The :class:`Task` class named ``task`` and the run's config (empty when
    none was recorded), for its ``preprocessing`` and ``eval_images``."""
    from stra_jax.tasks import get_task

    config, _ = run_config(model_dir, workdir)
    return get_task(task), ml_collections.ConfigDict(config)


# What decides an evaluation's numbers: a given --config must agree with the run on these,
EVAL_KEYS = ("task", "model", "input.image_size", "dataset", "evals")
# except the settings of how, not what, is computed (a run trained with its classifier split
# over 8 devices evaluates on one; another evaluation batch size gives the same features).
HOW_NOT_WHAT = ("model.shard_classifier", "evals.*.batch_size",
                *(f"model.kwargs.{k}" for k in COMPUTATION_ONLY))


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def config_differences(given: dict[str, Any], recorded: dict[str, Any],
                       keys: tuple[str, ...] = EVAL_KEYS) -> list[str]:
    """``"key: given vs recorded"`` for each leaf under ``keys`` (dotted) where
    two configs (as dicts) differ. A leaf the recorded config lacks is not
    compared: the run was written by a version without that option (which
    behaved as its default does now); a leaf only the recorded one has differs."""
    def pick(config: dict[str, Any]) -> dict[str, Any]:
        flat = _flat(config, "")
        return {k: v for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in keys)
                and not any(fnmatch.fnmatchcase(k, pattern) for pattern in HOW_NOT_WHAT)}

    mine, theirs = pick(given), pick(recorded)
    missing = object()
    return [f"{k}: {mine.get(k, '(absent)')!r} vs {theirs[k]!r}"
            for k in sorted(theirs) if mine.get(k, missing) != theirs[k]]
