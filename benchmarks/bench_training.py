"""Training a classifier on the rows each strategy selects: one round and three rounds.

Issue 15's training comparison, logistic-regression part. Per seed:

1. a warm start of ``W`` uniform labelled rows of the pool and a logistic regression
   (scikit-learn, ``max_iter=500``) trained on them;
2. its class probabilities on the pool (``probs``) and the pool's features ``X`` (the
   standardised pixels for digits, 50 PCA components for Fashion-MNIST);
3. every strategy of the registry picks ``B`` new rows with ``labelled=`` the warm rows, the
   same budget for all (``size`` = new labels, queried centers included): uniform, kcenter,
   margin, entropy, badge (its penultimate layer: ``X``), cluster_margin, sensitivity with
   k model runs only (``oracle(idx)``: the warm model's cross-entropy against the true
   labels at the k queried rows, no ``probs``) and sensitivity with scores (the same with
   ``probs=``: draws in proportion to ``margin_uncertainty(probs) ** 4``, the registry's
   default; trained unweighted by the library's default, ``Selection.training_weights``);
4. a logistic regression retrained on the warm rows and the new rows; accuracy on the test
   set (digits: a fixed stratified 30% of the 1,797 rows held out; Fashion-MNIST: the
   10,000 test images, PCA fitted on the 60,000 training images).

The two sensitivity strategies are trained three ways (the same selection each time):

- **weighted**: the drawn rows with their sample weights ``sel.weights`` (from
  ``sel.all_labelled()``) divided by their mean, so that the new rows' weights average 1;
  the warm rows, and the queried centers that were not drawn (they carry no sample weight
  but their labels were paid for), get weight 1;
- **tempered**: the same with ``w ** 0.5`` (then divided by its mean);
- **unweighted**: every row weight 1.

The mean-1 normalisation keeps the L2 penalty of the logistic regression at the same
strength as for the unweighted fits.

Printed per data set and budget: mean accuracy, the paired difference with uniform (same
seed, same warm start) in accuracy points with a 95% paired t interval, the seeds on which
the method beat uniform, the new labels spent (always ``B``), the model runs on the pool and
the selection time; then "sensitivity with scores" against margin, BADGE and Cluster-Margin,
paired; then, for the two sensitivity strategies, the design ``"auto"`` chose, the spread of
the normalised weights and weighted / tempered minus unweighted, paired on the same rows. For digits also 3 rounds of ``B/3`` (select -> label -> retrain -> new
probabilities), accuracy after each round.

Fashion-MNIST needs its files (``apt-get install dataset-fashion-mnist``, or
``FASHION_MNIST_DIR``); without them it is skipped.

Seeds: 40 for digits, 15 for Fashion-MNIST (seed s draws the warm start and seeds every
strategy; all strategies of a seed share its warm start).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_training.py`` (10 to 13 minutes on one
core at load 2 to 4; ``--quick`` about 1 minute; ``--seeds N``; ``--only digits|fashion_mnist``;
``--budgets 1000 2000`` for Fashion-MNIST; ``--no-rounds``). Results of a run are kept in
``benchmarks/results/bench_training.txt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_header  # noqa: E402

from coreselect.baselines import get_strategy  # noqa: E402

MAX_ITER = 500

# (label, registry name, inputs it gets); the sensitivity ones are trained three ways
STRATEGIES = [
    ("uniform", "uniform", ()),
    ("kcenter", "kcenter", ("X",)),
    ("margin", "margin", ("probs",)),
    ("entropy", "entropy", ("probs",)),
    ("badge", "badge", ("probs", "X")),
    ("cluster_margin", "cluster_margin", ("probs", "X")),
    ("sensitivity (k runs)", "sensitivity", ("X", "oracle")),
    ("sensitivity + scores", "sensitivity", ("X", "oracle", "probs")),
]
WEIGHTINGS = [("weighted", 1.0), ("tempered w^0.5", 0.5), ("unweighted", 0.0)]


# ------------------------------------------------------------------------------ data sets
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xp, Xt, yp, yt = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xp)
    return {"name": "digits", "title": f"digits ({len(yp):,} pool rows x 64 standardised, "
                                       f"{len(yt):,} test rows)",
            "X": scaler.transform(Xp), "y": yp, "Xt": scaler.transform(Xt), "yt": yt,
            "warm": 100}


def fashion_mnist():
    from sklearn.decomposition import PCA

    from coreselect.datasets import load_fashion_mnist

    try:
        images, y = load_fashion_mnist()
        timages, yt = load_fashion_mnist(split="test")
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"Fashion-MNIST not available ({str(exc).splitlines()[0]}); skipped\n")
        return None
    pca = PCA(50, random_state=0).fit(images.reshape(len(y), -1) / 255.0)
    X = pca.transform(images.reshape(len(y), -1) / 255.0)
    Xt = pca.transform(timages.reshape(len(yt), -1) / 255.0)
    return {"name": "fashion_mnist",
            "title": f"Fashion-MNIST ({len(y):,} train images -> 50 PCA, {len(yt):,} test)",
            "X": X, "y": np.asarray(y), "Xt": Xt, "yt": np.asarray(yt), "warm": 500}


# ------------------------------------------------------------------------------- training
def fit(X, y, weights=None):
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs not converged at max_iter: same for all
        return LogisticRegression(max_iter=MAX_ITER).fit(X, y, sample_weight=weights)


def cross_entropy(model, probs, y):
    """Per-row cross-entropy of a model's probabilities against the true labels (a class
    the model never saw gets probability 1e-12)."""
    column = {c: j for j, c in enumerate(model.classes_.tolist())}
    col = np.array([column.get(v, -1) for v in np.asarray(y).tolist()], dtype=np.int64)
    p = np.where(col >= 0, probs[np.arange(len(col)), np.maximum(col, 0)], 0.0)
    return -np.log(np.clip(p, 1e-12, None))


def training_weights(sel, power):
    """The new rows of a sensitivity selection and their training weights (see the module
    docstring): drawn rows ``w ** power`` over its mean, undrawn queried centers 1."""
    rows, w = sel.all_labelled()
    out = np.ones(rows.shape[0])
    drawn = w > 0
    if power > 0 and drawn.any():
        v = w[drawn] ** power
        out[drawn] = v / v.mean()
    return rows, out


def select(name, data, size, labelled, probs, model, seed):
    """Run one strategy; returns (new rows, selection, seconds, (pool rows scored, oracle
    calls))."""
    X, y = data["X"], data["y"]
    registry = dict((s[0], s) for s in STRATEGIES)[name]
    inputs = {}
    calls = {"n": 0}
    if "X" in registry[2]:
        inputs["X"] = X
    if "probs" in registry[2]:
        inputs["probs"] = probs
    if "oracle" in registry[2]:
        def oracle(idx):
            idx = np.asarray(idx)
            calls["n"] += idx.shape[0]
            return cross_entropy(model, probs[idx], y[idx])
        inputs["oracle"] = oracle
    if name == "uniform":
        inputs["n"] = X.shape[0]
    start = time.perf_counter()
    sel = get_strategy(registry[1])(size, labelled=labelled, seed=seed, **inputs)
    seconds = time.perf_counter() - start
    scored = X.shape[0] if "probs" in registry[2] else 0  # the pool's probabilities
    if registry[1] == "sensitivity":
        rows = sel.all_labelled()[0]
    else:
        rows = np.unique(sel.indices)
    return rows, sel, seconds, (scored, calls["n"])


def registry_name(name):
    return dict((s[0], s[1]) for s in STRATEGIES)[name]


def _variants(name):
    if name.startswith("sensitivity"):
        return [(f"{name}, {w}", p) for w, p in WEIGHTINGS]
    return [(name, None)]


def one_round(data, size, seed):
    """Every strategy once from the same warm start; {label: (acc, labels, seconds, runs)}."""
    X, y = data["X"], data["y"]
    rng = np.random.default_rng(seed)
    warm = np.sort(rng.choice(X.shape[0], data["warm"], replace=False))
    model = fit(X[warm], y[warm])
    probs = model.predict_proba(X)
    out, failed = {}, {}
    for name, _, _ in STRATEGIES:
        try:
            rows, sel, seconds, runs = select(name, data, size, warm, probs, model, seed)
            bad = np.intersect1d(rows, warm).shape[0]
            if registry_name(name) == "sensitivity":  # the spread of the weights, the design
                w1 = training_weights(sel, 1.0)[1][sel.all_labelled()[1] > 0]
                out[f"{name}: weights"] = (float(w1.min()), float(w1.max()),
                                           str(sel.params.get("design", "?")))
            for label, power in _variants(name):
                if power is None:
                    new, w = rows, np.ones(rows.shape[0])
                else:
                    new, w = training_weights(sel, power)
                idx = np.concatenate([warm, new])
                weights = np.concatenate([np.ones(warm.shape[0]), w])
                acc = fit(X[idx], y[idx], weights).score(data["Xt"], data["yt"])
                out[label] = (acc, (rows.shape[0], bad), seconds, runs)
        except Exception as exc:  # report, do not crash
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
    return out, failed


def rounds(data, size, n_rounds, seed):
    """n_rounds of size // n_rounds: select -> label -> retrain -> new probabilities.
    {label: [acc after round 1, ...]}; a weighted variant keeps its weights across rounds."""
    X, y = data["X"], data["y"]
    per = size // n_rounds
    rng = np.random.default_rng(seed)
    warm = np.sort(rng.choice(X.shape[0], data["warm"], replace=False))
    out, failed = {}, {}
    for name, _, _ in STRATEGIES:
        for label, power in _variants(name):
            try:
                labelled, weights, accs = warm, np.ones(warm.shape[0]), []
                model = fit(X[labelled], y[labelled])
                for r in range(n_rounds):
                    probs = model.predict_proba(X)
                    rows, sel, _, _ = select(name, data, per, labelled, probs, model,
                                             seed * 1000 + r)
                    if power is None:
                        new, w = rows, np.ones(rows.shape[0])
                    else:
                        new, w = training_weights(sel, power)
                    labelled = np.concatenate([labelled, new])
                    weights = np.concatenate([weights, w])
                    model = fit(X[labelled], y[labelled], weights)
                    accs.append(model.score(data["Xt"], data["yt"]))
                if np.unique(labelled).shape[0] != warm.shape[0] + n_rounds * per:
                    raise RuntimeError(f"{np.unique(labelled).shape[0] - warm.shape[0]} "
                                       f"distinct new labels, expected {n_rounds * per}")
                out[label] = accs
            except Exception as exc:
                failed[label] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return out, failed


# -------------------------------------------------------------------------------- tables
def paired(a, b):
    """Mean of a - b in points, its 95% paired t interval."""
    from scipy.stats import t

    d = 100.0 * (np.asarray(a) - np.asarray(b))
    if d.shape[0] < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = float(t.ppf(0.975, d.shape[0] - 1)) * d.std(ddof=1) / np.sqrt(d.shape[0])
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def fmt_diff(m, lo, hi):
    return f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _header(title):
    load = os.getloadavg()
    print(f"### {title}\n")
    print(f"load average (os.getloadavg): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")


def print_one_round(data, size, results, failures, seeds, seconds):
    _header(f"{data['title']}: warm start {data['warm']}, B = {size} new labels, "
            f"{len(seeds)} seeds")
    labels = [lab for name, _, _ in STRATEGIES for lab, _ in _variants(name)]
    ok = [s for s in seeds if "uniform" in results[s]]
    print("| method | accuracy (mean ± std) | Δ vs uniform, points [95% CI] | wins | "
          "new labels | labelled again | model runs: pool scored + oracle | selection (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for lab in labels:
        have = [s for s in ok if lab in results[s]]
        if not have:
            print(f"| {lab} | failed | | | | | | |")
            continue
        acc = np.array([results[s][lab][0] for s in have])
        uni = np.array([results[s]["uniform"][0] for s in have])
        new = sorted({results[s][lab][1][0] for s in have})
        again = sum(results[s][lab][1][1] for s in have)
        scored = np.mean([results[s][lab][3][0] for s in have])
        asked = np.mean([results[s][lab][3][1] for s in have])
        runs = f"{scored:,.0f}" + (f" + {asked:,.0f} oracle" if asked else "")
        secs = np.mean([results[s][lab][2] for s in have])
        diff = "—" if lab == "uniform" else fmt_diff(*paired(acc, uni))
        wins = "" if lab == "uniform" else f"{int((acc > uni).sum())}/{len(have)}"
        n_seeds = "" if len(have) == len(ok) else f" ({len(have)} seeds)"
        print(f"| {lab}{n_seeds} | {acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.4f}"
              f" | {diff} | {wins} | {'/'.join(map(str, new))} | {again} | {runs} | "
              f"{secs:.2f} |")
    print()
    # sensitivity with scores against the methods that score the whole pool
    peers = ["margin", "badge", "cluster_margin"]
    print("sensitivity + scores minus the pool-scoring methods (paired, points [95% CI]):\n")
    print("| sensitivity + scores | " + " | ".join(f"- {p}" for p in peers) + " |")
    print("|---|" + "---|" * len(peers))
    for w, _ in WEIGHTINGS:
        lab = f"sensitivity + scores, {w}"
        cells = []
        for p in peers:
            have = [s for s in ok if lab in results[s] and p in results[s]]
            if len(have) < 2:
                cells.append("n/a")
                continue
            cells.append(fmt_diff(*paired([results[s][lab][0] for s in have],
                                          [results[s][p][0] for s in have])))
        print(f"| {w} | " + " | ".join(cells) + " |")
    print()
    # the weighting choices, paired on the same selections
    print("training weights of the sensitivity selections (the same rows each time; drawn "
          "rows' weights divided by their mean: min - max, mean over seeds):\n")
    print("| strategy | design chosen | weights min - max | weighted - unweighted | "
          "tempered - unweighted |")
    print("|---|---|---|---|---|")
    for name, reg, _ in STRATEGIES:
        if reg != "sensitivity":
            continue
        have = [s for s in ok if f"{name}: weights" in results[s]]
        if len(have) < 2:
            continue
        stats = [results[s][f"{name}: weights"] for s in have]
        designs = sorted({d for _, _, d in stats})
        counts = ", ".join(f"{d} {sum(x[2] == d for x in stats)}" for d in designs)
        acc = {w: [results[s][f"{name}, {w}"][0] for s in have] for w, _ in WEIGHTINGS}
        print(f"| {name} | {counts} | {np.mean([x[0] for x in stats]):.2f} - "
              f"{np.mean([x[1] for x in stats]):.2f} | "
              f"{fmt_diff(*paired(acc['weighted'], acc['unweighted']))} | "
              f"{fmt_diff(*paired(acc['tempered w^0.5'], acc['unweighted']))} |")
    print()
    _print_failures(failures)
    print(f"time: {seconds:.0f} s\n")


def _print_failures(failures):
    msgs = {}
    for seed, fails in failures.items():
        for name, msg in fails.items():
            msgs.setdefault((name, msg), []).append(seed)
    if not msgs:
        print("failed strategies: none\n")
        return
    print("failed strategies:\n")
    for (name, msg), seeds in sorted(msgs.items()):
        print(f"- {name} (seeds {seeds}): {msg}")
    print()


def print_rounds(data, size, n_rounds, results, failures, seeds, seconds):
    _header(f"{data['title']}: warm start {data['warm']}, {n_rounds} rounds of "
            f"{size // n_rounds} new labels, {len(seeds)} seeds")
    labels = [lab for name, _, _ in STRATEGIES for lab, _ in _variants(name)]
    ok = [s for s in seeds if "uniform" in results[s]]
    cols = " | ".join(f"Δ round {r + 1}" for r in range(n_rounds))
    print(f"| method | accuracy after round {n_rounds} | {cols} [95% CI] |")
    print("|---|---|" + "---|" * n_rounds)
    for lab in labels:
        have = [s for s in ok if lab in results[s]]
        if not have:
            print(f"| {lab} | failed |" + " |" * n_rounds)
            continue
        acc = np.array([results[s][lab] for s in have])
        uni = np.array([results[s]["uniform"] for s in have])
        cells = []
        for r in range(n_rounds):
            m, lo, hi = paired(acc[:, r], uni[:, r])
            cells.append("—" if lab == "uniform" else
                         (fmt_diff(m, lo, hi) if r == n_rounds - 1 else f"{m:+.2f}"))
        print(f"| {lab} | {acc[:, -1].mean():.4f} | " + " | ".join(cells) + " |")
    print()
    _print_failures(failures)
    print(f"time: {seconds:.0f} s\n")


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per data set (default 40 for digits, 15 for Fashion-MNIST)")
    ap.add_argument("--only", choices=["digits", "fashion_mnist"], default=None)
    ap.add_argument("--budgets", type=int, nargs="*", default=None,
                    help="Fashion-MNIST budgets (default 1000 2000)")
    ap.add_argument("--no-rounds", action="store_true", help="skip the 3-round digits table")
    ap.add_argument("--quick", action="store_true",
                    help="5 digits seeds, 3 Fashion-MNIST seeds at B = 1000")
    args = ap.parse_args(argv)

    print(machine_header())
    print(f"logistic regression: scikit-learn, lbfgs, C = 1, max_iter = {MAX_ITER}\n")
    total = time.perf_counter()
    plans = []
    if args.only in (None, "digits"):
        n = args.seeds or (5 if args.quick else 40)
        plans.append((digits, [150], n, not args.no_rounds))
    if args.only in (None, "fashion_mnist"):
        n = args.seeds or (3 if args.quick else 15)
        budgets = args.budgets or ([1000] if args.quick else [1000, 2000])
        plans.append((fashion_mnist, budgets, n, False))
    for loader, budgets, n_seeds, with_rounds in plans:
        start = time.perf_counter()
        data = loader()
        if data is None:
            continue
        print(f"{data['name']}: loaded in {time.perf_counter() - start:.1f} s\n", flush=True)
        seeds = list(range(n_seeds))
        for size in budgets:
            start = time.perf_counter()
            results, failures = {}, {}
            for seed in seeds:
                results[seed], fails = one_round(data, size, seed)
                if fails:
                    failures[seed] = fails
            print_one_round(data, size, results, failures, seeds, time.perf_counter() - start)
            sys.stdout.flush()
        if with_rounds:
            start = time.perf_counter()
            results, failures = {}, {}
            size = budgets[0]
            for seed in seeds:
                results[seed], fails = rounds(data, size, 3, seed)
                if fails:
                    failures[seed] = fails
            print_rounds(data, size, 3, results, failures, seeds, time.perf_counter() - start)
            sys.stdout.flush()
    print(f"total time: {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
