"""BADGE without gradient embeddings: time and peak memory at n=100,000, C=100, d=768.

The textbook BADGE forms the gradient embeddings ``(p - onehot(argmax p)) (x) h``, an
n x (C d) matrix (30.7 GB in float32 here), and runs k-means++ on it. coreselect computes the
k-means++ distances from the factors, so memory stays O(n (C + d)): the inputs and a few
vectors of length n. This script measures, in one run: the time of the selection, the peak of
memory traced by numpy during it (tracemalloc), and the process's peak resident memory with
the float32 inputs included (the target is under 1 GB). The explicit embeddings' size is
computed, not allocated. Afterwards (so that the peak RSS above is not affected), at n = 500
the factored distances are checked against explicit embeddings, and one distance step of each
is timed for a ratio.

Run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python
benchmarks/bench_badge.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from coreselect.baselines import badge
from coreselect.baselines.badge import _GradientDistances


def make_inputs(n: int, C: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 softmax outputs and embeddings, generated in blocks (no big float64 copies)."""
    rng = np.random.default_rng(seed)
    probs = np.empty((n, C), dtype=np.float32)
    H = np.empty((n, d), dtype=np.float32)
    for a in range(0, n, 8192):
        b = min(n, a + 8192)
        z = rng.standard_normal((b - a, C)) * 3.0
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs[a:b] = e / e.sum(axis=1, keepdims=True)
        H[a:b] = rng.standard_normal((b - a, d), dtype=np.float32)
    return probs, H


def explicit_check(C: int, d: int) -> tuple[float, float, float]:
    """Max relative error of the factored distances, and seconds per step factored/explicit."""
    probs, H = make_inputs(500, C, d, seed=1)
    a = probs.astype(np.float64)
    a[np.arange(len(a)), probs.argmax(axis=1)] -= 1.0
    G = (a[:, :, None] * H.astype(np.float64)[:, None, :]).reshape(len(a), -1)  # 500 x C d
    grad = _GradientDistances(probs, H)
    err = 0.0
    t_fact = t_expl = 0.0
    for j in (0, 7, 499):
        t0 = time.perf_counter()
        got = grad.to(j)
        t_fact += time.perf_counter() - t0
        t0 = time.perf_counter()
        want = ((G - G[j]) ** 2).sum(axis=1)
        t_expl += time.perf_counter() - t0
        err = max(err, float(np.max(np.abs(got - want) / np.maximum(want, 1e-12))))
    return err, t_fact / 3, t_expl / 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads")
    ap.add_argument("--quick", action="store_true", help="n=20,000 and size=100")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size = 20_000, 100

    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(args.threads)
    print("BLAS:", [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
                    for i in threadpool_info()])
    print(f"load average before: {os.getloadavg()}")
    n, C, d = args.n, args.classes, args.d

    probs, H = make_inputs(n, C, d, seed=0)
    inputs = probs.nbytes + H.nbytes
    t0 = time.perf_counter()
    sel = badge(probs, H, args.size, seed=0)
    t_run = time.perf_counter() - t0
    tracemalloc.start()
    badge(probs, H, min(args.size, 20), seed=0)
    peak_traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    explicit = n * C * d * 4
    del probs, H
    err, t_fact, t_expl = explicit_check(C, d)  # after the RSS reading: it forms G

    print(f"\nBADGE, n={n}, C={C}, d={d}, size={args.size}, float32 inputs")
    rows = [
        ("selection time (s), measured", f"{t_run:.1f}"),
        ("seconds per step", f"{t_run / args.size:.4f}"),
        ("inputs (probs + embeddings), MB", f"{inputs / 2**20:.0f}"),
        ("peak traced during badge (beyond inputs), MB", f"{peak_traced / 2**20:.1f}"),
        ("process peak RSS, inputs included, MB", f"{rss / 2**20:.0f}"),
        ("explicit gradient embeddings (computed), MB", f"{explicit / 2**20:.0f}"),
        ("explicit / our peak RSS", f"{explicit / rss:.0f}x"),
        ("under 1 GB (peak RSS)", str(rss < 2**30)),
        ("distinct rows selected", str(len(set(sel.indices.tolist())))),
        (f"factored vs explicit distances, max rel. error (n=500, C={C}, d={d})",
         f"{err:.1e}"),
        ("one distance step at n=500: explicit / factored time", f"{t_expl / t_fact:.0f}x"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}} | {v}")
    print("peak traced: a 20-step run (the state does not grow with steps)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
