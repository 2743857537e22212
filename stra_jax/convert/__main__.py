"""CLI: a PyTorch checkpoint -> a model directory that training and evaluation load.

    python -m stra_jax.convert SRC.pth OUT_DIR --arch stra_resnet50 --num-classes 751
    python -m stra_jax.convert mobilenet_v2-b0353104.pth runs/mnetv2_imagenet --arch mobilenetv2_x1_0 \\
        --num-classes 1000
"""
from __future__ import annotations

import argparse
import logging
import sys

from stra_jax.convert.core import from_torch_state_dict, read_state_dict


def main(argv: list[str] | None = None) -> int:
    from stra_jax.models.io import save_model

    parser = argparse.ArgumentParser(description="Convert a PyTorch checkpoint (torchvision / authors' ResNet, "
                                     "Cadene SE-ResNet, torchvision MobileNetV2) to a model directory.")
    parser.add_argument("src", help=".pth, .pth.tar or .safetensors")
    parser.add_argument("out_dir", help="directory to create (must not exist unless --overwrite)")
    parser.add_argument("--arch", default="stra_resnet50")
    parser.add_argument("--num-classes", type=int, default=0)
    parser.add_argument("--no-strict", action="store_true", help="load what matches; report the rest")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        state_dict = read_state_dict(args.src)
        model, variables, report = from_torch_state_dict(
            state_dict, arch=args.arch, num_classes=args.num_classes, strict=not args.no_strict,
            return_report=True)
        save_model(args.out_dir, args.arch, dict(num_classes=args.num_classes), variables,
                   overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir}: {args.arch}, {len(report.loaded)} tensors loaded"
          + (f", {len(report.initialised)} left at initialisation" if report.initialised else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
