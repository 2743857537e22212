"""What a task supplies to the trainer and to ``eval.py``.

The trainer (``training/loop.py``) is the same for every task; a task says how
to read its data, its loss and its evaluators:

* ``load()`` reads (or generates) the data once and returns a summary to print;
* ``num_classes`` / ``num_train_examples`` size the classifier and the epoch;
* ``train_batches(...)`` yields this host's slice of each global batch, a dict
  of NumPy arrays (``images`` (b, H, W, 3) plus whatever the loss reads),
  deterministic in (seed, epoch, step) so that a resumed run is exact;
* ``loss(outputs, batch, collections)`` -> ``(scalar loss, {name: scalar})``
  is traced inside the jitted train step: ``outputs`` is the model contract's
  dict, ``collections`` the mutable collections of the forward pass
  (``losses`` holds StRA's sown L_d);
* ``eval_context()`` is what the evaluators of ``config.evals`` may use.

Register a task with ``register_task("name", MyTask)`` (``stra_jax.tasks``) and
select it with ``config.task = "name"``.
"""
from __future__ import annotations

import abc
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import jax
import numpy as np

from stra_jax.evaluation.evaluators import Evaluator, build_evaluators
from stra_jax.utils import as_path, is_remote


class Task(abc.ABC):
    """Base class of the trainer's task plug-ins. ``config``: the experiment's
    ConfigDict; ``workdir``: the run's directory (``None`` in ``eval.py`` on a
    bare model directory), for data a task generates or caches."""

    #: metrics of :meth:`loss` shown on the progress line, after ``loss``.
    progress_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, workdir: str | Path | None = None) -> None:
        self.config = config
        # local or gs:// (etils epath: one API); data it generates stays on a local disk
        self.workdir = as_path(workdir) if workdir is not None else None

    @abc.abstractmethod
    def load(self) -> str:
        """Read (or generate) the data; returns a summary for the log."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """Classes of the training set (the classifier's width)."""

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int:
        """Training examples per epoch (before dropping the last partial batch)."""

    @abc.abstractmethod
    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        """This host's slices of the epoch's global batches, from ``start_step`` on."""

    @abc.abstractmethod
    def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             collections: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar training loss and scalar metrics (must include ``"loss"``)."""

    def model_overrides(self) -> dict[str, Any]:
        """Model options the data decides (by default the classifier's width)."""
        return {"num_classes": self.num_classes}

    def sharding_rules(self) -> list[tuple[str, tuple]]:
        """``(path pattern, partition spec)`` pairs for train-state leaves that
        are split over the mesh instead of replicated (see
        ``stra_jax.sharding.state_shardings``); none by default."""
        return []

    def eval_context(self) -> dict[str, Any]:
        """What this task offers the evaluators (e.g. ``reid_dataset``)."""
        return {}

    def evaluators(self) -> list[Evaluator]:
        """The evaluators of ``config.evals``, built with :meth:`eval_context`."""
        return build_evaluators(self.config.get("evals"), self.eval_context())

    def data_root(self) -> Path:
        """``config.dataset.root``, or ``WORKDIR/data/<dataset name>`` when it is
        empty (where the built-in synthetic set is generated)."""
        dataset = self.config.dataset
        if dataset.get("root"):
            return Path(dataset.root)
        if self.workdir is not None and is_remote(self.workdir):
            # a gs:// workdir: generate the built-in sets on this host's disk (image
            # readers and generators work on local files), one folder per workdir
            key = hashlib.sha1(os.fspath(self.workdir).encode()).hexdigest()[:12]
            return Path(tempfile.gettempdir()) / "stra_jax_data" / key / dataset.name
        if self.workdir is None:
            raise ValueError(f"config.dataset.root is empty and there is no training workdir to find "
                             f"{dataset.name!r} in: pass --config.dataset.root=PATH")
        return Path(os.fspath(self.workdir)) / "data" / dataset.name
