"""Feature-extraction throughput: images/s of ``evaluation.features.extract_features``.

Full StRA-ResNet-50 and ResNet-50 (eval mode, 256x128, jitted, sharded over the
local devices) on a folder of Market-layout JPEGs, decode and resize included.
The first (compiling) batch is excluded.

    python benchmarks/extract_features.py                  # 96 images, batch 32
    python benchmarks/extract_features.py --images 64 --batch 16
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from stra_jax.data.reid import read_market1501  # noqa: E402
from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout  # noqa: E402
from stra_jax.evaluation.features import extract_features  # noqa: E402
from stra_jax.models import create_model, init_variables  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["stra_resnet50", "resnet50"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_market_layout(os.path.join(tmp, "m"), SyntheticSpec(num_ids=20, images_per_id=12))
        paths = [r.path for r in read_market1501(root).gallery][: args.images]
        rows = []
        for name in args.models:
            kw = dict(num_classes=0, last_stride=1, embedding_dim=512) if name == "resnet50" else {}
            model = create_model(name, **kw)
            variables = init_variables(model, jax.random.key(0))
            extract_features(model, variables, paths[: args.batch], batch_size=args.batch)  # compile
            start = time.perf_counter()
            feats = extract_features(model, variables, paths, batch_size=args.batch)
            sec = time.perf_counter() - start
            rows.append((name, feats.shape, len(paths) / sec))
    print(f"# extract_features, {len(paths)} images at 256x128, batch {args.batch}, "
          f"{jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}")
    print(f"{'model':<16}{'features':>14}{'img/s':>9}")
    for name, shape, rate in rows:
        print(f"{name:<16}{str(shape):>14}{rate:>9.1f}")


if __name__ == "__main__":
    main()
