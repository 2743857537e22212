"""What the ``AUTO_*`` tables should say for this backend: time every candidate, print the pick.

``implementation="auto"`` / ``grouped_conv="auto"`` read per-backend tables
(``AUTO_ATTENTION`` in ``stra_jax/layers/local_attention.py``, ``AUTO_GROUPED``
in ``stra_jax/layers/conv.py``). This script times each candidate of each table
on the default backend at the paper's shape (one StRAttention block, K 3, G 8,
on (32, 16, 8, 512): StRA-ResNet-50's last stage at 256x128, batch 32;
forward+backward in train mode, with ``benchmarks/attention.py``'s timer) and
prints, per table: the backend, ms per candidate, today's entry, the pick and,
if they differ, the one-line edit to make. A candidate must beat today's entry
by more than ``--margin`` (default 5%) to be picked, so noise does not flip
entries. With several ``--dtype`` s the pick minimises the geometric mean.

    python benchmarks/auto_choices.py                  # float32, 5 iters
    python benchmarks/auto_choices.py --dtype float32 bfloat16 --iters 10
    python benchmarks/auto_choices.py --quick          # tiny shapes: a CPU smoke run

Another table is one more ``AutoTable`` in ``TABLES`` (its module, its name,
its candidates, the module to time for a candidate and, if not a training
step, ``measure=eval_forward_seconds``).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import attention  # noqa: E402
from stra_jax import StRAttention  # noqa: E402
from stra_jax.layers import checks  # noqa: E402

PAPER_SHAPE = (32, 16, 8, 512)   # (B, H, W, C): StRA-ResNet-50's last stage at 256x128, batch 32
QUICK_SHAPE = (2, 8, 4, 64)


def train_seconds(module: nn.Module, x: jax.Array, iters: int) -> float:
    """Median s of the jitted forward+backward in train mode (``attention.measure``)."""
    return attention.measure(module, x, iters)[0]


def eval_forward_seconds(module: nn.Module, x: jax.Array, iters: int) -> float:
    """Median s of the jitted forward pass in eval mode (running BN statistics)."""
    variables = module.init(jax.random.key(0), x, train=False)
    forward = jax.jit(lambda v, inp: module.apply(v, inp, train=False)).lower(variables, x).compile()
    return attention.median_seconds(lambda: forward(variables, x), iters)


@dataclasses.dataclass(frozen=True)
class AutoTable:
    """One ``AUTO_*`` table: ``getattr(import_module(module), name)`` maps a backend to a candidate;
    ``build(candidate, dtype)`` is the module to time with ``measure(module, x (B, H, W, C), iters) -> s``."""

    name: str
    module: str
    candidates: tuple[str, ...]
    build: Callable[[str, Any], nn.Module]
    measure: Callable[[nn.Module, jax.Array, int], float] = train_seconds

    @property
    def path(self) -> str:
        return self.module.replace(".", "/") + ".py"

    def entries(self) -> dict[str, str]:
        return dict(getattr(importlib.import_module(self.module), self.name))


def _choices(allowed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in allowed if c != "auto")


TABLES: tuple[AutoTable, ...] = (
    AutoTable("AUTO_ATTENTION", "stra_jax.layers.local_attention", _choices(checks.IMPLEMENTATIONS),
              lambda c, dtype: StRAttention(heads=8, kernel_size=3, implementation=c, dtype=dtype)),
    # grouped convs timed with today's AUTO_ATTENTION pick for local attention
    AutoTable("AUTO_GROUPED", "stra_jax.layers.conv", _choices(checks.GROUPED_CONVS),
              lambda c, dtype: StRAttention(heads=8, kernel_size=3, grouped_conv=c, dtype=dtype)),
)


def dict_literal(entries: dict[str, str]) -> str:
    """``{"cpu": "fused", ...}`` as the source files spell it."""
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in entries.items()) + "}"


def decide(table: AutoTable, seconds: dict[str, float], backend: str, margin: float) -> tuple[str, str, str]:
    """``(today's entry, pick, edit line or "")``: the fastest candidate, unless today's is within ``margin``."""
    entries = table.entries()
    today = checks.for_backend("auto", entries)
    best = min(seconds, key=seconds.get)
    pick = today if today in seconds and seconds[today] <= seconds[best] * (1 + margin) else best
    if pick == today and backend in entries:
        return today, pick, ""
    return today, pick, f"{table.path}: {table.name} = {dict_literal({**entries, backend: pick})}"


def run_table(table: AutoTable, shape: tuple[int, ...], dtypes: list[str], iters: int,
              margin: float) -> tuple[str, str, str]:
    """Time every candidate of ``table`` at each dtype, print its section, return ``decide``'s answer."""
    backend = jax.default_backend()
    ms = {c: [] for c in table.candidates}
    for dtype in dtypes:
        x = jax.random.normal(jax.random.key(0), shape).astype(jnp.dtype(dtype))
        for candidate in table.candidates:
            ms[candidate].append(table.measure(table.build(candidate, jnp.dtype(dtype)), x, iters) * 1e3)
    mean = {c: float(np.exp(np.mean(np.log(v)))) for c, v in ms.items()}  # geometric mean over dtypes
    today, pick, edit = decide(table, mean, backend, margin)
    best = min(mean.values())
    print(f"\n{table.name} ({table.path}), {backend}, {table.measure.__name__}")
    print(f"  {'candidate':<12}" + "".join(f"{d + ' ms':>15}" for d in dtypes) + f"{'vs best':>9}")
    for c in table.candidates:
        mark = "  <- today's" if c == today else ""
        print(f"  {c:<12}" + "".join(f"{v:>15.2f}" for v in ms[c]) + f"{mean[c] / best:>9.2f}{mark}")
    print(f"  today's: {today}; pick: {pick}" + (f"; edit {edit}" if edit else " (no change)"))
    return today, pick, edit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--margin", type=float, default=0.05,
                        help="a candidate must beat today's entry by more than this fraction")
    parser.add_argument("--tables", nargs="+", default=[t.name for t in TABLES],
                        choices=[t.name for t in TABLES])
    parser.add_argument("--quick", action="store_true", help=f"tiny shape {QUICK_SHAPE}, 1 iter: a smoke run")
    args = parser.parse_args(argv)
    if args.iters < 1:
        raise ValueError(f"--iters={args.iters}: expected a positive integer")
    if args.margin < 0:
        raise ValueError(f"--margin={args.margin}: expected a fraction >= 0")
    shape, iters = (QUICK_SHAPE, 1) if args.quick else (PAPER_SHAPE, args.iters)

    device = jax.devices()[0]
    print(f"# AUTO_* picks: backend {jax.default_backend()} ({device.device_kind}), jax {jax.__version__}; "
          f"StRAttention K 3 G 8 on {shape} {'/'.join(args.dtype)}, median of {iters} iters")
    picks = [(t, *run_table(t, shape, args.dtype, iters, args.margin)) for t in TABLES if t.name in args.tables]
    backend = jax.default_backend()
    print(f"\n# picks for {backend}" + (" (quick: tiny shapes, not for the tables)" if args.quick else ""))
    for table, _, pick, edit in picks:
        print(f"{table.name}[{backend!r}] = {pick!r}" + (f"  # edit {edit}" if edit else "  # unchanged"))


if __name__ == "__main__":
    main()
