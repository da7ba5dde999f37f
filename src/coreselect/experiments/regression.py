"""Figure 1 of the paper: linear regression on a selected sample, against the sample size.

For each data set the rows are split into training and validation sets (80/20), the features
standardised on the training set and a column of ones appended (d columns in all). For every
sample size s (multiples of d, 2d to 20d by default) and repetition, each method selects s
rows of the training set, asks for their labels, solves the weighted least squares problem,
and the solution's ``1 - R^2`` is measured on the whole training and validation sets:

- ``ours``: :func:`~coreselect.regression_sample` with the library's defaults in the paper's
  label-free setting: k-median of the training rows (k = 10% of them), ``zeta = inf``,
  ``mix="auto"`` (p proportional to the distance to the nearest center plus the compressed
  problem's sensitivity ``h_c / |C_c|``, the leverage score of the row's center among the
  size-weighted centers spread over its cluster), i.i.d. draws, weights ``1/(s p)``, the fit on
  the sample only: s labels, like the baselines (``--mix`` sets another mix). One clustering
  per repetition, shared by all sample sizes.
- ``ours-paper``: Algorithm 2 exactly as run in the paper (``mix=0``): p proportional to the
  distance to the nearest center alone; rows that coincide with their center are never drawn.
- ``uniform``: s distinct rows uniformly, ordinary least squares.
- ``leverage``: exact leverage scores (thin QR, once), i.i.d. draws, weights ``1/(s p)``.
- ``leverage-sketched``: CountSketch leverage scores (new sketch every repetition).
- ``ours+centers`` (with ``--with-centers``): the library's default, the k centers' labels
  used in the fit too (k + s labels: shown for information, not comparable at equal s).

Writes ``regression.csv`` (mean and standard deviation over the repetitions),
``regression_runs.csv`` (every run), ``regression.md`` and ``regression.png`` under ``--out``.

Run ``coreselect reproduce regression --help``. The gas sensor set of the paper is used when
``--gas-sensor PATH`` is given (UCI's official files); diamonds and randhie are read offline.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import time

import numpy as np

from .._argparse import number

__all__ = ["main", "run", "prepare", "one_minus_r2", "ratio_intervals"]

logger = logging.getLogger(__name__)

METHODS = ("ours", "ours-paper", "uniform", "leverage", "leverage-sketched")


def one_minus_r2(A: np.ndarray, y: np.ndarray, coef: np.ndarray) -> float:
    """``1 - R^2 = ||A coef - y||^2 / ||y - mean(y)||^2``.

    Examples
    --------
    >>> import numpy as np
    >>> one_minus_r2(np.ones((2, 1)), np.array([0.0, 2.0]), np.array([1.0]))
    1.0
    """
    r = A @ coef - y
    tot = float(np.sum((y - y.mean()) ** 2))
    return float(r @ r) / tot if tot > 0 else float("nan")


def prepare(X: np.ndarray, y: np.ndarray, *, validation_fraction: float = 0.2, seed=0,
            max_rows: int | None = None):
    """Split, standardise on the training rows, append an intercept column.

    Returns ``(A_train, y_train, A_val, y_val)``.
    """
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    perm = rng.permutation(n)
    if max_rows is not None and max_rows < n:
        perm = perm[:max_rows]
        n = max_rows
    n_val = max(1, int(round(validation_fraction * n)))
    val, tr = perm[:n_val], perm[n_val:]
    mu = X[tr].mean(axis=0)
    sd = X[tr].std(axis=0)
    sd[sd == 0] = 1.0

    def design(rows):
        Z = (X[rows] - mu) / sd
        return np.c_[Z, np.ones(len(rows))]

    return design(tr), y[tr], design(val), y[val]


def _load(name: str, gas_path: str | None):
    from ..datasets import regression as ds

    if name == "diamonds":
        return ds.load_diamonds()
    if name == "randhie":
        return ds.load_randhie()
    if name == "cps1988":
        return ds.load_cps1988()
    if name == "gas_sensor":
        if not gas_path:
            raise SystemExit("the gas_sensor data set needs --gas-sensor PATH (UCI's files).")
        return ds.load_gas_sensor(gas_path)
    raise SystemExit(f"unknown data set {name!r}; choose diamonds, randhie, cps1988 or "
                     "gas_sensor.")


def run(name: str, X: np.ndarray, y: np.ndarray, *, multiples, repetitions: int,
        cluster_fraction: float = 0.1, clustering: str = "kmedian", seed: int = 0,
        with_centers: bool = False, max_rows: int | None = None, max_iter: int = 20,
        fit_sample_size="auto", mix: float | str = "auto",
        clusterings: int | None = None) -> tuple[list[dict], dict]:
    """Run the experiment on one data set; return every run's figures and the timings."""
    from .. import kz_clustering, regression_sample
    from ..baselines import leverage_sample, leverage_scores, sketched_leverage_scores, uniform
    from ..regression import kmedoids_clustering, weighted_lstsq

    Atr, ytr, Ava, yva = prepare(X, y, seed=seed, max_rows=max_rows)
    n, d = Atr.shape
    k = max(1, int(round(cluster_fraction * n)))
    sizes = [int(m * d) for m in multiples]
    oracle = ytr.__getitem__
    t0 = time.perf_counter()
    h_exact = leverage_scores(Atr)
    timings = {"leverage_exact_s": time.perf_counter() - t0, "n": n, "d": d, "k": k,
               "clustering_s": [], "leverage_sketched_s": []}
    rows: list[dict] = []

    def record(method, rep, s, coef, labels):
        rows.append({"dataset": name, "method": method, "rep": rep, "size": s,
                     "size_over_d": s / d, "labels": int(labels),
                     "train_1mR2": one_minus_r2(Atr, ytr, coef),
                     "val_1mR2": one_minus_r2(Ava, yva, coef)})

    n_cl = repetitions if not clusterings else min(int(clusterings), repetitions)
    fitted: dict[int, object] = {}
    for rep in range(repetitions):
        rng = np.random.default_rng([seed, rep])
        if rep % n_cl not in fitted:
            t0 = time.perf_counter()
            crng = np.random.default_rng([seed, rep, 1])
            if clustering == "kmedoids":
                fitted[rep % n_cl] = kmedoids_clustering(Atr[:, :-1], k, seed=crng)
            else:
                fitted[rep % n_cl] = kz_clustering(Atr[:, :-1], k, z=1.0, seed=crng,
                                                   max_iter=max_iter,
                                                   fit_sample_size=fit_sample_size)
            timings["clustering_s"].append(time.perf_counter() - t0)
        cl = fitted[rep % n_cl]
        t0 = time.perf_counter()
        h_sk = sketched_leverage_scores(Atr, seed=rng)
        timings["leverage_sketched_s"].append(time.perf_counter() - t0)
        for s in sizes:
            res = regression_sample(Atr, oracle, s, n_clusters=None, clustering=cl,
                                    use_centers=False, mix=mix, seed=rng)
            record("ours", rep, s, res.coef, res.n_labels)
            res = regression_sample(Atr, oracle, s, n_clusters=None, clustering=cl,
                                    use_centers=False, mix=0.0, seed=rng)
            record("ours-paper", rep, s, res.coef, res.n_labels)
            if with_centers:
                res = regression_sample(Atr, oracle, s, n_clusters=None, clustering=cl,
                                        use_centers=True, mix=mix, seed=rng)
                record("ours+centers", rep, s, res.coef, res.n_labels)
            sel = uniform(n, s, seed=rng, replace=False)
            record("uniform", rep, s, weighted_lstsq(Atr[sel.indices], ytr[sel.indices]), s)
            for method, h in (("leverage", h_exact), ("leverage-sketched", h_sk)):
                sel = leverage_sample(Atr, s, scores=h, seed=rng)
                uniq, w = sel.unique()
                record(method, rep, s, weighted_lstsq(Atr[uniq], ytr[uniq], w), len(uniq))
        logger.info("%s: repetition %d/%d done", name, rep + 1, repetitions)
    return rows, timings


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over the repetitions, per data set, method and size."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["size"]), []).append(r)
    out = []
    for (name, method, s), rs in groups.items():
        tr = np.array([r["train_1mR2"] for r in rs])
        va = np.array([r["val_1mR2"] for r in rs])
        out.append({"dataset": name, "method": method, "size": s,
                    "size_over_d": rs[0]["size_over_d"], "reps": len(rs),
                    "labels_mean": float(np.mean([r["labels"] for r in rs])),
                    "train_mean": float(tr.mean()), "train_std": float(tr.std()),
                    "val_mean": float(va.mean()), "val_std": float(va.std()),
                    "train_median": float(np.median(tr)), "val_median": float(np.median(va))})
    return out


