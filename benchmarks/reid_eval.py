"""Time and memory of ``evaluate_rank`` vs a plain per-query loop at Market-1501 / MSMT17 size.

Random float32 distance matrices with random pids / camera ids at the two
benchmarks' sizes (query x gallery, identities, cameras):

    Market-1501   3,368 x 15,913    751 ids    6 cams
    MSMT17       11,659 x 82,161  3,060 ids   15 cams   (distmat alone: 3.8 GB)

Random distances are the slow case for the evaluation: the last positive sits near
the end of the ranking, and float32 values tie often enough to exercise the exact
tie path.  "Peak extra memory" is tracemalloc's peak of traced allocations during
the call (NumPy reports its buffers to tracemalloc), excluding the inputs; it is
measured in a separate run from the timing, since tracing adds overhead.  The
plain loop is the protocol one query at a time (stable argsort per query, as
torchreid's Python ``eval_market1501`` does, but without its upfront full-matrix
argsort, which alone would need 7.6 GB of int64 at MSMT17 size); it is timed on
``--loop-queries`` queries and extrapolated linearly to all of them.  Both
implementations are checked to agree on those queries.

    python benchmarks/reid_eval.py                    # Market-1501 and MSMT17
    python benchmarks/reid_eval.py --skip-msmt
    python benchmarks/reid_eval.py --scale 0.25       # every size (and #ids) x 0.25
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from stra_jax.evaluation.reid import evaluate_rank  # noqa: E402

SIZES = {"Market-1501": (3368, 15913, 751, 6), "MSMT17": (11659, 82161, 3060, 15)}


def plain_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Reference protocol, one query at a time (CMC padded with 1 past the kept items)."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = g_pids[order][keep] == q_pids[i]
        if not matches.any():
            continue
        cmc = np.minimum(np.cumsum(matches), 1)[:max_rank]
        cmcs.append(np.pad(cmc, (0, max_rank - len(cmc)), constant_values=1))
        pos = np.flatnonzero(matches) + 1
        aps.append(np.mean(np.arange(1, len(pos) + 1) / pos))
        inps.append(len(pos) / pos[-1])
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps))


def make_problem(n_q, n_g, n_ids, n_cams, seed=0):
    rng = np.random.default_rng(seed)
    distmat = rng.random((n_q, n_g), dtype=np.float32)
    q_pids, g_pids = rng.integers(0, n_ids, n_q), rng.integers(0, n_ids, n_g)
    q_cams, g_cams = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    return distmat, q_pids, g_pids, q_cams, g_cams


def timed(fn, *args, repeat=1, **kw):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t0)
    return best, out


def traced_peak(fn, *args, **kw):
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn(*args, **kw)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-msmt", action="store_true", help="only the Market-1501 size")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply query/gallery sizes and #ids")
    parser.add_argument("--loop-queries", type=int, default=500,
                        help="queries the plain loop runs on (extrapolated to all); <=0: all queries")
    parser.add_argument("--repeat", type=int, default=3, help="evaluate_rank timing: best of N")
    args = parser.parse_args()

    rows = []
    for name, (n_q, n_g, n_ids, n_cams) in SIZES.items():
        if name == "MSMT17" and args.skip_msmt:
            continue
        n_q, n_g, n_ids = (max(1, round(v * args.scale)) for v in (n_q, n_g, n_ids))
        print(f"{name}: building {n_q} x {n_g} float32 distmat "
              f"({n_q * n_g * 4 / 2**30:.2f} GiB), {n_ids} ids, {n_cams} cams ...", flush=True)
        problem = make_problem(n_q, n_g, n_ids, n_cams)
        t_fast, (cmc, m_ap, m_inp) = timed(evaluate_rank, *problem, return_minp=True, repeat=args.repeat)
        mem_fast = traced_peak(evaluate_rank, *problem, return_minp=True)

        n_loop = n_q if args.loop_queries <= 0 else min(n_q, args.loop_queries)
        distmat, q_pids, g_pids, q_cams, g_cams = problem
        sub = (distmat[:n_loop], q_pids[:n_loop], g_pids, q_cams[:n_loop], g_cams)
        t_loop, ref = timed(plain_loop, *sub)
        mem_loop = traced_peak(plain_loop, *sub)
        got = evaluate_rank(*sub, return_minp=True)
        diff = max(np.abs(got[0] - ref[0]).max(), abs(got[1] - ref[1]), abs(got[2] - ref[2]))
        assert diff < 1e-9, f"evaluate_rank and the plain loop disagree by {diff}"
        rows.append((name, f"{n_q}x{n_g}", t_fast, mem_fast, t_loop * n_q / n_loop, n_loop, mem_loop,
                     m_ap, cmc[0], m_inp, diff))
        del problem, distmat, sub

    print("\nPeak extra memory = tracemalloc peak during the call (inputs excluded).")
    print("loop time is measured on `loop q` queries and scaled linearly to all queries.\n")
    header = (f"{'dataset':<12} {'size':>12} {'evaluate_rank':>14} {'peak MiB':>9} {'loop (extrap.)':>15} "
              f"{'loop q':>7} {'loop MiB':>9} {'speedup':>8}  {'mAP':>7} {'rank1':>7} {'mINP':>7} {'|diff|':>8}")
    print(header)
    print("-" * len(header))
    for name, size, t_fast, mem_fast, t_loop, n_loop, mem_loop, m_ap, r1, m_inp, diff in rows:
        print(f"{name:<12} {size:>12} {t_fast:>13.3f}s {mem_fast / 2**20:>9.1f} {t_loop:>14.2f}s {n_loop:>7} "
              f"{mem_loop / 2**20:>9.1f} {t_loop / t_fast:>7.0f}x  {m_ap:>7.4f} {r1:>7.4f} {m_inp:>7.4f} "
              f"{diff:>8.1e}")


if __name__ == "__main__":
    main()
