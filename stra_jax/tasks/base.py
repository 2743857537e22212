"""What a task supplies to the trainer and to ``eval.py``.

The trainer (``training/loop.py``) is the same for every task; a task says how
to read its data, its loss and its evaluators:

* ``load()`` reads (or generates) the data once and returns a summary to print:
  ``load_folder()`` or ``load_tfds()``, as ``config.dataset.source`` says;
* ``num_classes`` / ``num_train_examples`` size the classifier and the epoch;
* ``sampler`` (``config.input.sampler``, built on first use) draws each epoch's
  global batches; ``steps_per_epoch(global_batch)`` is the trainer's epoch
  length; ``train_labels()`` gives the identities a grouping sampler reads;
* ``train_batches(...)`` yields this host's slice of each global batch, a dict
  of NumPy arrays (``images`` (b, H, W, 3) plus whatever the loss reads),
  deterministic in (seed, epoch, step) so that a resumed run is exact;
  ``train_stream(...)``, what the trainer reads, gives the same batches for
  many epochs (by default one ``train_batches`` pipeline after another);
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
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

from stra_jax.data.samplers import Sampler, build_sampler, check_sampler_config
from stra_jax.evaluation.evaluators import Evaluator, build_evaluators
from stra_jax.losses import LossContext, Objective, train_objective
from stra_jax.utils import as_path, is_remote


class Task(abc.ABC):
    """Base class of the trainer's task plug-ins. ``config``: the experiment's
    ConfigDict; ``workdir``: the run's directory (``None`` in ``eval.py`` on a
    bare model directory), for data a task generates or caches."""

    #: metrics of :meth:`loss` shown on the progress line, after ``loss``.
    progress_metrics: ClassVar[tuple[str, ...]] = ()
    _sampler: Sampler | None = None  # built on first use of ``sampler`` (after load())

    def __init__(self, config: Any, workdir: str | Path | None = None) -> None:
        self.config = config
        # local or gs:// (etils epath: one API); data it generates stays on a local disk
        self.workdir = as_path(workdir) if workdir is not None else None
        check_sampler_config(config.get("input"))  # a bad sampler fails before any data is read

    def load(self) -> str:
        """Read (or generate) the data; returns a summary for the log.

        The one source dispatch: ``config.dataset.source`` "folder" (the
        default) calls :meth:`load_folder`, "tfds" :meth:`load_tfds`. A task
        with its own notion of a source overrides ``load`` instead.
        """
        dataset = self.config.get("dataset") or {}
        source = dataset.get("source", "folder")
        if source == "folder":
            return self.load_folder()
        if source == "tfds":
            return self.load_tfds()
        raise ValueError(f"config.dataset.source={source!r}: expected 'folder' or 'tfds'")

    def load_folder(self) -> str:
        """Read (or generate) the data from ``config.dataset.root`` (the
        ``folder`` source); returns a summary for the log."""
        raise NotImplementedError(f"the {type(self).__name__} task defines neither load() nor load_folder()")

    def load_tfds(self) -> str:
        """Read the data from its TFDS build (the ``tfds`` source); returns a
        summary for the log."""
        raise ValueError(f"config.dataset.source='tfds': the {type(self).__name__} task reads no TFDS builds; "
                         "expected 'folder'")

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """Classes of the training set (the classifier's width)."""

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int:
        """Training examples per epoch (before dropping the last partial batch)."""

    def train_labels(self) -> np.ndarray:
        """(num_train_examples,) int identity of each training example, in the
        order of the indices the sampler draws. Only samplers that group by
        identity ask (reading them may be slow: a face set holds millions)."""
        name = (self.config.get("input") or {}).get("sampler")
        raise ValueError(f"config.input.sampler={name!r} needs the training labels, which task "
                         f"{type(self).__name__} does not give (it defines no train_labels())")

    @property
    def sampler(self) -> Sampler:
        """``config.input.sampler`` over this task's training examples, built
        on first use (after :meth:`load`); labels are read only if it needs them."""
        if self._sampler is None:
            self._sampler = build_sampler(self.config.get("input"), self.num_train_examples, self.train_labels)
        return self._sampler

    def loss_context(self, num_classes: int | None) -> LossContext:
        """What the loss terms of ``config.train.losses`` are built with; a task
        adds what its terms need (e.g. a sharded classifier)."""
        return LossContext(num_classes=num_classes)

    def check_losses(self) -> None:
        """Build ``config.train.losses`` without data, so that a bad term, weight
        or option fails before anything is read or created (call in ``__init__``)."""
        train_objective(self.config.train, self.loss_context(None))

    @functools.cached_property
    def objective(self) -> Objective:
        """The weighted terms of ``config.train.losses`` (after :meth:`load`: they
        know the class count), built once: what :meth:`loss` of a task with
        config-chosen losses returns."""
        return train_objective(self.config.train, self.loss_context(self.num_classes))

    @property
    def checks_batch_labels(self) -> bool:
        """Whether a loss term of ``config.train.losses`` checks the labels of a
        batch (:meth:`check_batch_labels`); False for a task with its own loss."""
        if "losses" not in self.config.train:
            return False
        return bool(getattr(self.objective, "has_label_checks", False))

    def check_batch_labels(self, labels: np.ndarray) -> None:
        """Host-side checks of the loss terms (``objective.check_labels``) on the
        labels (B,) of what one loss call sees (a global batch, or one of its
        ``accum_steps`` micro-batches): the loop calls this on the first batch
        it will train on, before training starts, so that e.g. a triplet loss on
        a batch with one image per identity stops with a message, not a silent
        zero loss."""
        check = getattr(self.objective, "check_labels", None)
        if check is not None:
            check(np.asarray(labels))

    def steps_per_epoch(self, global_batch: int) -> int:
        """Optimiser steps (global batches) per epoch: the sampler's."""
        return self.sampler.steps_per_epoch(global_batch)

    @abc.abstractmethod
    def train_batches(self, *, epoch: int, start_step: int, global_batch: int, process_index: int,
                      process_count: int) -> Iterable[dict[str, np.ndarray]]:
        """This host's slices of the epoch's global batches, from ``start_step`` on."""

    def train_stream(self, *, epoch: int, start_step: int, epochs: int, global_batch: int, process_index: int,
                     process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """This host's slices of the global batches of ``epochs`` epochs from
        ``epoch`` on, from ``start_step`` of the first: what the trainer reads,
        the batches :meth:`train_batches` gives epoch by epoch. This default
        builds each epoch's pipeline when the previous one runs out; a task
        whose pipeline can run through many epochs overrides it with one
        pipeline for them all (the built-in tasks do: a pipeline costs about
        0.2 s of CPU to build, as much as a short epoch's input)."""
        per_epoch = self.steps_per_epoch(global_batch)
        for e in range(epoch, epoch + epochs):
            first = start_step if e == epoch else 0
            count = 0
            for batch in self.train_batches(epoch=e, start_step=first, global_batch=global_batch,
                                            process_index=process_index, process_count=process_count):
                yield batch
                count += 1
                if count == per_epoch - first:
                    break
            if count != per_epoch - first:
                raise ValueError(f"epoch {e} of the {type(self).__name__} gave {first + count} training "
                                 f"batches, expected {per_epoch} (steps_per_epoch at batch size {global_batch})")

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

    @property
    def best_metric(self) -> str | None:
        """The metric that picks the best checkpoint and ``model_best`` (higher is
        better): ``config.train.best_metric`` when set, else the task's default
        (:meth:`default_best_metric`); ``None`` keeps only the latest."""
        return self.config.train.get("best_metric") or self.default_best_metric()

    def default_best_metric(self) -> str | None:
        """The task's own choice of best metric (e.g. ``"reid/mAP"``); none by default."""
        return None

    @classmethod
    def preprocessing(cls, config: Any) -> dict[str, Any]:
        """How the task's evaluation turns an image file into model input, for
        tools that feed a trained model themselves (``export``,
        ``visualize_modes``): ``{"range": [lo, hi] of the decoded pixels, "mean":
        [3], "std": [3], "formula", "source", "resize"}``, the model input being
        ``(pixels - mean) / std`` (NHWC)."""
        raise NotImplementedError(f"the {cls.__name__} task does not describe its evaluation preprocessing")

    @classmethod
    def eval_batches(cls, config: Any, paths: Sequence[str], image_size: tuple[int, int], batch_size: int
                     ) -> Iterator[np.ndarray]:
        """Image files through the task's evaluation preprocessing, from one
        pipeline, in order: model inputs ``(batch_size, H, W, 3)`` float32, the
        last batch padded (rows ``>= len(paths)`` are not images of ``paths``).
        An unreadable file stops it with a ``ValueError`` naming the file."""
        raise NotImplementedError(f"the {cls.__name__} task does not load evaluation images")

    @classmethod
    def eval_images(cls, config: Any, paths: Sequence[str | Path], image_size: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Image files through the task's evaluation preprocessing
        (:meth:`eval_batches`): ``(model input (N, H, W, 3) float32, the same
        images for display (N, H, W, 3) in [0, 1])``, the display undoing
        :meth:`preprocessing`'s normalisation."""
        names = [str(p) for p in paths]
        inputs = np.concatenate(list(cls.eval_batches(config, names, image_size, len(names))))[: len(names)]
        how = cls.preprocessing(config)
        (low, high), mean, std = how["range"], np.asarray(how["mean"]), np.asarray(how["std"])
        return inputs, np.clip((inputs * std + mean - low) / (high - low), 0, 1)

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
