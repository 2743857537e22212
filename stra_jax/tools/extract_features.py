"""Embed a folder of your own images with a model directory or training run.

    python -m stra_jax.tools.extract_features --checkpoint RUN_OR_MODEL_DIR --images FOLDER --out feats.npy \\
        [--image-size H,W] [--batch-size 64] [--flip] [--skip-corrupt]

The images go through the run's own evaluation preprocessing: the task's resize
and normalisation (``Task.eval_batches``, one pipeline) at the run's ``input.image_size``
(read from the workdir's ``config.json`` or the config training recorded in
``model.json``; ``tools/run_inputs.input_settings``). ``--image-size`` (``HxW``
or ``H,W``) overrides the size; a model with no recorded run uses its family's
input size, else 256x128. The line printed first says which size and
preprocessing were used and where they came from.

Writes ``feats.npy`` (N, D) float32 and ``feats.txt`` (the N image paths, one
per line, in the same order). Both are written to temporary names and renamed
at the end, so a failed run leaves neither.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stra_jax.utils import atomic_file, parse_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model directory (model.json + variables/) or training workdir")
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="output .npy path")
    parser.add_argument("--image-size", default=None,
                        help="HxW or H,W of the model input (default: the run's input.image_size, see above)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--flip", action="store_true", help="average with the mirror image's features")
    parser.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images (counted)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: expected a positive integer")

    from stra_jax.data.reid.pipeline import check_images
    from stra_jax.data.reid.common import Record, images_under
    from stra_jax.evaluation.features import forward_batches
    from stra_jax.models import load_model
    from stra_jax.models.io import resolve_model_dir
    from stra_jax.tools.run_inputs import input_settings, task_and_config

    try:
        size = parse_size(args.image_size) if args.image_size else None
        paths = images_under(args.images)
        records, skipped = check_images([Record(str(p), 0, 0) for p in paths], skip_corrupt=args.skip_corrupt)
        model_dir, workdir = resolve_model_dir(args.checkpoint)
        model, variables = load_model(model_dir)
        image_size, task, source = input_settings(model, model_dir, workdir, size)
        task_class, config = task_and_config(model_dir, workdir, task)
        print(f"{len(records)} images at {image_size[0]}x{image_size[1]} ({source}, {task} preprocessing)",
              flush=True)
        names = [r.path for r in records]
        batches = ({"images": b} for b in task_class.eval_batches(config, names, image_size, args.batch_size))
        feats = forward_batches(model, variables, batches, flip=args.flip, batch_size=args.batch_size)[: len(names)]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = Path(args.out)
    # Both files are complete or neither is replaced: the .txt goes first, the .npy is renamed last.
    with atomic_file(out.with_suffix(".txt")) as f:
        f.write("".join(f"{r.path}\n" for r in records))
    with atomic_file(out, "wb") as f:
        np.save(f, feats)
    print(f"wrote {out} {feats.shape} and {out.with_suffix('.txt')}"
          + (f"; skipped {len(skipped)} corrupt images" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
