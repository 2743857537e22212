"""StRA-ResNet-50 vs ResNet-50 with the same last stride and head: train step and eval forward.

Both at last stride 1 with the authors' head (GAP -> 1x1 conv 2048->512 -> BN ->
classifier, 751 ids). The only difference between the two networks is the last
stage's 3x3 convs, which StRA replaces; the train ratio's floor is therefore 1
minus the share of those convs in the ResNet step (about 9% on this project's CPU,
so about 0.91). ``--floor`` measures that floor: it adds a ResNet-50 whose
last-stage 3x3 convs are the identity (the cost of a free replacement).

``--mode train`` (default): jitted forward + backward (CE + 0.1 x L_d) + Adam
update, state donated, as ``training/step.py`` runs it (batch 8). ``--mode eval``:
the jitted evaluation forward pass the evaluators run (``train=False``, running BN
statistics, the ``embedding`` output, ``evaluation.features.forward_with_flip``;
batch 32). ``--mode both``: both tables.

Every network is compiled (and run once) first; then ``--rounds`` rounds each time
every network ``--iters`` times, in a rotating order, so machine drift hits all
alike. Reported: the median over rounds of each network's per-round median, and
the median of the per-round ratios (vs ResNet-50; JAX over PyTorch). ``--torch``
adds the authors' PyTorch networks (``tests/torch_reference.py``, the ResNet-50
given the same last stride and head) to the same rounds: "JAX/torch" then says
whether the port is relatively slower for StRA than for the plain ResNet-50.

    python benchmarks/network_step.py                       # train, batch 8, 256x128
    python benchmarks/network_step.py --mode both --torch   # + eval, + PyTorch columns
    python benchmarks/network_step.py --dtype float32 bfloat16 --implementations fused shift
    python benchmarks/network_step.py --batch 2 --iters 1 --rounds 1 --height 64 --width 32  # smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from stra_jax.evaluation.features import forward_with_flip  # noqa: E402
from stra_jax.layers import checks, total_diversity_loss  # noqa: E402
from stra_jax.layers.conv import resolve_grouped  # noqa: E402
from stra_jax.models import create_model, init_variables  # noqa: E402

NUM_CLASSES = 751
DEFAULT_BATCH = {"train": 8, "eval": 32}
LABELS = {"train": "train step (fwd+bwd (CE + 0.1 L_d)+Adam)",
          "eval": "eval forward (train=False, running BN statistics, embedding)"}


@dataclasses.dataclass
class Runner:
    """One network in the rounds: ``call()`` runs it once and blocks until done."""

    name: str
    network: str          # "resnet50" or "stra_resnet50": pairs JAX rows with PyTorch ones
    call: Callable[[], None]
    compile_s: float = 0.0
    times: list[float] = dataclasses.field(default_factory=list)  # per-round medians, seconds


def cpu_line() -> str:
    """The host CPU: /proc/cpuinfo "model name", cores available, whether avx512f is in the flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return f"{model}, {len(os.sched_getaffinity(0))} cores, avx512f {'yes' if 'avx512f' in flags else 'no'}"


def network_of(name: str) -> str:
    """Which network a row is (pairs JAX rows with PyTorch ones; the floor has no pair)."""
    return "stra_resnet50" if "stra" in name else "floor" if "identity" in name else "resnet50"


def jax_train_runner(name: str, model: Any, images: jax.Array, labels: jax.Array) -> Runner:
    """The jitted, donated train step of ``model``, compiled and run once."""
    variables = init_variables(model, jax.random.key(0))
    tx = optax.adam(3e-4)
    params, stats = variables["params"], variables["batch_stats"]

    def step(params, stats, opt_state, images, labels):
        def loss_fn(p):
            out, state = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                                     mutable=["batch_stats", "losses"])
            ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
            return ce + 0.1 * jnp.mean(total_diversity_loss(state.get("losses", {}))), state["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    state = [(params, stats, tx.init(params))]  # replaced by every call: the old one is donated
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*state[0], images, labels).compile()
    compile_s = time.perf_counter() - start

    def call() -> None:
        state[0] = compiled(*state[0], images, labels)[:3]
        jax.block_until_ready(state[0])

    call()  # warm-up
    return Runner(name, network_of(name), call, compile_s)


