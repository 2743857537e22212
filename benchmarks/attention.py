"""Forward+backward time and memory of StRAttention vs the 3x3 conv it replaces.

Default shape: ResNet-50's last stage as StRA-ResNet-50 runs it at 256x128 input
(batch 32, 16x8 nodes, C 512). Train mode (batch statistics), jitted, parameters
and input both differentiated. Peak memory is XLA's compiled estimate
(arguments + outputs + temporaries) from ``memory_analysis``; FLOPs are XLA's
``cost_analysis`` of the same forward+backward program.

    python benchmarks/attention.py                      # the table for K 3/5/7
    python benchmarks/attention.py --dtype bfloat16
    python benchmarks/attention.py --batch 8 --iters 3  # quicker
    python benchmarks/attention.py --implementations fused shift patches --grouped-convs split einsum conv
    python benchmarks/attention.py --torch              # + the authors' PyTorch modules, same process

Memory-traffic columns, both divided by this machine's measured copy bandwidth:
"floor ms" moves only what no formulation can avoid (read x, parameters and dy;
write y, dx and the parameter gradients: a hard lower bound); "xla ms" is the
traffic XLA counts for the compiled program (``cost_analysis`` "bytes accessed",
every fused op's reads and writes), i.e. how memory-bound this formulation is.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.network_step import Runner, cpu_line, median_ratio, run_rounds  # noqa: E402
from stra_jax import StRAttention, total_diversity_loss  # noqa: E402
from stra_jax.layers import checks  # noqa: E402
from stra_jax.layers.conv import resolve_grouped  # noqa: E402


class Conv3x3(nn.Module):
    """The bottleneck's 3x3 conv (no bias, as in torchvision) -- the baseline."""

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train):
        del train
        return nn.Conv(self.features, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)


def median_seconds(call, iters: int) -> float:
    """Median wall time of ``call()`` (a jitted computation; waited for) over
    ``iters`` runs, after one warm-up run."""
    jax.block_until_ready(call())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@dataclasses.dataclass
class Block:
    """One module's compiled forward+backward and XLA's figures for it."""

    call: Callable[[], None]  # one fwd+bwd, waited for
    peak: float               # bytes: arguments + outputs + temporaries
    flops: float
    n_params: int
    traffic: float            # bytes accessed, XLA's count
    floor: float              # bytes no formulation can avoid moving


def compile_block(module, x) -> Block:
    """Jit and compile ``module``'s train-mode forward+backward on ``x``."""
    variables = module.init(jax.random.key(0), x, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})

    def loss(p, inp):
        y, state = module.apply({"params": p, "batch_stats": stats}, inp, train=True,
                                mutable=["batch_stats", "losses"])
        return jnp.mean(jnp.square(y.astype(jnp.float32))) + jnp.mean(
            total_diversity_loss(state.get("losses", {})))

    fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    compiled = fwd_bwd.lower(params, x).compile()
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            if mem is not None else float("nan"))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    param_bytes = sum(p.nbytes for p in jax.tree.leaves(params))
    call = lambda: jax.block_until_ready(compiled(params, x))  # noqa: E731
    call()  # warm-up
    return Block(call, peak, (cost or {}).get("flops", float("nan")),
                 sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)),
                 (cost or {}).get("bytes accessed", float("nan")),
                 4 * x.nbytes + 2 * param_bytes)  # x, y, dy, dx; params and their gradients


def measure(module, x, iters):
    """(median s of ``iters`` fwd+bwd calls, peak, flops, n_params, traffic, floor) of one module."""
    block = compile_block(module, x)  # compiled and warmed up
    runner = Runner("module", "module", block.call)
    run_rounds([runner], 1, iters)
    return runner.times[0], block.peak, block.flops, block.n_params, block.traffic, block.floor


def copy_bandwidth() -> float:
    """Bytes/s of a jitted read+write of 256 MiB (this machine's streaming rate)."""
    x = jnp.ones((64 * 2**20,), jnp.float32)
    double = jax.jit(lambda a: a * 2.0).lower(x).compile()
    return 2 * x.nbytes / median_seconds(lambda: double(x), 5)


