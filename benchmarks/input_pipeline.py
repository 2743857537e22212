"""Throughput of the tf.data training pipeline, in images/s per host, by host cores.

Writes a Market-1501-layout folder of JPEGs (the synthetic generator, at the
real 128x64 crop size of Market-1501) and runs ``data.reid.pipeline.train_dataset``
at 256x128 with the full augmentation (resize, flip, pad-and-crop, random
erasing), in a fresh process pinned to 1, 2, ... cores (``sched_setaffinity``,
and tf.data's private thread pool sized to match). Compare with the model's
consumption: ``benchmarks/network_step.py`` prints img/s of the train step.
``--sources folder tfds`` also times the TFDS source (the same files built
with the ``synthetic_reid`` builder: encoded images read once into host
memory, then fed by a generator) and the time to load each source.

    python benchmarks/input_pipeline.py                   # 1 and 2 cores, folder source
    python benchmarks/input_pipeline.py --cores 1 2 --batches 40 --sources folder tfds
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


def _worker(root: str, cores: int, batch: int, batches: int, source: str, data_dir: str) -> dict:
    os.sched_setaffinity(0, set(range(cores)))
    import tensorflow as tf

    from stra_jax.data.reid.pipeline import Augment, train_dataset
    from stra_jax.data.reid import read_market1501

    start = time.perf_counter()
    if source == "tfds":
        from stra_jax.data.tfds import load_reid_tfds

        dataset = load_reid_tfds("synthetic", data_dir)  # every split's encoded images into memory
    else:
        dataset = read_market1501(root)
    load_s = time.perf_counter() - start
    ds = train_dataset(dataset.train, global_batch=batch, image_size=(256, 128), augmentation=Augment(),
                       images=dataset.images)
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
    return {"cores": cores, "source": source, "img_per_s": batches * batch / sec, "load_s": load_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--sources", nargs="+", default=["folder"], choices=["folder", "tfds"])
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--model-img-s", type=float, default=None,
                        help="the train step's img/s (benchmarks/network_step.py) to compare with")
    args = parser.parse_args(argv)
    if args.worker:
        root, cores, batch, batches, source, data_dir = args.worker
        print(json.dumps(_worker(root, int(cores), int(batch), int(batches), source, data_dir)))
        return

    from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout

    available = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_market_layout(os.path.join(tmp, "market"),
                                      SyntheticSpec(num_ids=args.ids, images_per_id=12, height=128, width=64))
        data_dir = os.path.join(tmp, "tfds")
        if "tfds" in args.sources:
            from stra_jax.data.tfds import build_reid_tfds

            build_reid_tfds("synthetic_reid", root, data_dir)
        rows = []
        for source in args.sources:
            for cores in args.cores:
                if cores > available:
                    print(f"skipping {cores} cores: only {available} available")
                    continue
                out = subprocess.run([sys.executable, __file__, "--worker", str(root), str(cores), str(args.batch),
                                      str(args.batches), source, data_dir], capture_output=True, text=True,
                                     check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"# tf.data train pipeline, Market layout 128x64 JPEGs -> 256x128, full augmentation, "
          f"batch {args.batch}")
    header = (f"{'source':>7}{'load s':>8}{'cores':>6}{'img/s':>9}{'img/s/core':>12}"
              + (f"{'x model':>9}" if args.model_img_s else ""))
    print(header)
    print("-" * len(header))
    for row in rows:
        line = (f"{row['source']:>7}{row['load_s']:>8.2f}{row['cores']:>6}{row['img_per_s']:>9.0f}"
                f"{row['img_per_s'] / row['cores']:>12.0f}")
        if args.model_img_s:
            line += f"{row['img_per_s'] / args.model_img_s:>9.1f}"
        print(line)
    if rows:
        per_core = min(r["img_per_s"] / r["cores"] for r in rows)
        print(f"a GPU at 1,000 img/s needs about {1000 / per_core:.1f} host cores at the slowest per-core rate")


if __name__ == "__main__":
    main()
