"""Time and memory of k-reciprocal re-ranking: the matrix version vs ``re_ranking_features``.

Cases (query x gallery, feature dim; random clustered float32 features, one
identity centre per ~20 images, unit-variance noise around centres of norm ~sqrt(dim)):

    market-matrix     3,368 x 15,913  2048-d  re_ranking(compute_distance(q, g), (q, q), (g, g))
    market-features   3,368 x 15,913  2048-d  re_ranking_features(q, g)
    msmt-512         11,659 x 82,161   512-d  re_ranking_features(q, g)
    msmt-2048        11,659 x 82,161  2048-d  re_ranking_features(q, g)   (g_g alone would be 27 GB)

Each case runs in its own subprocess, twice: once timed (its ``ru_maxrss`` is the
peak RSS of the whole process, features included, so every case's figure is
clean), once under tracemalloc (peak of the allocations made during the call,
which NumPy reports; tracing slows the Python-level loops, so it is not timed).
``--no-trace`` skips the second run.  When both Market cases run, their results
are compared bit for bit.

    python benchmarks/rerank.py                               # all cases
    python benchmarks/rerank.py --cases market-matrix market-features
    python benchmarks/rerank.py --quick                       # every size x 0.1
    python benchmarks/rerank.py --cases msmt-2048 --no-trace --progress
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

CASES = {  # name: (num_query, num_gallery, dim, version)
    "market-matrix": (3368, 15913, 2048, "matrix"),
    "market-features": (3368, 15913, 2048, "features"),
    "msmt-512": (11659, 82161, 512, "features"),
    "msmt-2048": (11659, 82161, 2048, "features"),
}
IMAGES_PER_ID = 20


def clustered_features(n_q: int, n_g: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 features around (n_q + n_g) / IMAGES_PER_ID identity centres, built in chunks
    so that generating them never holds a float64 copy (the RSS figure stays honest)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, (n_q + n_g) // IMAGES_PER_ID)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)

    def draw(n: int) -> np.ndarray:
        out = np.empty((n, dim), np.float32)
        for s in range(0, n, 4096):
            e = min(n, s + 4096)
            out[s:e] = centres[rng.integers(0, n_ids, e - s)] + rng.standard_normal((e - s, dim), dtype=np.float32)
        return out

    return draw(n_q), draw(n_g)


def _mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def run_case(name: str, scale: float, trace: bool, progress: bool, save: str | None) -> dict:
    """One case in this process: build the features, call the version once; timing or tracing."""
    from stra_jax.evaluation import compute_distance, re_ranking, re_ranking_features

    n_q, n_g, dim, version = CASES[name]
    n_q, n_g = max(1, round(n_q * scale)), max(1, round(n_g * scale))
    q, g = clustered_features(n_q, n_g, dim)
    if version == "matrix":
        def call():
            return re_ranking(compute_distance(q, g), compute_distance(q, q), compute_distance(g, g))
    else:
        def call():
            return re_ranking_features(q, g, progress=progress)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        out = call()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return dict(traced_peak=peak)
    start = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if save:
        np.save(save, out)
    return dict(n_q=n_q, n_g=n_g, dim=dim, version=version, seconds=seconds, rss=rss, rss_before=rss_before,
                features=q.nbytes + g.nbytes, output=out.nbytes)


def _subprocess(name: str, args: argparse.Namespace, trace: bool, save: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--run-case", name, "--scale", str(args.scale)]
    cmd += ["--trace-run"] if trace else []
    cmd += ["--progress"] if args.progress and not trace else []
    cmd += ["--save", save] if save else []
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the query and gallery sizes")
    parser.add_argument("--quick", action="store_true", help="--scale 0.1")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run of each case")
    parser.add_argument("--progress", action="store_true", help="re_ranking_features prints its progress")
    parser.add_argument("--run-case", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--trace-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.scale = 0.1
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.scale, args.trace_run, args.progress, args.save)))
        return

    import numpy
    import scipy
    print(f"# k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3), clustered float32 features, scale {args.scale:g}; "
          f"numpy {numpy.__version__}, scipy {scipy.__version__}, {os.cpu_count()} CPUs", flush=True)
    rows, saved = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            save = os.path.join(tmp, f"{name}.npy") if name.startswith("market") else None
            print(f"{name}: running ...", flush=True)
            r = _subprocess(name, args, trace=False, save=save)
            r["traced_peak"] = None if args.no_trace else _subprocess(name, args, trace=True, save=None)["traced_peak"]
            rows.append((name, r))
            saved[name] = save
            print(f"{name}: {r['seconds']:.1f} s", flush=True)
        same = None
        if saved.get("market-matrix") and saved.get("market-features"):
            same = bool(np.array_equal(np.load(saved["market-matrix"]), np.load(saved["market-features"])))

    print("\nseconds: one call (features -> re-ranked distances, the distance matrices included);"
          "\ntraced: tracemalloc peak during the call; RSS: ru_maxrss of the case's process"
          " (features and Python included), 'before': ru_maxrss once the features exist.\n")
    header = (f"{'case':<16} {'version':<9} {'query x gallery':>17} {'dim':>5} {'seconds':>8} {'traced MiB':>11} "
              f"{'RSS MiB':>8} {'before':>7} {'output MiB':>10}")
    print(header)
    print("-" * len(header))
    for name, r in rows:
        traced = "-" if r["traced_peak"] is None else f"{_mib(r['traced_peak']):,.0f}"
        print(f"{name:<16} {r['version']:<9} {r['n_q']:>7,} x {r['n_g']:>7,} {r['dim']:>5} {r['seconds']:>8.1f} "
              f"{traced:>11} {_mib(r['rss']):>8,.0f} {_mib(r['rss_before']):>7,.0f} {_mib(r['output']):>10,.0f}")
    if same is not None:
        print(f"\nmarket-matrix and market-features results bit-identical: {same}")


if __name__ == "__main__":
    main()
