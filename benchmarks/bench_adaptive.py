"""Issue 4 benchmark: r-round sensitivity sampling (Algorithm 3) against uniform sampling.

For each data set and each round i = 1..R of :func:`coreselect.adaptive_sample` (k new
queried rows per round, s draws), the relative RMSE of the total-loss estimate over
``--reps`` seeds is set against uniform sampling with the same number of oracle calls,
``i k + s`` (exact: ``sqrt((n sum l^2 - T^2) / m) / T`` for m i.i.d. uniform draws). One
prefix order is drawn per seed and shared by the variants, so that they differ only in lam,
mixing and the estimator:

- ``auto``: lam = sum(l_hat) / Phi (the core rule), the weighted (Hansen-Hurwitz) estimate;
- ``auto+diff``: the same draws, the difference estimator (queried losses as control
  variates, :meth:`Selection.estimate_total` ``method="difference"``);
- ``holder``: lam = the Hoelder estimate from the queried rows (q0.9 of close pairs);
- ``mix.2``: lam auto with defensive mixing alpha = 0.2;
- ``far``: lam auto over the deterministic farthest-first order instead of D^z sampling.

Before that, the quality of the prefix orders: the clustering cost Phi of the first j rows
of the D^z order and of the farthest-first order, over the cost of a fitted (j, z)-clustering
(:func:`coreselect.kz_clustering`, snapped centers), for j = k, 2k, ...

Then what the diagnostics said, for ``auto``: the a-priori verdict (share of runs "likely
worse" / with caveats), and :func:`coreselect.diagnostics.diagnose_sample`'s estimated
design effect against the true one (empirical MSE / uniform's exact MSE with s draws).

Data: a clustered synthetic set with a Hoelder-like loss; the same embeddings with a
heavy-tailed loss unrelated to them (where sensitivity sampling must lose); scikit-learn's
digits and Fashion-MNIST, with per-example log losses of a logistic regression trained on
a uniform warm start (PCA features).
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
from coreselect.diagnostics import diagnose_sample  # noqa: E402
from coreselect.prefix import prefix_order  # noqa: E402

VARIANTS = {
    "auto": {"lam": "auto"},
    "holder": {"lam": "holder"},
    "mix.2": {"lam": "auto", "mix": 0.2},
}


# ------------------------------------------------------------------ data
def synthetic(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, d, c = 20_000, 10, 60
    means = rng.normal(0, 6.0, size=(c, d))
    comp = rng.integers(c, size=n)
    X = means[comp] + rng.normal(size=(n, d)) * rng.gamma(2, 0.5, size=(c, 1))[comp]
    if kind == "hoelder":
        loss = rng.gamma(1.0, 1.0, size=c)[comp] + 0.05 * ((X - means[comp]) ** 2).sum(1)
        name = "synthetic, Hoelder-like loss (n=20,000, d=10, 60 blobs)"
    else:
        loss = rng.pareto(2.0, size=n)
        name = "synthetic, loss unrelated to X (Pareto 2)"
    return X, loss, name


def classifier_losses(images, labels, *, warm, dims, seed=0):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(images.max())
    Z = PCA(dims, random_state=seed).fit_transform(X).astype(np.float64)
    w = rng.choice(len(Z), size=warm, replace=False)
    model = LogisticRegression(max_iter=1000).fit(Z[w], labels[w])
    p = model.predict_proba(Z)[np.arange(len(Z)), labels]
    return Z, -np.log(np.clip(p, 1e-12, None))


def digits():
    from sklearn.datasets import load_digits

    dg = load_digits()
    Z, loss = classifier_losses(dg.images, dg.target, warm=300, dims=16)
    return Z, loss, "digits log loss (n=1,797, PCA-16, warm start 300)"


def fashion():
    from coreselect.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist()
    Z, loss = classifier_losses(images, labels, warm=1000, dims=32)
    return Z, loss, "Fashion-MNIST log loss (n=60,000, PCA-32, warm start 1,000)"


# ------------------------------------------------------------------ one data set
def prefix_quality(X, k, rounds, out):
    from coreselect.assign import assign

    dz = prefix_order(X, rounds * k, seed=0)
    far = prefix_order(X, rounds * k, method="farthest")
    out("prefix order cost / fitted (j, 2)-clustering cost (seed 0):")
    out(f"{'j':>6} {'D^z':>7} {'farthest':>9}")
    for i in range(1, rounds + 1):
        j = i * k
        ref = cs.kz_clustering(X, j, seed=0).cost
        c_dz = float(assign(X, X[dz[:j]])[1].sum())
        c_far = float(assign(X, X[far[:j]])[1].sum())
        out(f"{j:>6} {c_dz / ref:7.2f} {c_far / ref:9.2f}")


def run(X, loss, name, *, k, s, rounds, reps, out):
    n = X.shape[0]
    T = float(loss.sum())
    var_u = n * float(np.dot(loss, loss)) - T * T  # per-draw variance of uniform sampling
    cols = [*VARIANTS, "far", "auto+diff"]
    est = {v: np.zeros((reps, rounds)) for v in cols}
    deff_hat = np.full((reps, rounds), np.nan)
    deff_pred = np.full((reps, rounds), np.nan)
    verdict_worse = np.zeros(rounds)
    verdict_calls = np.zeros(rounds)
    lam_auto = np.zeros((reps, rounds))
    lam_hold = np.zeros((reps, rounds))
    ess = np.zeros((reps, rounds))
    t0 = time.perf_counter()
    far = prefix_order(X, rounds * k, method="farthest")
    for rep in range(reps):
        order = prefix_order(X, rounds * k, seed=rep)
        for i, sel in enumerate(cs.adaptive_sample(X, loss.__getitem__, s, rounds=rounds,
                                                   n_clusters=k, order=far,
                                                   seed=10_000 + rep)):
            est["far"][rep, i] = sel.estimate_total(loss).value
        for vname, opts in VARIANTS.items():
            sels = cs.adaptive_sample(X, loss.__getitem__, s, rounds=rounds, n_clusters=k,
                                      order=order, seed=10_000 + rep, **opts)
            for i, sel in enumerate(sels):
                est[vname][rep, i] = sel.estimate_total(loss).value
                if vname != "auto":
                    continue
                est["auto+diff"][rep, i] = sel.estimate_total(loss, method="difference").value
                d = sel.diagnostics
                verdict_worse[i] += d["verdict"].startswith("For estimating the total loss, likely worse")
                verdict_calls[i] += d["verdict"].startswith("For estimating the total loss, likely no better")
                lam_auto[rep, i] = d["lam"]
                lam_hold[rep, i] = d["lam_holder"] or 0.0
                ess[rep, i] = d["effective_sample_size"]
                if d["predicted_design_effect"] is not None:
                    deff_pred[rep, i] = d["predicted_design_effect"]
                elif d["predicted_design_effect_infinite"]:
                    deff_pred[rep, i] = np.inf
                deff_hat[rep, i] = diagnose_sample(sel, loss)["design_effect"] or np.nan
    secs = time.perf_counter() - t0

    out(f"\n### {name}")
    out(f"k={k} per round, s={s}, {reps} seeds, T={T:.6g}; {secs:.0f}s")
    prefix_quality(X, k, rounds, out)
    out("relative RMSE of the total-loss estimate; in brackets the ratio to uniform with the "
        "same oracle calls (< 1: sensitivity wins)")
    out(f"{'round':>5} {'calls':>6} {'uniform':>8} " + " ".join(f"{v:>16}" for v in cols))
    rows = []
    for i in range(rounds):
        calls = (i + 1) * k + s
        uni = np.sqrt(var_u / calls) / T
        cells = []
        for v in cols:
            rr = float(np.sqrt(np.mean((est[v][:, i] - T) ** 2)) / T)
            cells.append(f"{rr:8.4f} [{rr / uni:5.2f}]")
            rows.append((name, i + 1, calls, v, rr, uni))
        out(f"{i + 1:>5} {calls:>6} {uni:8.4f} " + " ".join(f"{c:>16}" for c in cells))
    out("diagnostics of 'auto' (medians over seeds): true deff = MSE / uniform MSE with s "
        "draws; pred = predicted before labelling (share of runs with a prediction, share "
        "> 1 = verdict 'likely worse'); post = diagnose_sample's from the sample's losses; "
        "calls = share of verdicts 'likely no better than uniform with the same oracle calls'")
    out(f"{'round':>5} {'lam auto':>9} {'lam hold':>9} {'ESS':>6} {'true':>6} "
        f"{'pred':>6} {'had':>5} {'>1':>5} {'post':>6} {'>1':>5} {'worse':>6} {'calls':>6}")
    for i in range(rounds):
        true = np.mean((est["auto"][:, i] - T) ** 2) / (var_u / s)
        col = deff_hat[:, i]
        pc = deff_pred[:, i]
        had = np.isfinite(pc) | np.isinf(pc)
        pmed = f"{np.median(pc[had]):6.2f}" if had.any() else f"{'-':>6}"
        out(f"{i + 1:>5} {np.median(lam_auto[:, i]):9.3g} {np.median(lam_hold[:, i]):9.3g} "
            f"{np.median(ess[:, i]):6.1f} {true:6.2f} {pmed} {np.mean(had):5.2f} "
            f"{np.mean(pc > 1):5.2f} {np.nanmedian(col):6.2f} {np.mean(col > 1):5.2f} "
            f"{verdict_worse[i] / reps:6.2f} {verdict_calls[i] / reps:6.2f}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer seeds, no Fashion-MNIST")
    ap.add_argument("--datasets", nargs="*",
                    default=["hoelder", "unrelated", "digits", "fashion"])
    args = ap.parse_args(argv)
    reps = 8 if args.quick else args.reps
    datasets = [d for d in args.datasets if not (args.quick and d == "fashion")]
    print(machine_header())
    print(f"start load average {os.getloadavg()}")
    rows = []
    for ds in datasets:
        if ds in ("hoelder", "unrelated"):
            X, loss, name = synthetic(ds)
            rows += run(X, loss, name, k=40, s=200, rounds=args.rounds, reps=reps, out=print)
        elif ds == "digits":
            X, loss, name = digits()
            rows += run(X, loss, name, k=20, s=100, rounds=args.rounds, reps=reps, out=print)
        elif ds == "fashion":
            try:
                X, loss, name = fashion()
            except Exception as exc:  # the data set may be missing on this machine
                print(f"\n### Fashion-MNIST skipped: {exc}")
                continue
            rows += run(X, loss, name, k=100, s=300, rounds=args.rounds,
                        reps=max(4, reps * 2 // 3), out=print)
        else:
            print(f"unknown data set {ds!r}")
            return 2
    print(f"\nend load average {os.getloadavg()}")
    # lam: core rule against the Hoelder estimate, over every data set and round
    auto = np.array([r[4] for r in rows if r[3] == "auto"])
    hold = np.array([r[4] for r in rows if r[3] == "holder"])
    print(f"lam rule: geometric mean of RMSE(holder) / RMSE(auto) over {len(auto)} "
          f"(data set, round) cells = {np.exp(np.mean(np.log(hold / auto))):.3f}; holder "
          f"better in {int(np.sum(hold < auto))} of {len(auto)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
