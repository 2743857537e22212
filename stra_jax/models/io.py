"""Model checkpoints: an architecture description plus orbax-saved variables.

Layout of a model directory (what ``python -m stra_jax.convert`` writes, and
what training uses as initialisation and evaluation loads)::

    OUT_DIR/model.json     {"format": "stra-jax-model/1", "arch": ..., "kwargs": {...}, "info": {...}}
    OUT_DIR/variables/     orbax StandardSave of {"params", "batch_stats"}

``info`` is free-form provenance (training writes the step and the metrics
logged for it); readers ignore keys they do not know.

The directory is assembled beside its destination and renamed into place, so
an interrupted write never leaves a half-written OUT_DIR.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from stra_jax.models.registry import create_model, model_kwargs
from stra_jax.utils import as_path, atomic_directory, copy_tree, shape_mismatches, write_json_atomic

FORMAT = "stra-jax-model/1"
# The model directories a training workdir keeps (training/loop.py writes them).
MODEL_BEST, MODEL_LAST = "model_best", "model_last"
_INIT_IMAGE = (1, 64, 64, 3)  # for families whose parameter shapes do not depend on the image size


def init_image_shape(model: Any) -> tuple[int, int, int, int]:
    """(1, H, W, 3) to initialise ``model`` with: its ``input_size`` when the
    family declares one (a head that flattens the map, like the face head, has
    parameters sized by the input), else a small image."""
    size = getattr(model, "input_size", None)
    return (1, *tuple(size), 3) if size else _INIT_IMAGE


def init_variables(model: Any, rng: jax.Array) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of ``model`` (jitted init on a small image)."""
    dummy = jnp.zeros(init_image_shape(model), jnp.float32)
    # Runs once: skip LLVM optimisation, which makes compiling the dozens of
    # random-number kernels of a ResNet's init take 5-10x longer than running them.
    init = jax.jit(lambda key: model.init(key, dummy, train=False),
                   compiler_options={"xla_backend_optimization_level": 0})
    return init(rng)


def abstract_variables(model: Any) -> dict[str, Any]:
    """Shapes and dtypes of ``init_variables(model, ...)``, traced without compiling."""
    dummy = jax.ShapeDtypeStruct(init_image_shape(model), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), dummy)


def save_model(out_dir: str | os.PathLike, arch: str, kwargs: dict[str, Any],
               variables: dict[str, Any], *, overwrite: bool = False,
               info: dict[str, Any] | None = None) -> epath.Path:
    """Write ``variables`` of ``create_model(arch, **kwargs)`` to ``out_dir``
    (assembled beside it, then renamed in: never half-written)."""
    spec = {"format": FORMAT, "arch": arch, "kwargs": model_kwargs(arch, **kwargs)}
    if info:
        spec["info"] = info
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        state = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
            ckptr.save(staging / "variables", args=ocp.args.StandardSave(state))
        (staging / "model.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=list) + "\n")
    return as_path(out_dir)


def update_model_info(model_dir: str | os.PathLike, info: dict[str, Any]) -> None:
    """Replace the ``info`` of a model directory's ``model.json`` (atomically)."""
    spec = read_model_spec(model_dir)
    write_json_atomic(as_path(model_dir) / "model.json", {**spec, "info": info})


def copy_model_dir(src: str | os.PathLike, dest: str | os.PathLike) -> epath.Path:
    """Copy a model directory, replacing ``dest`` atomically."""
    read_model_spec(src)  # fail clearly on a non-model directory
    with atomic_directory(dest, overwrite=True) as staging:
        copy_tree(src, staging)
    return as_path(dest)


def read_model_spec(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = as_path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected a stra-jax model directory (model.json + variables/) "
            "as written by `python -m stra_jax.convert` or save_model")
    spec = json.loads(path.read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path}: format {spec.get('format')!r}, expected {FORMAT!r}")
    return spec


def resolve_model_dir(path: str | os.PathLike) -> tuple[epath.Path, epath.Path | None]:
    """``(model directory, training workdir or None)`` for a path that is either a
    model directory or a training workdir (its ``model_best``, else ``model_last``)."""
    path = as_path(path)
    if (path / "model.json").is_file():
        workdir = path.parent if (path.parent / "config.json").is_file() else None
        return path, workdir
    for name in (MODEL_BEST, MODEL_LAST):
        if (path / name / "model.json").is_file():
            return path / name, path
    if (path / "checkpoints").is_dir():
        raise FileNotFoundError(f"{path}: a training workdir with checkpoints but no {MODEL_BEST}/ or {MODEL_LAST}/ "
                                "yet (it stopped before its first evaluation); rerun its training command to resume "
                                f"it: {_training_command(path)}")
    raise FileNotFoundError(f"{path}: no model.json here, nor {MODEL_BEST}/ or {MODEL_LAST}/ of a training "
                            "workdir; expected a stra-jax model directory (model.json + variables/)")


def _training_command(workdir: epath.Path) -> str:
    """The command line of the run's last session (``run.json``), else the usual form."""
    try:
        command = json.loads((workdir / "run.json").read_text())["sessions"][-1]["command"]
        return " ".join(["python", *command]) if command and command[0].endswith(".py") else " ".join(command)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return f"python train.py --config configs/<exp>.py[:variant] --workdir {workdir}"


def load_variables(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The saved ``{"params", "batch_stats"}`` of a model directory as they are,
    without building its model (for ``models/transplant.py``: any architecture,
    on this host's first device whatever devices wrote it)."""
    read_model_spec(model_dir)  # fail clearly on a non-model directory
    path = as_path(model_dir) / "variables"
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
        saved = ckptr.metadata(path).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
        return ckptr.restore(path, args=ocp.args.StandardRestore(target))


def load_model(model_dir: str | os.PathLike, *, expect_arch: str | None = None,
               **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """Restore ``(model, variables)`` from a model directory.

    ``expect_arch``: fail clearly if the directory holds another architecture.
    ``overrides`` may change computation-only options (``dtype``,
    ``attention_implementation``, ``attention_grouped_conv``); anything that changes parameter shapes is
    reported as a mismatch.
    """
    spec = read_model_spec(model_dir)
    arch = spec["arch"]
    if expect_arch is not None and arch != expect_arch:
        raise ValueError(f"{model_dir}: holds a {arch!r} model, expected {expect_arch!r}")
    model = create_model(arch, **{**spec["kwargs"], **overrides})
    target = abstract_variables(model)
    target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
    path = as_path(model_dir) / "variables"
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
        saved = ckptr.metadata(path).item_metadata.tree
        problems = shape_mismatches(target, saved)
        if problems:
            raise ValueError(f"{model_dir}: saved variables do not match {arch} with options "
                             f"{spec['kwargs'] | overrides}:\n  " + "\n  ".join(problems))
        variables = ckptr.restore(path, args=ocp.args.StandardRestore(target))
    return model, variables