def torch_rows(args) -> list[tuple[str, int, float]]:
    """fwd+bwd ms of the authors' modules (tests/torch_reference.py) and nn.Conv2d, train mode."""
    import torch

    from tests import torch_reference as tr

    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.height, args.width, requires_grad=True)
    modules = [("torch conv3x3", 3, torch.nn.Conv2d(args.channels, args.channels, 3, padding=1, bias=False))]
    for k in args.kernels:
        stra = torch.nn.Sequential(tr.LocalAttn(args.channels, heads=args.heads, kernel_size=k),
                                   tr.ModeAttention(args.channels, args.heads))
        modules.append((f"torch StRA G{args.heads}", k, stra))
    rows = []
    for name, k, module in modules:
        module.train()
        times = []
        for i in range(args.iters + 1):
            start = time.perf_counter()
            y = module(x)
            loss = (y ** 2).mean()
            loss.backward()
            if i:  # the first call is a warm-up
                times.append(time.perf_counter() - start)
        rows.append((name, k, float(np.median(times))))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--iters", type=int, default=3, help="timed calls per module per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds (every module per round, order rotated), so drift hits all alike")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--implementations", nargs="+", choices=list(checks.IMPLEMENTATIONS),
                        default=["fused", "shift"], help="local-attention neighbour gathering to time")
    parser.add_argument("--grouped-convs", nargs="+", choices=list(checks.GROUPED_CONVS), default=["auto"],
                        help="grouped 1x1 convolution formulations to time (auto: this backend's pick)")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch reference modules")
    args = parser.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    x = jax.random.normal(jax.random.key(0),
                          (args.batch, args.height, args.width, args.channels)).astype(dtype)
    bandwidth = copy_bandwidth()
    rows = [("conv3x3", 3, compile_block(Conv3x3(args.channels, dtype=dtype), x))]
    for impl in args.implementations:
        for grouped in args.grouped_convs:
            for k in args.kernels:
                for mode_on, name in ((True, "StRA"), (False, "local only")):
                    block = StRAttention(heads=args.heads, kernel_size=k, mode_attention=mode_on,
                                         implementation=impl, grouped_conv=grouped, dtype=dtype)
                    rows.append((f"{name} G{args.heads} {impl}/{resolve_grouped(grouped)}", k,
                                 compile_block(block, x)))
    runners = [Runner(name, name, block.call) for name, _, block in rows]
    run_rounds(runners, args.rounds, args.iters)

    print(f"# fwd+bwd, train mode, input {tuple(x.shape)} {args.dtype}, "
          f"{jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}, "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"# {cpu_line()}; {args.rounds} rounds x {args.iters} iters, interleaved: medians over rounds, "
          "vs conv = median of the per-round ratios; spread = (max - min) / median of the round times")
    header = (f"{'module':<32}{'K':>3}{'fwd+bwd ms':>12}{'vs conv':>9}{'spread':>8}{'floor ms':>10}{'xla ms':>8}"
              f"{'peak MiB':>10}{'GFLOP':>8}{'params':>11}")
    print(header)
    print("-" * len(header))
    for (name, k, block), runner in zip(rows, runners):
        sec = float(np.median(runner.times))
        spread = (max(runner.times) - min(runner.times)) / sec
        print(f"{name:<32}{k:>3}{sec * 1e3:>12.1f}{median_ratio(runner, runners[0]):>9.2f}{spread:>8.0%}"
              f"{block.floor / bandwidth * 1e3:>10.1f}{block.traffic / bandwidth * 1e3:>8.0f}"
              f"{block.peak / 2**20:>10.1f}{block.flops / 1e9:>8.2f}{block.n_params:>11,}")
    if args.torch:
        trows = torch_rows(args)
        print(f"\n# PyTorch {__import__('torch').__version__} (CPU, {__import__('torch').get_num_threads()} "
              "threads), same input (NCHW), float32, train mode")
        print(f"{'module':<32}{'K':>3}{'fwd+bwd ms':>12}{'vs conv':>9}")
        for name, k, sec in trows:
            print(f"{name:<32}{k:>3}{sec * 1e3:>12.1f}{sec / trows[0][2]:>9.2f}")


if __name__ == "__main__":
    main()