def jax_eval_runner(name: str, model: Any, images: jax.Array) -> Runner:
    """The jitted evaluation forward pass (the evaluators' call), compiled and run once."""
    variables = init_variables(model, jax.random.key(0))
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    forward = jax.jit(lambda v, x: forward_with_flip(model, v, x, output="embedding")[0])
    start = time.perf_counter()
    compiled = forward.lower(variables, images).compile()
    compile_s = time.perf_counter() - start

    def call() -> None:
        jax.block_until_ready(compiled(variables, images))

    call()
    return Runner(name, network_of(name), call, compile_s)


def torch_runners(mode: str, dtype: str, batch: int, height: int, width: int) -> tuple[list[Runner], str]:
    """The authors' two networks (tests/torch_reference.py) as ``Runner`` s, warmed up,
    and a line saying where they run.

    ResNet-50 gets last stride 1 and StRA-ResNet-50's head (GAP -> 1x1 conv -> BN
    -> classifier), as the JAX one has. bfloat16: ``torch.autocast``. On the
    GPU when JAX runs on one and this torch has CUDA, else on the CPU with one
    thread per available core.
    """
    import torch
    import torch.nn.functional as F

    from tests import torch_reference as tr

    class ResNet50SameHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tr.resnet50(NUM_CLASSES, last_stride=1)
            del self.net.fc  # replaced by the ReID head below
            self.global_avg_pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                                                       torch.nn.Conv2d(2048, 512, 1, bias=False),
                                                       torch.nn.BatchNorm2d(512))
            self.classifier = torch.nn.Linear(512, NUM_CLASSES)

        def forward(self, x):
            emb = torch.flatten(self.global_avg_pool(self.net.layer4(self.net._trunk(x))), 1)
            return {"embedding": emb, "logits": self.classifier(emb)}

    cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, height, width, device=device)
    y = torch.arange(batch, device=device) % NUM_CLASSES

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    runners = []
    for network, model in (("resnet50", ResNet50SameHead()), ("stra_resnet50", tr.stra_resnet50(NUM_CLASSES))):
        model = model.to(device)
        if mode == "train":
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=3e-4)

            def call(model=model, opt=opt) -> None:
                opt.zero_grad(set_to_none=True)
                with autocast():
                    out = model(x)
                    loss = F.cross_entropy(out["logits"].float(), y)
                    if "diversity" in out:  # L_d: StRA's only
                        loss = loss + 0.1 * out["diversity"].float().mean()
                loss.backward()
                opt.step()
                sync()
        else:
            model.eval()

            def call(model=model) -> None:
                with torch.no_grad(), autocast():
                    model(x)["embedding"]
                sync()

        call()  # warm-up
        runners.append(Runner(f"torch {network}", network, call))
    where = (f"torch {torch.__version__} on {device.type} ({torch.get_num_threads()} threads)"
             + (", autocast bfloat16" if dtype == "bfloat16" else ""))
    return runners, where


def run_rounds(runners: list[Runner], rounds: int, iters: int) -> None:
    """``rounds`` rounds, each timing every runner ``iters`` times (order rotated per round)."""
    for r in range(rounds):
        shift = r % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                runner.call()
                times.append(time.perf_counter() - start)
            runner.times.append(float(np.median(times)))


def median_ratio(a: Runner, b: Runner) -> float:
    """Median over rounds of a's time / b's time in the same round."""
    return float(np.median(np.array(a.times) / np.array(b.times)))


def floor_model(model: Any) -> Any:
    """``model`` (a ResNet) with its last stage's 3x3 convs replaced by the identity:
    what the network costs if the replacement of those convs were free."""
    from stra_jax.models.resnet import Bottleneck

    class IdentitySpatial(Bottleneck):
        def spatial(self, x, *, train):
            return x

    base = type(model)

    class Floor(base):
        def make_block(self, stage, index, planes, strides):
            if stage != 3:
                return base.make_block(self, stage, index, planes, strides)
            return IdentitySpatial(planes, strides=strides, downsample=index == 0, name=f"layer4_{index}",
                                   dtype=self.dtype, param_dtype=self.param_dtype)

    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
              if f.init and f.name not in ("parent", "name")}
    return Floor(**fields)


