"""Forward+backward time and memory of StRAttention vs the 3x3 conv it replaces.

Default shape: ResNet-50's last stage as StRA-ResNet-50 runs it at 256x128 input
(batch 32, 16x8 nodes, C 512). Train mode (batch statistics), jitted, parameters
and input both differentiated. Peak memory is XLA's compiled estimate
(arguments + outputs + temporaries) from ``memory_analysis``; FLOPs are XLA's
``cost_analysis`` of the same forward+backward program.

    python benchmarks/attention.py                      # the table for K 3/5/7
    python benchmarks/attention.py --batch 8 --iters 3  # quicker
    python benchmarks/attention.py --implementations shift patches --iters 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from stra_jax import StRAttention, total_diversity_loss  # noqa: E402


class Conv3x3(nn.Module):
    """The bottleneck's 3x3 conv (no bias, as in torchvision) -- the baseline."""

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train):
        del train
        return nn.Conv(self.features, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)


def measure(module, x, iters):
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
    flops = (cost or {}).get("flops", float("nan"))

    jax.block_until_ready(compiled(params, x))  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - start)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    return float(np.median(times)), peak, flops, n_params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--implementations", nargs="+", choices=["auto", "fused", "shift", "patches"],
                        default=["fused", "shift"], help="local-attention neighbour gathering to time")
    args = parser.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    x = jax.random.normal(jax.random.key(0),
                          (args.batch, args.height, args.width, args.channels)).astype(dtype)
    rows = [("conv3x3", 3, *measure(Conv3x3(args.channels, dtype=dtype), x, args.iters))]
    for impl in args.implementations:
        for k in args.kernels:
            for mode_on, name in ((True, "StRA"), (False, "local only")):
                block = StRAttention(heads=args.heads, kernel_size=k, mode_attention=mode_on,
                                     implementation=impl, dtype=dtype)
                rows.append((f"{name} G{args.heads} {impl}", k, *measure(block, x, args.iters)))

    print(f"# fwd+bwd, train mode, input {tuple(x.shape)} {args.dtype}, "
          f"{jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}")
    header = f"{'module':<26}{'K':>3}{'fwd+bwd ms':>12}{'peak MiB':>10}{'GFLOP':>9}{'params':>10}"
    print(header)
    print("-" * len(header))
    for name, k, sec, peak, flops, n in rows:
        print(f"{name:<26}{k:>3}{sec * 1e3:>12.1f}{peak / 2**20:>10.1f}{flops / 1e9:>9.2f}{n:>10,}")


if __name__ == "__main__":
    main()