def _write_csv(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def ratio_intervals(runs: list[dict], method: str, *, reference: str = "leverage",
                    n_boot: int = 2000, seed: int = 0) -> dict[tuple, tuple[float, float]]:
    """95% bootstrap intervals of ``mean(method) / mean(reference)`` (validation 1 - R^2).

    The repetitions are resampled in pairs (the same repetition of both methods), per data set
    and sample size. At small s a few near-singular fits dominate every mean, so these
    intervals are wide; they say which differences the repetitions can resolve.

    Parameters
    ----------
    runs : list of dict
        One per run, with ``dataset``, ``method``, ``size``, ``rep`` and ``val_1mR2`` (the
        rows of ``regression_runs.csv``).
    method, reference : str
        The numerator's and the denominator's method.
    n_boot : int, default=2000
        Bootstrap resamples.
    seed : int, default=0

    Returns
    -------
    dict
        ``(dataset, size) -> (low, high)``, for every pair with at least 2 shared repetitions.

    Examples
    --------
    >>> runs = [{"dataset": "d", "method": m, "size": 10, "rep": i, "val_1mR2": v * (i + 1)}
    ...         for i in range(5) for m, v in (("ours", 2.0), ("leverage", 1.0))]
    >>> ratio_intervals(runs, "ours")
    {('d', 10): (2.0, 2.0)}
    """
    by: dict[tuple, dict[int, float]] = {}
    for r in runs:
        by.setdefault((r["dataset"], r["method"], r["size"]), {})[int(r["rep"])] = r["val_1mR2"]
    rng = np.random.default_rng(seed)
    out = {}
    for (name, m, s), vals in by.items():
        ref = by.get((name, reference, s))
        if m != method or not ref:
            continue
        reps = sorted(set(vals) & set(ref))
        if len(reps) < 2:
            continue
        a = np.array([vals[i] for i in reps])
        b = np.array([ref[i] for i in reps])
        pick = rng.integers(0, len(reps), size=(n_boot, len(reps)))
        ratio = a[pick].mean(axis=1) / b[pick].mean(axis=1)
        out[(name, s)] = (float(np.quantile(ratio, 0.025)), float(np.quantile(ratio, 0.975)))
    return out


def markdown(summary: list[dict], timings: dict[str, dict],
             runs: list[dict] | None = None) -> str:
    """The results as Markdown: the means of every method, then ours against the targets."""
    lines = ["# Linear regression on a selected sample (paper Figure 1)", ""]
    for name, t in timings.items():
        lines.append(
            f"- **{name}**: n_train={t['n']}, d={t['d']} (with intercept), k={t['k']}; "
            f"exact leverage {t['leverage_exact_s']:.3f} s, sketched leverage "
            f"{np.mean(t['leverage_sketched_s']):.3f} s, k-median clustering "
            f"{np.mean(t['clustering_s']):.3f} s (mean of {len(t['clustering_s'])} clusterings)"
        )
    methods = [m for m in METHODS + ("ours+centers",)
               if any(r["method"] == m for r in summary)]
    lines += ["", "Validation 1 - R^2, mean +/- one standard deviation over the repetitions "
              "(training set in brackets).", "",
              "| data | s | s/d | " + " | ".join(methods) + " |",
              "|" + "---|" * (len(methods) + 3)]
    by = {(r["dataset"], r["method"], r["size"]): r for r in summary}
    names = list(dict.fromkeys(r["dataset"] for r in summary))
    for name in names:
        for s in sorted({r["size"] for r in summary if r["dataset"] == name}):
            cells = []
            for m in methods:
                r = by.get((name, m, s))
                cells.append("" if r is None else
                             f"{r['val_mean']:.4f} +/- {r['val_std']:.4f} "
                             f"({r['train_mean']:.4f})")
            sd = by[(name, methods[0], s)]["size_over_d"]
            lines.append(f"| {name} | {s} | {sd:g} | " + " | ".join(cells) + " |")
    ours_like = [m for m in ("ours", "ours-paper") if m in methods]
    if not ours_like or "leverage" not in methods:
        return "\n".join(lines) + "\n"
    cis = {m: ratio_intervals(runs, m) for m in ours_like} if runs else {}
    lines += ["", "Against the targets: `/lev` is the validation mean over exact leverage "
              "sampling's (95% paired bootstrap interval over the repetitions in brackets), "
              "`median` the same for the medians, `< uni` whether the mean is below "
              "uniform's.", "",
              "| data | s/d | uniform/lev | "
              + " | ".join(f"{m}/lev | {m} median | {m} < uni" for m in ours_like) + " |",
              "|" + "---|" * (3 + 3 * len(ours_like))]
    for name in names:
        for s in sorted({r["size"] for r in summary if r["dataset"] == name}):
            lev, uni = by.get((name, "leverage", s)), by.get((name, "uniform", s))
            if lev is None:
                continue
            cells = [f"{uni['val_mean'] / lev['val_mean']:.3f}" if uni else ""]
            for m in ours_like:
                ours = by.get((name, m, s))
                if ours is None:
                    cells += ["", "", ""]
                    continue
                ratio = f"{ours['val_mean'] / lev['val_mean']:.3f}"
                if (name, s) in cis.get(m, {}):
                    lo, hi = cis[m][(name, s)]
                    ratio += f" [{lo:.2f}, {hi:.2f}]"
                med = (f"{ours['val_median'] / lev['val_median']:.3f}"
                       if "val_median" in ours else "")
                below = "yes" if uni and ours["val_mean"] < uni["val_mean"] else "no"
                cells += [ratio, med, below]
            lines.append(f"| {name} | {lev['size_over_d']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(summary: list[dict], path: str) -> bool:
    """Plot 1 - R^2 (train and validation) against s for every data set; False if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is missing (pip install coreselect[plot]): no figure")
        return False
    names = list(dict.fromkeys(r["dataset"] for r in summary))
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.6 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, (key, title) in enumerate((("train", "training"), ("val", "validation"))):
            ax = axes[i, j]
            for m in dict.fromkeys(r["method"] for r in summary):
                rs = sorted((r for r in summary if r["dataset"] == name and r["method"] == m),
                            key=lambda r: r["size"])
                if not rs:
                    continue
                x = np.array([r["size"] for r in rs])
                mu = np.array([r[f"{key}_mean"] for r in rs])
                sd = np.array([r[f"{key}_std"] for r in rs])
                ax.plot(x, mu, marker="o", ms=3, label=m)
                # one standard deviation; on the log axis the band is cut at mean / 10
                ax.fill_between(x, np.maximum(mu - sd, mu / 10), mu + sd, alpha=0.2)
            ax.set_title(f"{name}: {title} set")
            ax.set_xlabel("sample size s")
            ax.set_ylabel("1 - R^2")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _mix_arg(text: str):
    if text == "auto":
        return text
    return number(float, lambda v: 0 <= v < 1, "'auto' or a number in [0, 1)")(text)


def main(argv=None) -> int:
    """``coreselect reproduce regression``: the paper's Figure 1 on real regression tables."""
    parser = argparse.ArgumentParser(
        prog="coreselect reproduce regression",
        description="Linear regression on a selected sample: ours (Algorithm 2) against "
                    "uniform and leverage-score sampling (paper Figure 1).")
    parser.add_argument("--datasets", nargs="+", default=["diamonds", "randhie", "cps1988"],
                        help="diamonds, randhie, cps1988, gas_sensor (default: diamonds "
                             "randhie cps1988; gas_sensor is added when --gas-sensor is given)")
    parser.add_argument("--gas-sensor", metavar="PATH",
                        help="folder or zip of the UCI gas sensor drift set (batchN.dat files)")
    parser.add_argument("--repetitions", type=int, default=100,
                        help="repetitions per point (default 100, as in the paper)")
    parser.add_argument("--multiples", default="2,4,6,8,10,15,20",
                        help="sample sizes as multiples of d (default 2,4,6,8,10,15,20)")
    parser.add_argument("--cluster-fraction", type=float, default=0.1,
                        help="k as a fraction of the training rows (default 0.1)")
    parser.add_argument("--clustering", choices=["kmedian", "kmedoids"], default="kmedian")
    parser.add_argument("--max-iter", type=int, default=20,
                        help="k-median improvement steps at most (default 20)")
    parser.add_argument("--fit-sample-size", type=int, default=None,
                        help="rows the k-median centers are fitted on (default: the engine's)")
    parser.add_argument("--clusterings", type=int, default=None,
                        help="distinct clusterings, reused in turn by the repetitions "
                             "(default: a new one every repetition)")
    parser.add_argument("--mix", type=_mix_arg, default="auto",
                        help="mix of 'ours': 'auto' (default, the library's) or a number in "
                             "[0, 1); 'ours-paper' always runs with 0")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads (threadpoolctl), e.g. 1 on a busy machine")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="use a random subset of this many rows of each set")
    parser.add_argument("--with-centers", action="store_true",
                        help="also run ours with the centers' labels in the fit (k + s labels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/regression", help="output folder")
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--from-runs", metavar="CSV",
                        help="summarise an existing regression_runs.csv instead of running")
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be >= 1")
    try:
        multiples = [float(m) for m in args.multiples.split(",") if m.strip()]
    except ValueError:
        parser.error(f"--multiples must be numbers separated by commas; got {args.multiples!r}")
    if not multiples or min(multiples) <= 0:
        parser.error("--multiples must be positive")
    names = list(args.datasets)
    if args.gas_sensor and "gas_sensor" not in names:
        names.append("gas_sensor")
    os.makedirs(args.out, exist_ok=True)
    if args.from_runs:
        with open(args.from_runs, newline="") as fh:
            runs = [{key: (val if key in ("dataset", "method") else
                           int(float(val)) if key in ("rep", "size", "labels") else float(val))
                     for key, val in r.items()} for r in csv.DictReader(fh)]
        return _write_outputs(args, runs, {}, write_runs=False)
    limiter = None
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.blas_threads)
    all_rows, timings = [], {}
    try:
        for name in names:
            data = _load(name, args.gas_sensor)
            logger.info("%s: %d x %d", name, *data.X.shape)
            rows, t = run(name, data.X, data.y, multiples=multiples,
                          repetitions=args.repetitions, cluster_fraction=args.cluster_fraction,
                          clustering=args.clustering, seed=args.seed,
                          with_centers=args.with_centers, max_rows=args.max_rows,
                          max_iter=args.max_iter, mix=args.mix, clusterings=args.clusterings,
                          fit_sample_size=args.fit_sample_size or "auto")
            all_rows += rows
            timings[name] = t
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    return _write_outputs(args, all_rows, timings, write_runs=True)


def _write_outputs(args, runs: list[dict], timings: dict, *, write_runs: bool) -> int:
    summary = summarise(runs)
    if write_runs:
        _write_csv(os.path.join(args.out, "regression_runs.csv"), runs)
    _write_csv(os.path.join(args.out, "regression.csv"), summary)
    text = markdown(summary, timings, runs)
    with open(os.path.join(args.out, "regression.md"), "w") as fh:
        fh.write(text)
    if not args.no_figure:
        figure(summary, os.path.join(args.out, "regression.png"))
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
