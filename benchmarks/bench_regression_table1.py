"""Table 1 of the paper, re-measured: time to compute the sampling probabilities.

Cases (``--cases``):

- ``square``: an n x n standard normal matrix (``--sizes``, default 5000 10000), k = 0.2 n:
  ours (Algorithm 2's probabilities: k-median on a 128-dimensional Gaussian projection of the
  rows, exact distances in the original space), k-medoids by FasterPAM (``kmedoids`` package)
  including its n x n distance matrix, and exact leverage scores by thin QR.
- ``tall``: 1,000,000 x 128, k = 1000: ours, one nearest-center assignment pass (the floor of
  any clustering method), exact leverage scores by thin QR and by a Cholesky factor of the
  Gram matrix, and sketched leverage scores (CountSketch + QR).
- ``wide``: 100,000 x 2,000, k = 1000: ours (projected), leverage by thin QR, Cholesky and
  sketch (CountSketch + QR + a Johnson-Lindenstrauss matrix with 8 ln n columns).

"Ours" is ``regression_sample(A, oracle, 1, n_clusters=k, use_centers=False)`` with
``zeta=inf`` (the paper's setting) and the default ``mix="auto"``: the probabilities need no
label, so the time is that of the clustering, the distances, the center term (leverage scores
of the k size-weighted centers: a k x k Gram matrix and its Cholesky factor when k <= d, a
k x d QR otherwise) and one draw. Every figure is one wall-clock run; compare the
ratios printed on the same line (other processes share this machine: the load average is
printed with each case).

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \
        benchmarks/bench_regression_table1.py --cases square tall wide
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl missing"
    out = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            out.append(f"{info.get('internal_api')} {info.get('version')} "
                       f"{info.get('architecture')} threads={info.get('num_threads')}")
    return "; ".join(out) or "no BLAS found"


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


REPEAT = 1


def timed(fn):
    """The best of ``REPEAT`` wall-clock runs (the least disturbed by other processes)."""
    best, out = float("inf"), None
    for _ in range(REPEAT):
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def ours(A, k, seed=0, **kw):
    from coreselect import regression_sample

    zeros = np.zeros(A.shape[0])
    return regression_sample(A, zeros.__getitem__, 1, n_clusters=k, use_centers=False,
                             seed=seed, **kw)


def fasterpam(A, k, seed=0, n_cpu=-1):
    import kmedoids

    from coreselect.regression import pairwise_distance_matrix

    diss = pairwise_distance_matrix(A)
    res = kmedoids.fasterpam(diss, k, init="random", random_state=seed, n_cpu=n_cpu)
    return res


def row(name, figures, base=None):
    cells = [f"{label} {t:8.2f} s" for label, t in figures]
    line = f"{name:<26}" + " | ".join(cells)
    if base is not None:
        bt = dict(figures)[base]
        line += " || " + ", ".join(f"{label}/{base} {t / bt:.2f}" for label, t in figures
                                   if label != base)
    print(line + f"   [{_load()}]", flush=True)


def square(sizes, with_pam: bool, n_cpu: int = -1):
    from coreselect.baselines import leverage_scores

    print("\n## n x n standard normal, k = 0.2 n (paper Table 1)")
    for n in sizes:
        rng = np.random.default_rng(n)
        A = rng.standard_normal((n, n))
        k = int(0.2 * n)
        figs = []
        t, res = timed(lambda A=A, k=k: ours(A, k))
        figs.append(("ours", t))
        if with_pam:
            try:
                t, _ = timed(lambda A=A, k=k: fasterpam(A, k, n_cpu=n_cpu))
                figs.append(("fasterpam+dist", t))
            except ImportError:
                print("  (kmedoids not installed: pip install coreselect[kmedoids])")
        t, _ = timed(lambda A=A: leverage_scores(A, method="qr"))
        figs.append(("leverage-qr", t))
        row(f"n={n} k={k}", figs, base="ours")
        print(f"  ours: projection_dim={res.selection.params['projection_dim']}, "
              f"k-median cost {res.selection.params['cost']:.4g}, "
              f"mix {res.selection.params['mix']:.4f}")
        del A


def tall(n, d, k):
    from coreselect.assign import assign
    from coreselect.baselines import leverage_scores, sketched_leverage_scores

    print(f"\n## tall {n:,} x {d:,}, k = {k:,}")
    rng = np.random.default_rng(1)
    A = rng.standard_normal((n, d))
    figs = []
    t, res = timed(lambda: ours(A, k))
    figs.append(("ours", t))
    C = A[rng.choice(n, size=k, replace=False)]
    t, _ = timed(lambda: assign(A, C, z=1.0))
    figs.append(("1-assign-pass", t))
    t, h = timed(lambda: leverage_scores(A, method="qr"))
    figs.append(("leverage-qr", t))
    t, hc = timed(lambda: leverage_scores(A, method="cholesky"))
    figs.append(("leverage-chol", t))
    t, hs = timed(lambda: sketched_leverage_scores(A, seed=0))
    figs.append(("leverage-sketch", t))
    row(f"{n}x{d} k={k}", figs, base="ours")
    ratio = hs / h
    print(f"  ours: projection_dim={res.selection.params['projection_dim']}, "
          f"mix {res.selection.params['mix']:.4f}; cholesky vs qr "
          f"max rel err {np.max(np.abs(hc / h - 1)):.2e}; sketch/exact in "
          f"[{ratio.min():.3f}, {ratio.max():.3f}]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["square", "tall", "wide"],
                        choices=["square", "tall", "wide"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[5000, 10000])
    parser.add_argument("--no-pam", action="store_true", help="skip FasterPAM")
    parser.add_argument("--tall-rows", type=int, default=1_000_000)
    parser.add_argument("--wide-rows", type=int, default=100_000)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS (and FasterPAM) threads; 1 by default because on a busy "
                             "2-core machine two OpenBLAS threads can be 10x slower than one; "
                             "0 leaves the default")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per figure; the fastest is kept (default 1)")
    args = parser.parse_args(argv)
    global REPEAT
    REPEAT = max(1, args.repeat)
    limiter = None
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.blas_threads)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}; BLAS: {_blas()}")
    print(f"cpus {os.cpu_count()}; {_load()}; best of {REPEAT} run(s) per figure")
    n_cpu = args.blas_threads or -1
    try:
        if "square" in args.cases:
            square(args.sizes, not args.no_pam, n_cpu)
        if "tall" in args.cases:
            tall(args.tall_rows, 128, 1000)
        if "wide" in args.cases:
            tall(args.wide_rows, 2000, 1000)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
