"""Embed a folder of your own images with a model directory.

    python -m stra_jax.tools.extract_features --checkpoint DIR --images FOLDER --out feats.npy \\
        [--image-size 256x128] [--batch-size 64] [--flip] [--skip-corrupt]

Writes ``feats.npy`` (N, D) float32 and ``feats.txt`` (the N image paths, one
per line, in the same order). Both are written to temporary names and renamed
at the end, so a failed run leaves neither.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stra_jax.utils import atomic_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model directory (model.json + variables/) or training workdir")
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="output .npy path")
    parser.add_argument("--image-size", default="256x128", help="HxW the model expects")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--flip", action="store_true", help="average with the mirror image's features")
    parser.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images (counted)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: expected a positive integer")

    from stra_jax.data.reid.pipeline import check_images
    from stra_jax.data.reid.common import Record, images_under
    from stra_jax.evaluation.features import extract_features
    from stra_jax.models import load_model
    from stra_jax.models.io import resolve_model_dir

    try:
        try:
            height, width = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--image-size {args.image_size}: expected HxW, e.g. 256x128") from None
        paths = images_under(args.images)
        records, skipped = check_images([Record(str(p), 0, 0) for p in paths], skip_corrupt=args.skip_corrupt)
        model, variables = load_model(resolve_model_dir(args.checkpoint)[0])
        feats = extract_features(model, variables, [r.path for r in records], batch_size=args.batch_size,
                                 image_size=(height, width), flip=args.flip)
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
