"""Issue 2 benchmark: is ``lam="auto"`` close to the best lam of a grid?

For each data set the clustering is fitted once and the oracle's answers at the centers are
taken; then for each lam on a grid (multiples of the auto value, from 0 to "distances only")
the sample is drawn ``--reps`` times and the relative RMSE of the total-loss estimate is
measured. Prints the RMSE per lam and the ratio auto / best (target <= 1.2), and uniform
sampling with the same number of oracle calls for reference.

Data: a synthetic Gaussian mixture with a loss that is smooth in the embedding, and real
Fashion-MNIST losses (per-example log loss of a logistic regression trained on 1,000 uniform
rows, PCA-32 embedding), plus scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_header  # noqa: E402

import coreselect as cs  # noqa: E402

GRID = [0.0, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 16.0, 64.0, 1e6]


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, d, k = 50_000, 16, 40
    means = rng.normal(0, 5, size=(k, d))
    comp = rng.integers(k, size=n)
    X = means[comp] + rng.normal(0, 1.0, size=(n, d)) * rng.gamma(2, 0.5, size=(k, 1))[comp]
    base = rng.gamma(1.0, 1.0, size=k)
    loss = base[comp] + 0.05 * ((X - means[comp]) ** 2).sum(1) + 0.1 * rng.random(n)
    return X.astype(np.float32), loss, "synthetic mixture (n=50,000, d=16)"


def classifier_losses(images, labels, name, warm=1000, dims=32, seed=0):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(images.max())
    Z = PCA(dims, random_state=seed).fit_transform(X).astype(np.float32)
    w = rng.choice(len(Z), size=warm, replace=False)
    model = LogisticRegression(max_iter=500).fit(Z[w], labels[w])
    p = model.predict_proba(Z)[np.arange(len(Z)), labels]
    return Z, -np.log(np.clip(p, 1e-12, None)), name


def fashion(seed=0):
    from coreselect.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist()
    return classifier_losses(images, labels, "Fashion-MNIST log loss (n=60,000, PCA-32)",
                             seed=seed)


def digits(seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    return classifier_losses(d.images, d.target, "digits log loss (n=1,797, PCA-32)", warm=200,
                             seed=seed)


def rmse_table(X, loss, k, s, reps, seed=0):
    truth = loss.sum()
    sampler = cs.SensitivitySampler(k, seed=seed).fit(X)
    q = loss[sampler.query_indices_]
    auto = sampler.sample(q, s, seed=0).params["lam"]
    rows = {}
    for mult in GRID + ["auto"]:
        lam = "auto" if mult == "auto" else mult * auto
        errs = []
        for r in range(reps):
            sel = sampler.sample(q, s, lam=lam, seed=1000 + r)
            errs.append(sel.estimate_total(loss[sel.indices]).value - truth)
        rows[mult] = float(np.sqrt(np.mean(np.square(errs))) / truth)
    rng = np.random.default_rng(seed)
    n = len(loss)
    uni = [loss[rng.choice(n, size=k + s, replace=False)].mean() * n - truth for _ in range(reps)]
    rows["uniform"] = float(np.sqrt(np.mean(np.square(uni))) / truth)
    return auto, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--data", nargs="*", default=["synthetic", "fashion", "digits"])
    args = ap.parse_args(argv)
    print(machine_header())
    makers = {"synthetic": synthetic, "fashion": fashion, "digits": digits}
    for key in args.data:
        X, loss, name = makers[key]()
        s = min(args.size, len(loss) // 4)
        k = min(args.clusters, len(loss) // 10)
        auto, rows = rmse_table(X, loss, k, s, args.reps)
        grid = {m: v for m, v in rows.items() if m not in ("auto", "uniform")}
        best_m = min(grid, key=grid.get)
        print(f"\n{name}: k={k}, s={s}, {args.reps} repetitions, auto lam = {auto:.4g}")
        print("  lam / auto : " + "  ".join(f"{m:>7.4g}" for m in grid))
        print("  rel. RMSE  : " + "  ".join(f"{100 * v:6.2f}%" for v in grid.values()))
        print(f"  auto {100 * rows['auto']:.2f}%, best {100 * grid[best_m]:.2f}% at "
              f"{best_m:g} x auto -> auto / best = {rows['auto'] / grid[best_m]:.2f} "
              f"(target <= 1.2); uniform with k+s calls {100 * rows['uniform']:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
