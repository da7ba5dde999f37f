"""k-center greedy: coreselect against the common approach, time and peak memory, one run.

The common approach (as in popular active-learning code, e.g. the DeepAL-style k-center)
recomputes a full distance matrix between the pool and the chosen set at every step,
``D = ||x||^2 - 2 X C^T + ||c||^2`` (n x m, m the number of chosen rows), then takes the
minimum over the chosen rows and the argmax over the pool: O(n m d) time and n x m memory per
step. Its re-implementation lives here only, faithfully but with a fast float32 GEMM. A second
comparator, the "textbook incremental" one (scikit-learn ``pairwise_distances`` to the new
center only, n x 1 per step, as in Google's active-learning kcenter_greedy), is also timed.

Running the common approach for 1,000 steps at n = 1,000,000 would take hours, so its steps
are timed at a few set sizes m and the whole run is extrapolated with a fit
``t(m) = a + b m`` summed over m = 1..size; its peak memory is measured at the largest m
timed and extrapolated as ``n * size * 8`` bytes for the distance matrix at the last step.
The table says which figures are measured and which are extrapolated.

Run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python
benchmarks/bench_kcenter.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from coreselect.baselines import k_center_greedy


def blobs(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """A float32 Gaussian mixture (k components), generated in blocks."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(k, d)).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        X[a:b] = means[rng.integers(k, size=b - a)]
        X[a:b] += rng.standard_normal((b - a, d), dtype=np.float32)
    return X


# ----------------------------------------------------------------- the common approach
def naive_step(X: np.ndarray, xnorm: np.ndarray, chosen: list[int]) -> int:
    """One step of the common approach: a full (n x m) distance matrix, min, argmax."""
    C = X[chosen]
    D = X @ C.T  # n x m, float32
    D *= -2.0
    D += xnorm[:, None]
    D += np.einsum("ij,ij->i", C, C)[None, :]
    np.maximum(D, 0.0, out=D)
    np.sqrt(D, out=D)
    mind = D.min(axis=1)
    return int(np.argmax(mind))


def naive_kcenter(X: np.ndarray, size: int, first: int) -> list[int]:
    xnorm = np.einsum("ij,ij->i", X, X)
    chosen = [first]
    for _ in range(size - 1):
        chosen.append(naive_step(X, xnorm, chosen))
    return chosen


def time_naive_steps(X: np.ndarray, ms: list[int], rng) -> tuple[list[float], list[int]]:
    """Seconds (best of 2) and traced peak bytes of one naive step with m chosen rows."""
    xnorm = np.einsum("ij,ij->i", X, X)
    n = X.shape[0]
    times, peaks = [], []
    for m in ms:
        chosen = rng.choice(n, size=m, replace=False).tolist()
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            naive_step(X, xnorm, chosen)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
        tracemalloc.start()
        naive_step(X, xnorm, chosen)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return times, peaks


def incremental_step_time(X: np.ndarray, steps: int) -> float:
    """Seconds per step of the textbook incremental approach (sklearn, n x 1 per step)."""
    from sklearn.metrics import pairwise_distances

    mind = None
    j = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        dist = pairwise_distances(X, X[[j]])
        mind = dist[:, 0] if mind is None else np.minimum(mind, dist[:, 0])
        j = int(np.argmax(mind))
    return (time.perf_counter() - t0) / steps


def ours_peak(X: np.ndarray, steps: int) -> int:
    tracemalloc.start()
    k_center_greedy(X, steps, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--naive-m", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--check-steps", type=int, default=30,
                    help="steps of the naive run compared with ours, at the smallest n")
    ap.add_argument("--validate", type=int, default=0,
                    help="run the common approach for this many steps at the smallest n and "
                         "compare the time with the extrapolation")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads for every contender (1: no contention on a busy machine)")
    ap.add_argument("--quick", action="store_true", help="n=20,000 and size=200")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.naive_m = [20_000], 200, [1, 32, 128]

    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(args.threads)
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
            for i in threadpool_info()]
    print(f"BLAS: {blas}")
    print(f"load average before: {os.getloadavg()}")
    rng = np.random.default_rng(0)
    rows = []
    for n in args.n:
        X = blobs(n, args.d, 100, seed=n)
        # agreement on the first steps (the naive sequence from the same first row)
        if n == min(args.n) and args.check_steps:
            ours = k_center_greedy(X, args.check_steps, seed=1).indices.tolist()
            same = naive_kcenter(X, args.check_steps, ours[0]) == ours
            print(f"n={n}: first {args.check_steps} picks identical to the common approach: "
                  f"{same}")
        t0 = time.perf_counter()
        sel = k_center_greedy(X, args.size, seed=0)
        t_ours = time.perf_counter() - t0
        peak_ours = ours_peak(X, min(args.size, 50))
        times, peaks = time_naive_steps(X, args.naive_m, rng)
        ms = np.array(args.naive_m, dtype=float)
        a, b = np.polynomial.polynomial.polyfit(ms, times, 1)
        m_all = np.arange(1, args.size + 1, dtype=float)
        t_naive = float(np.sum(np.maximum(a + b * m_all, min(times))))
        pa, pb = np.polynomial.polynomial.polyfit(ms, np.array(peaks, dtype=float), 1)
        peak_naive = pa + pb * args.size  # the n x m matrix at the last step dominates
        t_inc = incremental_step_time(X, 5) * args.size
        if args.validate and n == min(args.n):
            t0 = time.perf_counter()
            naive_kcenter(X, args.validate, 0)
            t_meas = time.perf_counter() - t0
            m_v = np.arange(1, args.validate, dtype=float)
            t_pred = float(np.sum(np.maximum(a + b * m_v, min(times))))
            print(f"n={n}: common approach, {args.validate} picks: measured {t_meas:.1f} s, "
                  f"extrapolation {t_pred:.1f} s (ratio {t_meas / t_pred:.2f})")
        rows.append((n, t_ours, peak_ours, t_naive, peak_naive, peaks, t_inc,
                     sel.diagnostics["radius"], times))
        del X
    print(f"\nk-center greedy, d={args.d}, size={args.size}, float32 Gaussian mixture "
          "(100 components)")
    head = (f"{'n':>9} | {'ours s':>8} | {'ours peak MB':>12} | {'common s (extrap)':>17} | "
            f"{'common peak MB (extrap)':>23} | {'speed-up':>8} | {'memory ratio':>12} | "
            f"{'sklearn-incr s (extrap)':>23} | {'vs incr':>7}")
    print(head)
    print("-" * len(head))
    for n, t_o, p_o, t_n, p_n, _, t_i, _, _ in rows:
        print(f"{n:>9} | {t_o:8.1f} | {p_o / 2**20:12.1f} | {t_n:17.1f} | "
              f"{p_n / 2**20:23.0f} | {t_n / t_o:7.1f}x | {p_n / p_o:11.0f}x | "
              f"{t_i:23.1f} | {t_i / t_o:6.1f}x")
    print("\ncommon approach, measured one step at m =", args.naive_m, "chosen rows:")
    for n, _, _, _, _, peaks, _, _, times in rows:
        print(f"  n={n}: seconds {[round(t, 4) for t in times]}, "
              f"peak MB {[round(p / 2**20) for p in peaks]}")
    print("ours: full run measured (time without tracing; peak traced over a 50-step run, "
          "the state does not grow with steps); final radius:",
          [round(r[7], 3) for r in rows])
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