def table(args, mode: str, dtype: str) -> list[dict[str, Any]]:
    """Compile, run the rounds and print one table; returns its rows."""
    batch = args.batch or DEFAULT_BATCH[mode]
    images = jax.random.normal(jax.random.key(1), (batch, args.height, args.width, 3))
    labels = jnp.arange(batch) % NUM_CLASSES
    models = [("resnet50 (last stride 1)",
               create_model("resnet50", num_classes=NUM_CLASSES, last_stride=1, embedding_dim=512, dtype=dtype))]
    for impl in args.implementations:
        for grouped in args.grouped_convs:
            models.append((f"stra_resnet50 {impl}/{resolve_grouped(grouped)}",
                           create_model("stra_resnet50", num_classes=NUM_CLASSES, attention_implementation=impl,
                                        attention_grouped_conv=grouped, dtype=dtype)))
    if args.floor:
        models.append(("resnet50, last-stage 3x3 = identity", floor_model(models[0][1])))
    runners = [jax_train_runner(name, model, images, labels) if mode == "train" else
               jax_eval_runner(name, model, images) for name, model in models]
    torch_by_net, torch_where = {}, ""
    if args.torch:
        torch_list, torch_where = torch_runners(mode, dtype, batch, args.height, args.width)
        torch_by_net = {runner.network: runner for runner in torch_list}
    run_rounds(runners + list(torch_by_net.values()), args.rounds, args.iters)

    base = runners[0]
    device = jax.devices()[0]
    print(f"\n# {LABELS[mode]}, batch {batch} at {args.height}x{args.width}, {dtype}, "
          f"{device.platform} x{jax.device_count()} ({device.device_kind}), jax {jax.__version__}")
    print(f"# {args.rounds} rounds x {args.iters} iters, interleaved: medians over rounds; "
          f"spread = (max - min) / median of the round times")
    if torch_by_net:
        print(f"# {torch_where}; JAX/torch = median of the per-round ratios")
    header = f"{'network':<34}{'ms':>9}{'img/s':>8}{'vs resnet50':>13}{'spread':>8}{'compile s':>11}"
    if torch_by_net:
        header += f"{'torch ms':>10}{'torch vs rn50':>15}{'JAX/torch':>11}"
    print(header)
    print("-" * len(header))
    rows = []
    for runner in runners:
        med = float(np.median(runner.times))
        row = {"mode": mode, "dtype": dtype, "batch": batch, "network": runner.name, "ms": med * 1e3,
               "img_per_s": batch / med, "vs_resnet50": median_ratio(runner, base),
               "spread": (max(runner.times) - min(runner.times)) / med, "compile_s": runner.compile_s}
        line = (f"{runner.name:<34}{row['ms']:>9.1f}{row['img_per_s']:>8.1f}{row['vs_resnet50']:>13.2f}"
                f"{row['spread']:>7.0%} {row['compile_s']:>10.1f}")
        partner = torch_by_net.get(runner.network)
        if partner is not None:
            row.update(torch_ms=float(np.median(partner.times)) * 1e3,
                       torch_vs_resnet50=median_ratio(partner, torch_by_net["resnet50"]),
                       jax_over_torch=median_ratio(runner, partner))
            line += f"{row['torch_ms']:>10.1f}{row['torch_vs_resnet50']:>15.2f}{row['jax_over_torch']:>11.2f}"
        print(line)
        rows.append(row)
    if torch_by_net:
        stra = [r["jax_over_torch"] for r in rows[1:] if "jax_over_torch" in r]
        verdict = "no higher" if min(stra) <= rows[0]["jax_over_torch"] else "higher"
        print(f"JAX/torch: stra_resnet50 {min(stra):.2f} (best formulation) vs resnet50 "
              f"{rows[0]['jax_over_torch']:.2f}: {verdict} for StRA")
    sys.stdout.flush()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="train", choices=["train", "eval", "both"])
    parser.add_argument("--batch", type=int, default=None, help="default: 8 (train), 32 (eval)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=2, help="timed calls per network per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--implementations", nargs="+", default=["fused"],
                        choices=list(checks.IMPLEMENTATIONS))
    parser.add_argument("--grouped-convs", nargs="+", default=["auto"], choices=list(checks.GROUPED_CONVS),
                        help="grouped 1x1 convolution formulations of StRA (auto: this backend's pick)")
    parser.add_argument("--torch", action="store_true", help="also time the authors' PyTorch networks")
    parser.add_argument("--floor", action="store_true",
                        help="also time ResNet-50 with its last-stage 3x3 convs removed (the ratio's floor)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for name in ("batch", "iters", "rounds", "height", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name}={value}: expected a positive integer")

    print(f"# host CPU: {cpu_line()}")
    modes = ["train", "eval"] if args.mode == "both" else [args.mode]
    rows = []
    for mode in modes:
        for dtype in args.dtype:
            rows += table(args, mode, dtype)
            if args.json:  # after every table: a run stopped by a timeout keeps the tables it finished
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
