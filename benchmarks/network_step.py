"""One training step of StRA-ResNet-50 vs ResNet-50 with the same last stride and head.

Both at last stride 1 with the authors' head (GAP -> 1x1 conv 2048->512 -> BN ->
classifier, 751 ids), train mode: jitted forward + backward (CE + 0.1 x L_d) +
Adam update, state donated, as ``training/step.py`` runs it. The only
difference between the two networks is the last stage's 3x3 convs, which StRA
replaces; the ratio's floor is therefore 1 minus the share of those convs in
the ResNet step (about 9% on this project's CPU, so about 0.91).

    python benchmarks/network_step.py                       # batch 8, 256x128
    python benchmarks/network_step.py --batch 4 --iters 2   # quicker
    python benchmarks/network_step.py --implementations fused shift
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from stra_jax.layers import total_diversity_loss  # noqa: E402
from stra_jax.models import create_model, init_variables  # noqa: E402


def time_step(model, batch, iters):
    variables = init_variables(model, jax.random.key(0))
    tx = optax.adam(3e-4)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    images, labels = batch

    def step(params, stats, opt_state, images, labels):
        def loss_fn(p):
            out, state = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                                     mutable=["batch_stats", "losses"])
            ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
            return ce + 0.1 * jnp.mean(total_diversity_loss(state.get("losses", {}))), state["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, stats, opt_state, images, labels).compile()
    compile_s = time.perf_counter() - start
    state = (params, stats, opt_state)
    state = compiled(*state, images, labels)[:3]  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        state = compiled(*state, images, labels)[:3]
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), compile_s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--implementations", nargs="+", default=["fused"],
                        choices=["auto", "fused", "shift", "patches"])
    parser.add_argument("--grouped-conv", default="auto", choices=["auto", "einsum", "conv"])
    args = parser.parse_args(argv)

    images = jax.random.normal(jax.random.key(1), (args.batch, args.height, args.width, 3))
    labels = jnp.arange(args.batch) % 751
    common = dict(num_classes=751, last_stride=1, embedding_dim=512)
    rows = []
    base, base_compile = time_step(create_model("resnet50", **common), (images, labels), args.iters)
    rows.append(("resnet50 (last stride 1)", base, base_compile))
    for impl in args.implementations:
        model = create_model("stra_resnet50", num_classes=751, attention_implementation=impl,
                             attention_grouped_conv=args.grouped_conv)
        sec, comp = time_step(model, (images, labels), args.iters)
        rows.append((f"stra_resnet50 {impl}/{args.grouped_conv}", sec, comp))

    print(f"# train step (fwd+bwd+Adam), batch {args.batch} at {args.height}x{args.width}, "
          f"{jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}")
    header = f"{'network':<34}{'step ms':>10}{'img/s':>8}{'vs resnet50':>13}{'compile s':>11}"
    print(header)
    print("-" * len(header))
    for name, sec, comp in rows:
        print(f"{name:<34}{sec * 1e3:>10.0f}{args.batch / sec:>8.1f}{sec / base:>13.2f}{comp:>11.0f}")


if __name__ == "__main__":
    main()
