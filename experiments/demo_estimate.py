"""The main job at this stage: estimate a model's loss over a whole pool with few inferences.

Fashion-MNIST (Debian's dataset-fashion-mnist; scikit-learn's digits when it is not there) is
embedded by PCA, a small classifier is trained on a few uniform points, and its total log
loss over the pool is estimated with k + s oracle calls by sensitivity sampling, and by
uniform sampling with the same number of calls. Prints both estimates with their 95%
intervals, the truth (every loss computed, which a real user could not afford) and the times.

Run: ``python experiments/demo_estimate.py`` (the second part of ``make demo``; ``--help``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

import coreselect as cs


def load_pool(seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from coreselect.datasets import load_fashion_mnist

        images, labels = load_fashion_mnist()
        name = "Fashion-MNIST (train, 60,000 images)"
    except FileNotFoundError as exc:
        from sklearn.datasets import load_digits

        print(f"note: {exc}\n      using scikit-learn's digits instead.")
        digits = load_digits()
        images, labels = digits.images, digits.target
        name = "scikit-learn digits (1,797 images)"
    X = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(images.max())
    return X, labels.astype(np.int64), name


def uniform_estimate(loss_fn, n: int, calls: int, rng: np.random.Generator) -> cs.Estimate:
    sel = cs.Selection(indices=np.sort(rng.choice(n, size=calls, replace=False)),
                       weights=np.full(calls, n / calls), probabilities=np.full(calls, calls / n),
                       n=n, replace=False, method="uniform")
    return sel.estimate_total(loss_fn(sel.indices))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=200, help="k, oracle calls on centers")
    ap.add_argument("--size", type=int, default=1000, help="s, sampled rows (oracle calls)")
    ap.add_argument("--warm", type=int, default=500, help="uniform rows the classifier sees")
    ap.add_argument("--dims", type=int, default=32, help="PCA dimensions of the embedding")
    ap.add_argument("--reps", type=int, default=100, help="repetitions for the RMSE summary")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    X, y, name = load_pool(args.seed)
    n = X.shape[0]
    Z = PCA(args.dims, random_state=args.seed).fit_transform(X).astype(np.float32)
    warm = rng.choice(n, size=min(args.warm, n // 2), replace=False)
    model = LogisticRegression(max_iter=300).fit(Z[warm], y[warm])
    t_prep = time.perf_counter() - t0

    calls = {"n": 0}

    def oracle(idx):  # the model's log loss on the given rows: one "inference" each
        calls["n"] += len(idx)
        proba = model.predict_proba(Z[idx])
        return -np.log(np.clip(proba[np.arange(len(idx)), y[idx]], 1e-12, None))

    truth = oracle(np.arange(n)).sum()
    calls["n"] = 0
    k, s = min(args.clusters, n), args.size
    print(f"pool: {name}; embedding: PCA to {args.dims} dims; classifier: logistic regression "
          f"on {len(warm)} uniform rows ({t_prep:.1f}s)")
    print(f"budget: {k} + {s} = {k + s} oracle calls out of {n:,} rows\n")

    t1 = time.perf_counter()
    sampler = cs.SensitivitySampler(k, seed=args.seed).fit(Z)
    t_fit = time.perf_counter() - t1
    qloss = oracle(sampler.query_indices_)
    t2 = time.perf_counter()
    sel = sampler.sample(qloss, s, seed=args.seed)
    t_sample = time.perf_counter() - t2
    uniq, inverse = np.unique(sel.indices, return_inverse=True)  # ask once per distinct row
    sample_loss = oracle(uniq)[inverse]
    est = sel.estimate_total(sample_loss)
    est_diff = sel.estimate_total(sample_loss, method="difference")
    used = calls["n"]
    uni = uniform_estimate(oracle, n, k + s, rng)

    rows = [
        ("truth (all losses)", truth, None, None),
        ("sensitivity, weighted", est.value, est.ci_low, est.ci_high),
        ("sensitivity, difference", est_diff.value, est_diff.ci_low, est_diff.ci_high),
        ("uniform, same calls", uni.value, uni.ci_low, uni.ci_high),
    ]
    print(f"{'total log loss':26s} {'estimate':>12s} {'95% interval':>27s} {'error':>8s}")
    for label, value, lo, hi in rows:
        ci = f"[{lo:11.1f}, {hi:11.1f}]" if lo is not None else ""
        err = f"{100 * (value - truth) / truth:+7.2f}%" if lo is not None else ""
        print(f"{label:26s} {value:12.1f} {ci:>27s} {err:>8s}")
    print(f"\noracle calls used by sensitivity sampling: {used} "
          f"({sampler.query_indices_.shape[0]} centers + {len(uniq)} distinct sampled rows of "
          f"{s} draws); lam = {sel.params['lam']:.4g} ({sel.params['lam_rule']})")
    print(f"time: clustering {t_fit:.2f}s, sampling {t_sample * 1000:.1f} ms")

    # how often each is close: the same budget, many repetitions (clustering fitted once)
    errs = {"sensitivity, weighted": [], "sensitivity, difference": [], "uniform": []}
    t3 = time.perf_counter()
    for r in range(args.reps):
        sr = sampler.sample(qloss, s, seed=args.seed + 1 + r)
        lr = oracle(sr.indices)
        errs["sensitivity, weighted"].append(sr.estimate_total(lr).value - truth)
        errs["sensitivity, difference"].append(
            sr.estimate_total(lr, method="difference").value - truth)
        errs["uniform"].append(uniform_estimate(oracle, n, k + s, rng).value - truth)
    print(f"\nrelative RMSE over {args.reps} repetitions ({time.perf_counter() - t3:.1f}s):")
    base = np.sqrt(np.mean(np.square(errs["uniform"])))
    for label, e in errs.items():
        rmse = np.sqrt(np.mean(np.square(e)))
        print(f"  {label:26s} {100 * rmse / truth:6.2f}%   (uniform / this = {base / rmse:4.2f}x)")
    print(f"\ntotal time {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
