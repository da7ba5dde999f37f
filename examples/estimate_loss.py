"""Tutorial (b): estimate a model's mean loss over a large pool with a few thousand inferences.

A classifier (logistic regression on 50 principal components of the pixels) is trained on a
few thousand Fashion-MNIST images; the pool is every other image, train and test splits
together (65,000 rows). Its true mean log-loss over the pool needs 65,000 inferences. With
sensitivity sampling, 200 inferences at cluster centers plus 2,000 sampled rows give an
unbiased estimate with a confidence interval; a uniform sample of the same 2,200 inferences
is the comparison. The embeddings are the principal components, which cost no inference.

The script prints one run with its intervals, then the error and the interval coverage over
``--reps`` seeds. Run ``python examples/estimate_loss.py``, or ``--small`` for a quick check.
Without Fashion-MNIST (``apt-get install dataset-fashion-mnist``) it uses scikit-learn's
digits.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

import coreselect as cs
from coreselect.datasets import DatasetNotFoundError, load_fashion_mnist
from coreselect.diagnostics import diagnose_sample


def load_pool(data=None):
    """Images as float rows in [0, 1], labels, and the data set's name."""
    try:
        xtr, ytr = load_fashion_mnist(data, split="train")
        xte, yte = load_fashion_mnist(data, split="test")
        x = np.concatenate([xtr, xte]).reshape(-1, 784).astype(np.float32) / 255
        return x, np.concatenate([ytr, yte]), "Fashion-MNIST"
    except DatasetNotFoundError:
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.data / 16).astype(np.float32), d.target, "digits (Fashion-MNIST not found)"


def log_loss_rows(model, X, y) -> np.ndarray:
    """Per-row log-loss (cross-entropy) of a fitted classifier."""
    p = model.predict_proba(X)
    col = np.searchsorted(model.classes_, y)
    return -np.log(np.clip(p[np.arange(y.size), col], 1e-12, None))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=3000, help="rows the model is fitted on")
    p.add_argument("--clusters", type=int, default=200, help="k: inferences at the centers")
    p.add_argument("--size", type=int, default=2000, help="s: sampled inferences")
    p.add_argument("--reps", type=int, default=20, help="seeds for the error table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--small", action="store_true", help="a quick run: 8,000 rows, k=50, s=400")
    p.add_argument("--pool-size", type=int, default=None, help="use only the first rows")
    args = p.parse_args(argv)
    if args.small:
        args.pool_size = args.pool_size or 8000
        args.train_size, args.clusters, args.size = 1000, 50, 400
        args.reps = min(args.reps, 5)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    rng = np.random.default_rng(args.seed)
    x, y, name = load_pool(args.data)
    if args.pool_size:
        x, y = x[: args.pool_size], y[: args.pool_size]
    train = rng.choice(x.shape[0], size=min(args.train_size, x.shape[0] // 4), replace=False)
    pool = np.setdiff1d(np.arange(x.shape[0]), train)

    pca = PCA(50, random_state=args.seed).fit(x[train])
    emb = pca.transform(x).astype(np.float32)
    model = LogisticRegression(max_iter=300).fit(emb[train], y[train])
    X, labels = emb[pool], y[pool]
    n = X.shape[0]

    # The oracle: one inference (and the label) per asked row. Counted, to show the cost.
    calls = {"rows": 0}

    def oracle(idx):
        calls["rows"] += len(idx)
        return log_loss_rows(model, X[idx], labels[idx])

    t0 = time.perf_counter()
    truth = log_loss_rows(model, X, labels).mean()    # what we estimate: n inferences
    t_truth = time.perf_counter() - t0
    print(f"{name}: pool of {n} rows, model trained on {train.size}; "
          f"true mean log-loss {truth:.4f} ({n} inferences, {t_truth:.2f} s)")

    # One run, in full: the answers at the centers are reused for the estimate.
    t0 = time.perf_counter()
    # design="sensitivity": Algorithm 1 as the paper has it (the library's default, "auto",
    # would query one random row per cluster and count it in the sample)
    sel = cs.sensitivity_sample(X, oracle, args.size, n_clusters=args.clusters, seed=rng,
                                design="sensitivity")
    sample_losses = oracle(sel.indices)
    t_sel = time.perf_counter() - t0
    budget = sel.n_queries + sel.size
    print(f"sensitivity sampling: {sel.n_queries} + {sel.size} = {calls['rows']} inferences "
          f"({t_sel:.2f} s with the clustering)")
    est = sel.estimate_mean(sample_losses)
    dif = sel.estimate_mean(sample_losses, method="difference")
    uni = cs.baselines.uniform(n, budget, seed=rng)
    est_u = uni.estimate_mean(oracle(uni.indices))
    print(f"  weighted estimate    {est}")
    print(f"  difference estimate  {dif}")
    print(f"uniform sample of {budget}: {est_u}")
    print(f"truth                {truth:.6g}")
    # Whether to trust the sample: before labelling (from the queried rows only) ...
    print(f"before labelling: {sel.diagnostics.get('verdict')}")
    # ... and after, from the sample's own losses: design effect = variance / uniform's
    report = diagnose_sample(sel, sample_losses)
    deff = report["design_effect"]
    print(f"after labelling: design effect {deff if deff is None else round(deff, 3)}; "
          f"{report['verdict']}")

    # Error and interval coverage over seeds (the losses of the pool are known here).
    full = log_loss_rows(model, X, labels)
    rows = {"sensitivity (weighted)": [], "sensitivity (difference)": [], "uniform": []}
    cover = {key: 0 for key in rows}
    for rep in range(args.reps):
        r = np.random.default_rng([args.seed, rep])
        s = cs.sensitivity_sample(X, full.__getitem__, args.size, n_clusters=args.clusters,
                                  seed=r, design="sensitivity")
        u = cs.baselines.uniform(n, budget, seed=r)
        for key, e in (("sensitivity (weighted)", s.estimate_mean(full)),
                       ("sensitivity (difference)", s.estimate_mean(full, method="difference")),
                       ("uniform", u.estimate_mean(full))):
            rows[key].append(e.value - truth)
            cover[key] += e.ci_low <= truth <= e.ci_high
    print(f"\nover {args.reps} seeds, {budget} inferences each, truth {truth:.4f}:")
    print(f"{'estimator':<26} {'RMSE':>8} {'rel. RMSE':>10} {'95% CI covers':>14}")
    rmse_u = np.sqrt(np.mean(np.square(rows["uniform"])))
    for key, errs in rows.items():
        rmse = np.sqrt(np.mean(np.square(errs)))
        print(f"{key:<26} {rmse:>8.4f} {rmse / truth:>10.2%} "
              f"{cover[key]:>8}/{args.reps}   (uniform RMSE / this: {rmse_u / rmse:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
