"""Estimating a model's total loss at equal oracle calls: the sampling designs against uniform.

On real data (scikit-learn digits; Fashion-MNIST when installed: ``apt-get install
dataset-fashion-mnist``) a logistic regression is trained on a few uniform rows; its per-row
cross-entropy (and 0-1 error) over the pool is the loss to estimate. Every design spends the
same oracle calls, k + s: uniform (k + s rows without replacement), Algorithm 1 (k centers +
s i.i.d. draws, the library's current default), Algorithm 1 without replacement, and the
stratified design (k centers + s draws allocated to the clusters). Printed per data set and
design, over the seeds (a fresh clustering each): relative RMSE / uniform's, coverage of the
95% interval, and mean interval width / truth.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_estimation.py``
(``--seeds 200``; ``--quick`` for 30 seeds on digits only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_header  # noqa: E402

import coreselect as cs  # noqa: E402


def _losses(Xtr, ytr, Xpool, ypool):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=300).fit(Xtr, ytr)
    proba = model.predict_proba(Xpool)
    col = np.searchsorted(model.classes_, ypool)
    ce = -np.log(np.clip(proba[np.arange(len(ypool)), col], 1e-12, None))
    err = (model.classes_[proba.argmax(axis=1)] != ypool).astype(np.float64)
    return ce, err


def digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    warm = np.random.default_rng(0).choice(len(y), 150, replace=False)
    ce, err = _losses(X[warm], y[warm], X, y)
    return "digits (1,797 x 64, LR on 150 rows)", X, {"cross-entropy": ce, "0-1 error": err}, 30, 120


def fashion_mnist():
    from sklearn.decomposition import PCA

    try:
        from coreselect.datasets import load_fashion_mnist

        images, y = load_fashion_mnist()
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"Fashion-MNIST not available ({exc}); skipped")
        return None
    X = PCA(50, random_state=0).fit_transform(images.reshape(len(y), -1) / 255.0)
    warm = np.random.default_rng(0).choice(len(y), 1000, replace=False)
    ce, err = _losses(X[warm], y[warm], X, y)
    return ("Fashion-MNIST (60,000 x 50 PCA, LR on 1,000 rows)", X.astype(np.float32),
            {"cross-entropy": ce, "0-1 error": err}, 200, 1000)


def run(name, X, losses, k, s, seeds):
    n = X.shape[0]
    designs = ["uniform", "Algorithm 1 (i.i.d.)", "Algorithm 1, replace=False", "stratified"]
    res = {(lname, d): [] for lname in losses for d in designs}
    t0 = time.perf_counter()
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        rows = rng.choice(n, k + s, replace=False)
        for lname, loss in losses.items():
            y = loss[rows]
            fpc = 1 - (k + s) / n
            se = n * y.std(ddof=1) / np.sqrt(k + s) * np.sqrt(fpc)
            res[(lname, "uniform")].append((n * y.mean(), n * y.mean() - 1.96 * se,
                                            n * y.mean() + 1.96 * se))
        sampler = cs.SensitivitySampler(k, seed=seed).fit(X)
        q = sampler.query_indices_
        for lname, loss in losses.items():
            for design, kw in (("Algorithm 1 (i.i.d.)", {}),
                               ("Algorithm 1, replace=False", {"replace": False}),
                               ("stratified", {"design": "stratified"})):
                sel = sampler.sample(loss[q], s, seed=seed, **kw)
                e = sel.estimate_total(loss[sel.indices])
                res[(lname, design)].append((e.value, e.ci_low, e.ci_high))
    elapsed = time.perf_counter() - t0
    print(f"\n### {name}: k = {k}, s = {s} ({k + s:,} oracle calls), {seeds} seeds, "
          f"{elapsed:.0f}s, load {os.getloadavg()[0]:.2f}")
    print("| loss | design | rel. RMSE / uniform's | 95% CI coverage | mean CI width / truth |")
    print("|---|---|---|---|---|")
    for lname, loss in losses.items():
        truth = float(loss.sum())
        base = None
        for design in designs:
            v = np.array(res[(lname, design)])
            rmse = float(np.sqrt(np.mean((v[:, 0] - truth) ** 2)))
            base = rmse if base is None else base
            cover = float(np.mean((v[:, 1] <= truth) & (truth <= v[:, 2])))
            width = float(np.nanmean(v[:, 2] - v[:, 1]) / truth)
            print(f"| {lname} | {design} | {rmse / base:.3f} | {cover:.1%} | {width:.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["digits", "fashion_mnist"])
    args = ap.parse_args(argv)
    print(machine_header())
    sets = [digits] if args.quick else [digits, fashion_mnist]
    if args.only:
        sets = [f for f in sets if f.__name__ == args.only]
    for make in sets:
        got = make()
        if got is None:
            continue
        name, X, losses, k, s = got
        run(name, X, losses, k, s, 30 if args.quick else args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
