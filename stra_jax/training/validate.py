"""Up-front checks of a training config and workdir: one clear error before
anything is created, instead of a ZeroDivisionError or an untrained "result"."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from stra_jax.training.optim import check_optimizer_config
from stra_jax.training.schedules import check_schedule_config
from stra_jax.utils import ConfigError, as_path, is_remote

# key of config.train -> (lowest allowed value, whether it must be an integer)
_TRAIN_MINIMA: dict[str, tuple[float, bool]] = {
    "epochs": (1, True), "batch_size": (1, True), "accum_steps": (1, True), "frozen_epochs": (0, True),
    "log_every": (1, True), "eval_every_epochs": (1, True),
    "checkpoint_every_epochs": (1, True), "checkpoint_every_steps": (0, True), "keep_checkpoints": (1, True),
    "prefetch": (0, True), "lr_reference_batch": (0, True),
    "weight_decay": (0.0, False),
}


def check_train_config(config: Any) -> None:
    """Raise :class:`ConfigError` naming the first ``config.train`` /
    ``config.input`` value that cannot work (non-positive sizes and counts,
    lr <= 0, unknown schedule or optimiser options, ...)."""
    try:
        _check_train_config(config)
    except ConfigError:
        raise
    except ValueError as err:  # the schedule / optimiser builders' own checks
        raise ConfigError(str(err)) from None


def _check_train_config(config: Any) -> None:
    train = config.train
    for key, (lowest, integer) in _TRAIN_MINIMA.items():
        if key not in train:
            continue
        value = train[key]
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and value != int(value))
        if wrong_type or value < lowest:
            raise ConfigError(f"train.{key}={value!r}: expected {'an integer' if integer else 'a number'} >= {lowest}")
    if "lr" in train and not train.lr > 0:
        raise ConfigError(f"train.lr={train.lr!r}: expected a number > 0")
    check_schedule_config(train)  # train.schedule: name, its own keys, their values
    check_optimizer_config(train)  # train.optimizer: the same
    if train.frozen_epochs > train.epochs:
        raise ConfigError(f"train.frozen_epochs={train.frozen_epochs} > train.epochs={train.epochs}: "
                         "the run would end frozen")
    size = config.get("input", {}).get("image_size")
    if size is not None and (len(size) != 2 or any(int(v) < 1 for v in size)):
        raise ConfigError(f"input.image_size={tuple(size)!r}: expected (height, width), both >= 1")


def check_workdir(workdir: Path) -> None:
    """The workdir (or the nearest existing parent that will hold it) must be a
    writable directory; checked before anything is created."""
    if is_remote(workdir):  # a bucket has no permissions to read up front: try a write
        probe = as_path(workdir) / f".write-test-{uuid.uuid4().hex[:8]}"
        try:
            probe.write_text("")
            probe.unlink()
        except Exception as err:  # the filesystem's own error (permission, missing bucket)
            raise ValueError(f"workdir {workdir}: cannot write there ({type(err).__name__}: "
                             f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); "
                             "choose another --workdir") from None
        return
    path = Path(os.fspath(workdir))
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise ValueError(f"workdir {workdir}: {path} is a file, expected a directory")
    problem = None if os.access(path, os.W_OK | os.X_OK) else "no write permission"
    if problem is None:
        try:  # os.access says yes to root on a read-only mount's directories in some setups
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            problem = err.strerror or str(err)
    if problem:
        raise ValueError(f"workdir {workdir}: {path} is not writable ({problem}); choose another --workdir")
