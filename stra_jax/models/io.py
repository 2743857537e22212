"""Model checkpoints: an architecture description plus orbax-saved variables.

Layout of a model directory (what ``python -m stra_jax.convert`` writes, and
what training uses as initialisation and evaluation loads)::

    OUT_DIR/model.json     {"format": "stra-jax-model/1", "arch": ..., "kwargs": {...}}
    OUT_DIR/variables/     orbax StandardSave of {"params", "batch_stats"}

The directory is assembled beside its destination and renamed into place, so
an interrupted write never leaves a half-written OUT_DIR.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from stra_jax.models.registry import create_model, model_kwargs
from stra_jax.models.resnet import ResNet

FORMAT = "stra-jax-model/1"
_INIT_IMAGE = (1, 64, 64, 3)  # parameter shapes do not depend on the image size


def init_variables(model: ResNet, rng: jax.Array) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of ``model`` (jitted init on a small image)."""
    dummy = jnp.zeros(_INIT_IMAGE, jnp.float32)
    # Runs once: skip LLVM optimisation, which makes compiling the dozens of
    # random-number kernels of a ResNet's init take 5-10x longer than running them.
    init = jax.jit(lambda key: model.init(key, dummy, train=False),
                   compiler_options={"xla_backend_optimization_level": 0})
    return init(rng)


def abstract_variables(model: ResNet) -> dict[str, Any]:
    """Shapes and dtypes of ``init_variables(model, ...)``, traced without compiling."""
    dummy = jax.ShapeDtypeStruct(_INIT_IMAGE, jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), dummy)


def save_model(out_dir: str | os.PathLike, arch: str, kwargs: dict[str, Any],
               variables: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``variables`` of ``create_model(arch, **kwargs)`` to ``out_dir``."""
    out = Path(out_dir).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    spec = {"format": FORMAT, "arch": arch, "kwargs": model_kwargs(arch, **kwargs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        state = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
            ckptr.save(staging / "variables", args=ocp.args.StandardSave(state))
        (staging / "model.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def read_model_spec(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected a stra-jax model directory (model.json + variables/) "
            "as written by `python -m stra_jax.convert` or save_model")
    spec = json.loads(path.read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path}: format {spec.get('format')!r}, expected {FORMAT!r}")
    return spec


def load_model(model_dir: str | os.PathLike, *, expect_arch: str | None = None,
               **overrides: Any) -> tuple[ResNet, dict[str, Any]]:
    """Restore ``(model, variables)`` from a model directory.

    ``expect_arch``: fail clearly if the directory holds another architecture.
    ``overrides`` may change computation-only options (``dtype``,
    ``attention_implementation``); anything that changes parameter shapes is
    reported as a mismatch.
    """
    spec = read_model_spec(model_dir)
    arch = spec["arch"]
    if expect_arch is not None and arch != expect_arch:
        raise ValueError(f"{model_dir}: holds a {arch!r} model, expected {expect_arch!r}")
    model = create_model(arch, **{**spec["kwargs"], **overrides})
    target = abstract_variables(model)
    target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
    path = Path(model_dir).absolute() / "variables"
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
        saved = ckptr.metadata(path).item_metadata.tree
        problems = shape_mismatches(target, saved)
        if problems:
            raise ValueError(f"{model_dir}: saved variables do not match {arch} with options "
                             f"{spec['kwargs'] | overrides}:\n  " + "\n  ".join(problems))
        variables = ckptr.restore(path, args=ocp.args.StandardRestore(target))
    return model, variables


def shape_mismatches(expected: Any, saved: Any, limit: int = 50) -> list[str]:
    """Differences between two trees of arrays / shape structs: missing, extra and
    wrongly shaped leaves as readable lines (empty when they match)."""
    def flat(tree):
        # DictKey.key / GetAttrKey.name / SequenceKey.idx: a dataclass state and the
        # dict orbax reads back name the same leaf the same way.
        return {"/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path):
                tuple(leaf.shape)
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    want, got = flat(expected), flat(saved)
    lines = [f"missing from the checkpoint: {k} {want[k]}" for k in sorted(set(want) - set(got))]
    lines += [f"not in the model: {k} {got[k]}" for k in sorted(set(got) - set(want))]
    lines += [f"{k}: model expects {want[k]}, checkpoint has {got[k]}"
              for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])
