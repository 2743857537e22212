"""Throughput of the tf.data training pipeline, in images/s per host, by host cores.

Writes a Market-1501-layout folder of JPEGs (the synthetic generator, at the
real 128x64 crop size of Market-1501) and runs ``data.pipeline.train_dataset``
at 256x128 with the full augmentation (resize, flip, pad-and-crop, random
erasing), in a fresh process pinned to 1, 2, ... cores (``sched_setaffinity``,
and tf.data's private thread pool sized to match). Compare with the model's
consumption: ``benchmarks/network_step.py`` prints img/s of the train step.

    python benchmarks/input_pipeline.py                   # 1 and 2 cores
    python benchmarks/input_pipeline.py --cores 1 2 --batches 40
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _worker(root: str, cores: int, batch: int, batches: int) -> dict:
    os.sched_setaffinity(0, set(range(cores)))
    import tensorflow as tf

    from stra_jax.data.pipeline import Augment, train_dataset
    from stra_jax.data.reid import read_market1501

    dataset = read_market1501(root)
    ds = train_dataset(dataset.train, global_batch=batch, image_size=(256, 128), augmentation=Augment())
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    ds = ds.with_options(options).repeat()
    iterator = ds.as_numpy_iterator()
    for _ in range(3):  # warm-up: graph building, first file reads
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    sec = time.perf_counter() - start
    return {"cores": cores, "img_per_s": batches * batch / sec}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--model-img-s", type=float, default=None,
                        help="the train step's img/s (benchmarks/network_step.py) to compare with")
    args = parser.parse_args(argv)
    if args.worker:
        root, cores, batch, batches = args.worker
        print(json.dumps(_worker(root, int(cores), int(batch), int(batches))))
        return

    from stra_jax.data.synthetic import SyntheticSpec, generate_market_layout

    available = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_market_layout(os.path.join(tmp, "market"),
                                      SyntheticSpec(num_ids=args.ids, images_per_id=12, height=128, width=64))
        rows = []
        for cores in args.cores:
            if cores > available:
                print(f"skipping {cores} cores: only {available} available")
                continue
            out = subprocess.run([sys.executable, __file__, "--worker", str(root), str(cores), str(args.batch),
                                  str(args.batches)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"# tf.data train pipeline, Market layout 128x64 JPEGs -> 256x128, full augmentation, "
          f"batch {args.batch}")
    header = f"{'cores':>6}{'img/s':>9}{'img/s/core':>12}" + (f"{'x model':>9}" if args.model_img_s else "")
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row['cores']:>6}{row['img_per_s']:>9.0f}{row['img_per_s'] / row['cores']:>12.0f}"
        if args.model_img_s:
            line += f"{row['img_per_s'] / args.model_img_s:>9.1f}"
        print(line)
    if rows:
        per_core = min(r["img_per_s"] / r["cores"] for r in rows)
        print(f"a GPU at 1,000 img/s needs about {1000 / per_core:.1f} host cores at the slowest per-core rate")


if __name__ == "__main__":
    main()
