"""Export a trained model's embedding network for serving: a SavedModel or StableHLO.

    python -m stra_jax.tools.export --checkpoint DIR --format savedmodel --out OUT \\
        [--image-size H,W] [--platforms cpu,cuda] [--output embedding] [--overwrite]
    python -m stra_jax.tools.export --checkpoint runs/market --format stablehlo --out OUT

``--checkpoint``: a model directory (model.json + variables/) or a training
workdir (its model_best, else model_last), resolved as ``eval.py`` does.

What is exported: the network in evaluation mode, exactly the features
``evaluation/features.py::extract_features`` computes for one un-flipped batch
(``model.apply(variables, images, train=False)["embedding"]``, float32). Input:
a float32 NHWC batch (B, H, W, 3) of *normalised* images, any B, fixed H, W
(ReID: RGB in [0, 1], then ImageNet mean / std; face: RGB in [0, 255], then
``(x - 127.5) / 128``); ``OUT/export.json`` records the size and the
normalisation. Input size: ``--image-size``, else the run's ``config.json``
``input.image_size`` (a workdir, or the config training recorded in
model.json), else the model's ``input_size`` (face nets, whose head fixes it),
else 256x128 (``tools/run_inputs.input_settings``).

``--format stablehlo``: ``jax.export`` with a symbolic batch dimension;
``OUT/model.stablehlo`` (``Exported.serialize()``; read it back with
``jax.export.deserialize``, or :func:`load_stablehlo`) and ``OUT/model.mlir``
(the module's text). ``--format savedmodel``: ``jax2tf`` (native
serialisation) with the variables as ``tf.Variable``s; signature
``serving_default``: ``images`` float32 [None, H, W, 3] -> ``{"embedding":
[None, D]}`` (TF Serving, ``tf.saved_model.load``, TFLite converters).
``--platforms``: what the module is lowered for (default cpu and cuda: an
export made on a laptop also runs on a GPU server).

OUT is assembled in a temporary directory beside it and renamed in: nothing is
half-written; an existing OUT fails unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from stra_jax.tools.run_inputs import input_settings, task_and_config
from stra_jax.utils import as_path, atomic_directory, parse_size

FORMATS = ("savedmodel", "stablehlo")
OUTPUTS = ("embedding", "features")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda")
EXPORT_FORMAT = "stra-jax-export/1"
STABLEHLO_FILE, MLIR_FILE, META_FILE = "model.stablehlo", "model.mlir", "export.json"
SIGNATURE, INPUT_NAME = "serving_default", "images"


def parse_platforms(text: str) -> tuple[str, ...]:
    """``"cpu,cuda"`` -> ("cpu", "cuda"); each one of :data:`PLATFORMS`."""
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names or any(p not in PLATFORMS for p in names):
        raise ValueError(f"--platforms {text}: expected a comma-separated subset of {','.join(PLATFORMS)}, "
                         "e.g. cpu,cuda")
    return tuple(dict.fromkeys(names))


def embedding_fn(model: Any, output: str = "embedding") -> Callable[[Any, Any], Any]:
    """``f(variables, images (B, H, W, 3) float32) -> (B, D) float32``: the
    evaluation forward pass of ``extract_features`` (``train=False``, no flip)."""
    import jax.numpy as jnp

    def forward(variables: Any, images: Any) -> Any:
        return model.apply(variables, images, train=False)[output].astype(jnp.float32)

    return forward


def _export_stablehlo(forward: Callable, variables: Any, size: tuple[int, int], platforms: Sequence[str],
                      staging: Path) -> None:
    import jax
    import jax.numpy as jnp

    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(lambda images: forward(variables, images)), platforms=platforms)(
        jax.ShapeDtypeStruct((batch, *size, 3), jnp.float32))
    (staging / STABLEHLO_FILE).write_bytes(exported.serialize())
    (staging / MLIR_FILE).write_text(exported.mlir_module())


def _export_savedmodel(forward: Callable, variables: Any, size: tuple[int, int], platforms: Sequence[str],
                       staging: Path) -> None:
    import jax
    import tensorflow as tf
    from jax.experimental import jax2tf

    tf.config.set_visible_devices([], "GPU")  # JAX owns the accelerators (as the data pipelines do)
    leaves, treedef = jax.tree.flatten(variables)
    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(leaf), trainable=False, name=f"v{i}") for i, leaf in enumerate(leaves)]
    converted = jax2tf.convert(lambda flat, images: forward(jax.tree.unflatten(treedef, flat), images),
                               polymorphic_shapes=[None, f"(b, {size[0]}, {size[1]}, 3)"], with_gradient=False,
                               native_serialization_platforms=tuple(platforms))

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name=INPUT_NAME)])
    def serve(images):
        return {"embedding": converted(list(module.weights), images)}

    module.serve = serve
    tf.saved_model.save(module, str(staging), signatures={SIGNATURE: serve})


def export_model(checkpoint: str | Path, out: str | Path, fmt: str, image_size: tuple[int, int] | None = None,
                 overwrite: bool = False, *, platforms: Sequence[str] = DEFAULT_PLATFORMS,
                 output: str = "embedding") -> Path:
    """Export the model at ``checkpoint`` (model directory or training workdir) to ``out``.

    ``fmt``: "stablehlo" or "savedmodel". The exported function maps a float32
    (B, H, W, 3) batch of normalised images (any B; (H, W) = ``image_size`` or
    the size the run evaluated at, see the module docstring) to the (B, D)
    float32 ``output`` of ``model.apply(variables, images, train=False)``.
    Writes ``out/export.json`` (returned by :func:`read_export_meta`) beside the
    model files; ``out`` appears complete or not at all. Raises
    ``FileNotFoundError`` (not a model), ``FileExistsError`` (``out`` exists and
    not ``overwrite``) or ``ValueError`` (bad format, size, platform, output)
    before writing anything. Returns the absolute ``out``.
    """
    import jax

    from stra_jax.models import load_model
    from stra_jax.models.io import read_model_spec, resolve_model_dir

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r}: expected one of {', '.join(OUTPUTS)}")
    platforms = parse_platforms(",".join(platforms))
    out = as_path(out)  # a local folder or gs://
    model_dir, workdir = resolve_model_dir(checkpoint)
    if out.exists() and not overwrite:  # before loading anything
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    spec = read_model_spec(model_dir)
    model, variables = load_model(model_dir)
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    size, task, source = input_settings(model, model_dir, workdir, image_size)
    task_class, config = task_and_config(model_dir, workdir, task)
    forward = embedding_fn(model, output)
    # Trace once (no compile): a size the model cannot take fails here, naming it, before OUT is touched.
    shapes = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                            jax.ShapeDtypeStruct((1, *size, 3), np.float32))
    if output not in shapes:
        raise ValueError(f"{model_dir}: {spec['arch']} has no output {output!r} (it has {sorted(shapes)})")
    meta = {
        "format": EXPORT_FORMAT, "export_format": fmt, "arch": spec["arch"], "kwargs": spec["kwargs"],
        "image_size": list(size), "image_size_source": source, "task": task,
        "input": {"name": INPUT_NAME, "shape": [None, *size, 3], "dtype": "float32", "layout": "NHWC",
                  "normalisation": task_class.preprocessing(config)},
        "output": {"name": output, "dim": int(shapes[output].shape[-1]), "dtype": "float32",
                   "computed_as": f"model.apply(variables, images, train=False)[{output!r}]"},
        "checkpoint": str(model_dir), "workdir": str(workdir) if workdir else None,
        "step": spec.get("info", {}).get("step"), "platforms": list(platforms), "jax_version": jax.__version__,
        "files": [STABLEHLO_FILE, MLIR_FILE] if fmt == "stablehlo" else ["saved_model.pb", "variables/"],
    }
    if fmt == "savedmodel":
        meta["signature"] = SIGNATURE
    with atomic_directory(out, overwrite=overwrite) as staging:
        (_export_stablehlo if fmt == "stablehlo" else _export_savedmodel)(forward, variables, size, platforms,
                                                                           staging)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def read_export_meta(out: str | Path) -> dict[str, Any]:
    """The ``export.json`` of an export directory."""
    return json.loads((as_path(out) / META_FILE).read_text())


def load_stablehlo(out: str | Path) -> Callable[[Any], Any]:
    """``f(images (B, H, W, 3) float32) -> (B, D) float32`` from ``out/model.stablehlo``
    (``jax.export.deserialize(...).call``; runs on the platforms it was lowered for)."""
    import jax

    exported = jax.export.deserialize(bytearray((as_path(out) / STABLEHLO_FILE).read_bytes()))
    return exported.call


def load_savedmodel(out: str | Path) -> Callable[[Any], np.ndarray]:
    """``f(images (B, H, W, 3) float32) -> (B, D) float32 numpy`` through the
    SavedModel's ``serving_default`` signature (TensorFlow)."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    serve = tf.saved_model.load(str(out)).signatures[SIGNATURE]
    return lambda images: serve(**{INPUT_NAME: tf.constant(images, tf.float32)})["embedding"].numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model directory (model.json + variables/) or training workdir")
    parser.add_argument("--format", required=True, choices=FORMATS, help="savedmodel (TF Serving) or stablehlo (jax.export)")
    parser.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--image-size", default=None, help="H,W of the model input (default: see above)")
    parser.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS), help=f"lower for these ({','.join(PLATFORMS)})")
    parser.add_argument("--output", default="embedding", choices=OUTPUTS, help="model output to export")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = parser.parse_args(argv)

    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    try:
        size = parse_size(args.image_size) if args.image_size else None
        platforms = parse_platforms(args.platforms)
        out = export_model(args.checkpoint, args.out, args.format, size, args.overwrite, platforms=platforms,
                           output=args.output)
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    meta = read_export_meta(out)
    h, w = meta["image_size"]
    print(f"{meta['arch']} at {meta['checkpoint']}" + (f" (step {meta['step']})" if meta["step"] is not None else "")
          + f": {args.format} for {','.join(meta['platforms'])}; input [B, {h}, {w}, 3] float32 "
          f"({meta['image_size_source']}, {meta['task']} normalisation) -> {meta['output']['name']} "
          f"[B, {meta['output']['dim']}]")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
