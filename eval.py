"""Evaluate a ReID model directory on a dataset's query/gallery protocol.

    python eval.py --config configs/reid_market.py --checkpoint DIR [--output results.json]
    python eval.py --config configs/reid_market.py:authors --checkpoint DIR \\
        --config.dataset.root=/data/market1501 --config.eval.flip=True

Extracts features with a jitted forward pass sharded over all local devices,
prints mAP, mINP and CMC rank-1/5/10/20, and writes them (with the config) to
a JSON file: ``--output``, by default ``DIR/eval_<dataset>.json``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py[:variant]", lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "model directory (model.json + variables/)")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file for the results (default: CHECKPOINT/eval_<dataset>.json)")


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def run(config, checkpoint: str, output: str | None) -> dict:
    from stra_jax.data.pipeline import check_images
    from stra_jax.data.reid import prepare_dataset
    from stra_jax.evaluation.features import extract_features
    from stra_jax.evaluation.reid import evaluate
    from stra_jax.models import load_model

    cfg = config.eval
    synthetic = config.dataset.get("synthetic")
    dataset = prepare_dataset(config.dataset.name, config.dataset.root,
                              synthetic.to_dict() if synthetic else None)
    print(dataset.summary())
    query, gallery = dataset.query, dataset.gallery
    # Scan once so that a corrupt file is named (or skipped and counted), not a tf.data crash.
    query, bad_q = check_images(query, skip_corrupt=cfg.skip_corrupt)
    gallery, bad_g = check_images(gallery, skip_corrupt=cfg.skip_corrupt)
    if bad_q or bad_g:
        print(f"skipped {len(bad_q)} corrupt query and {len(bad_g)} corrupt gallery images")
    model, variables = load_model(checkpoint, expect_arch=config.model.name)

    start = time.perf_counter()
    kw = dict(batch_size=cfg.batch_size, image_size=tuple(cfg.image_size), flip=cfg.flip, output=cfg.output)
    qf = extract_features(model, variables, [r.path for r in query], **kw)
    gf = extract_features(model, variables, [r.path for r in gallery], **kw)
    extract_s = time.perf_counter() - start
    result = evaluate(qf, gf, [r.pid for r in query], [r.pid for r in gallery],
                      [r.camid for r in query], [r.camid for r in gallery], metric=cfg.metric,
                      normalize=cfg.normalize, rerank=cfg.rerank, max_rank=cfg.max_rank)
    print(f"features: {len(qf)} query + {len(gf)} gallery, dim {qf.shape[1]}, {extract_s:.1f} s")
    print(f"{'mAP':>7}{'mINP':>7}{'R-1':>7}{'R-5':>7}{'R-10':>7}{'R-20':>7}")
    print(f"{100 * result.mAP:7.1f}{100 * result.mINP:7.1f}{100 * result.rank1:7.1f}"
          f"{100 * result.rank5:7.1f}{100 * result.rank10:7.1f}{100 * result.rank20:7.1f}")
    payload = {"dataset": dataset.name, "checkpoint": str(checkpoint), "metrics": result.as_dict(),
               "config": config.to_dict()}
    out = Path(output) if output else Path(checkpoint) / f"eval_{dataset.name}.json"
    write_json_atomic(out, json.loads(json.dumps(payload, default=list)))
    print(f"wrote {out}")
    return payload


def main(argv) -> None:
    del argv
    if _CONFIG.value is None or _CHECKPOINT.value is None:
        raise app.UsageError("--config and --checkpoint are required")
    try:
        run(_CONFIG.value, _CHECKPOINT.value, _OUTPUT.value)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from stra_jax.tools.cli import parse_flags_or_exit

    app.run(main, flags_parser=parse_flags_or_exit)
