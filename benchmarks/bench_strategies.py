"""Issue 15 benchmark: the selection time of every registry strategy at n = 1,000,000 x 128.

On a synthetic Gaussian mixture (float32, d = 128, 50 components) with class probabilities
from a softmax of a random linear map (C = 10 classes), each strategy of
``coreselect.baselines`` selects ``--size`` new labels (default 5,000) after a warm start of
``--warm`` labelled rows (default 1,000, passed as ``labelled``). Printed per strategy: the
selection time and its ratio to one assignment pass (the floor of ``bench_core.floor_pass``:
one chunked float32 GEMM nearest-center pass of all rows) against the number of centers the
strategy's own clustering uses, measured in the same run:

- ``sensitivity`` (k model runs only) and ``sensitivity + scores`` (``probs=``): their
  clustering has ``size // 5`` clusters;
- ``cluster_margin``: ``size`` clusters (its default);
- ``kcenter``: ``size`` sequential farthest-point steps, against a pass with ``size`` centers
  (the same number of distance evaluations, ``n size d``);
- ``uniform``, ``margin``, ``entropy``, ``least_confidence`` (no clustering) and ``badge``
  (k-means++ on gradient embeddings): against the ``size // 5`` pass.

Target (issue 15): every strategy except BADGE within 3x its floor.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_strategies.py``
(``--n 200000`` for a quick run; ``--skip badge kcenter`` to leave the slow ones out).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Timer, gaussian_mixture, machine_header  # noqa: E402
from bench_core import floor_pass, oracle_for  # noqa: E402

from coreselect.baselines import get_strategy  # noqa: E402

NAMES = ["uniform", "margin", "least_confidence", "entropy", "kcenter", "badge",
         "cluster_margin", "sensitivity", "sensitivity + scores"]


def class_probabilities(X: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """A softmax of a random linear map of X: every row's probabilities, float64."""
    w = np.random.default_rng(3).normal(0.0, 0.05, size=(X.shape[1], n_classes))
    out = np.empty((X.shape[0], n_classes))
    for a in range(0, X.shape[0], 100_000):
        z = X[a:a + 100_000].astype(np.float64) @ w
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[a:a + 100_000] = e / e.sum(axis=1, keepdims=True)
    return out


def floor_seconds(X: np.ndarray, k: int, cache: dict) -> float:
    if k not in cache:
        C = X[np.random.default_rng(2).choice(X.shape[0], k, replace=False)]
        with Timer() as t:
            floor_pass(X, C)
        cache[k] = t.seconds
    return cache[k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--skip", nargs="*", default=[], choices=NAMES)
    args = ap.parse_args(argv)
    print(machine_header())
    X, _ = gaussian_mixture(args.n, 128, 50, seed=0)
    probs = class_probabilities(X)
    oracle = oracle_for(X)
    warm = np.sort(np.random.default_rng(1).choice(args.n, args.warm, replace=False))
    floor_pass(X[:50_000], X[:100])  # warm up BLAS
    small = max(1, args.size // 5)
    floors: dict = {}
    print(f"n = {args.n:,}, d = 128 float32, C = 10, size = {args.size:,} new labels, "
          f"{args.warm:,} labelled; load average {os.getloadavg()}\n")
    print("| strategy | seconds | floor: pass with k centers | x floor |")
    print("|---|---|---|---|")
    for name in NAMES:
        if name in args.skip:
            continue
        reg = "sensitivity" if name.startswith("sensitivity") else name
        inputs = {"X": X, "probs": probs, "oracle": oracle, "labelled": warm, "seed": 0}
        if name == "sensitivity":
            inputs["probs"] = None
        if name == "uniform":
            inputs["n"] = args.n
        with Timer() as t:
            sel = get_strategy(reg)(args.size, **inputs)
        k = args.size if name in ("kcenter", "cluster_margin") else small
        fl = floor_seconds(X, k, floors)
        new = (sel.all_labelled()[0] if reg == "sensitivity" else np.unique(sel.indices))
        assert new.shape[0] == args.size and not np.isin(new, warm).any(), name
        print(f"| {name} | {t.seconds:.2f} | {fl:.2f} s (k = {k:,}) | {t.seconds / fl:.2f} |",
              flush=True)
    print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
