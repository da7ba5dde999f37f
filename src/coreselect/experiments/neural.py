"""Section 5.2 of the paper: data selection for neural networks (Figure 2, its table, Figure 3).

For each budget k and repetition: train on k' = 0.2 k uniform points (warm start), embed the
pool with that model's last hidden layer, select the other k - k' points with each method,
train a fresh model on everything selected and measure its test accuracy. With ``--rounds r``
the k - k' labels are spent in r rounds of select -> label -> retrain -> re-embed: each method
selects round i + 1 with its own model trained on everything labelled up to round i, and the
test accuracy is reported after every round.

Methods: ``uniform``; ``kcenter`` (k-center greedy of Sener & Savarese 2018, from the warm
start); ``margin``, ``least_confidence``, ``entropy`` (the warm model's outputs on the whole
pool); ``loss`` and ``grad`` (Algorithm 1: k'' = 0.2 k clusters of the embeddings, the loss or
the squared last-layer gradient norm at the k'' snapped centers, then k - k' - k'' points drawn
without replacement with p ~ l(A(e)) + lam ||e - A(e)||^2; the centers are labelled too);
``badge`` (Ash et al. 2020) and ``cluster_margin`` (Citovsky et al. 2021: the 10 x size
lowest-margin rows, round-robin over a k-means clustering of the embeddings, smallest cluster
first), from the registry with the rows labelled so far as ``labelled``; ``scores``
(score-aware sensitivity sampling: the registry's ``sensitivity`` strategy with the warm
model's ``probs``: k'' clusters of the embeddings, the loss at one random row of each, then
draws in proportion to ``margin_uncertainty(probs) ** 4``; trained without weights, the
library's default for such a selection).

Outputs (in ``--out``): ``neural_<dataset>.csv`` (one row per budget, repetition, method and
round, with seeds and times), ``neural_<dataset>_summary.csv`` and ``_summary.json``,
``neural_<dataset>.md`` (the paper's table with our figures beside it; one line per round with
several rounds), ``neural_<dataset>_rounds.jsonl`` (each completed round's new rows, what
``--resume`` continues from), ``neural_<dataset>_labels/`` (one label cache per budget,
repetition and method: every label the method paid for, asked once, kept across resumes), ``fig2_<dataset>.png`` (accuracy against budget, bands of one
standard deviation) and ``fig3_<dataset>.png`` (selection time against budget, including the
pass of the model over the pool that the method needs: embeddings or outputs).

Defaults (chosen on measurements, see the closing note of issue 6): pixels standardised
with each set's usual mean and standard deviation (``--no-normalize``: [0, 1] only), and the
sampled rows trained on without their importance weights (``--weighting loss`` weights them):
on Fashion-MNIST and MNIST at k = 2,000 the unweighted loss-based selection gained more over
uniform than the weighted one. The k''-clustering is fitted on 5,000 rows with 5 improvement
steps after the D^2 seeding (``--fit-sample-size auto --max-iter 20``: the library's defaults):
Algorithm 1 needs only a constant-factor clustering, the accuracy was as good and the selection
5-7 times faster. Every row of the CSV records the settings it ran with.

Reproducibility: repetition r of budget k uses ``numpy.random.SeedSequence(seed,
spawn_key=(k, r))`` (round i > 1 selects with ``spawn_key=(k, r, i - 1)``); a rerun with the same ``--seed`` (and ``--threads``) gives the same
numbers.

Run as ``coreselect reproduce neural --dataset fashion-mnist --budgets 2000 --reps 20``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import stats

__all__ = ["main", "run", "summarize", "PAPER_K2000", "METHODS"]

logger = logging.getLogger(__name__)

METHODS = ("uniform", "kcenter", "margin", "least_confidence", "entropy", "loss", "grad",
           "badge", "cluster_margin", "scores")

# The paper's table (Figure 2b): mean test accuracy at k = 2,000.
PAPER_K2000 = {
    "mnist": {"uniform": 0.9130, "kcenter": 0.9134, "loss": 0.9203, "grad": 0.9207},
    "fashion-mnist": {"uniform": 0.8091, "kcenter": 0.7692, "loss": 0.8140, "grad": 0.8107},
    "cifar10": {"uniform": 0.4587, "kcenter": 0.4491, "loss": 0.4590, "grad": 0.4598},
}
_LABELS = {
    "uniform": "uniform", "kcenter": "coreset [SS18]", "margin": "margin",
    "least_confidence": "least confidence", "entropy": "entropy",
    "loss": "loss-based Alg. 1", "grad": "gradient-based Alg. 1",
    "badge": "BADGE", "cluster_margin": "Cluster-Margin",
    "scores": "sensitivity + scores",
}
_UNCERTAINTY = ("margin", "least_confidence", "entropy")
_GRAY_STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530),
               "generated": (0.0, 1.0)}
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)

FIELDS = [
    "dataset", "budget", "rep", "seed", "method", "round", "rounds", "accuracy", "n_train",
    "n_warm",
    "n_centers", "n_sampled", "oracle_queries", "embedded", "select_time_s", "pool_pass_s",
    "train_time_s", "weighting", "lam", "cluster_frac", "warm_frac", "layer", "threads",
    "fit_sample_size", "max_iter", "normalize", "labels_asked",
]


# ------------------------------------------------------------------------------ data
def _generated_images(n: int, rng: np.random.Generator, side: int = 28):
    """Ten classes of noisy blobs at class-specific places (for tests and dry runs)."""
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:side, 0:side]
    cy = 6 + 4 * (labels // 5)[:, None, None] * 2
    cx = 4 + 4 * (labels % 5)[:, None, None]
    img = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    img = img + rng.normal(0, 40, (n, side, side))
    return np.clip(img, 0, 255).astype(np.uint8), labels.astype(np.int64)


def load_data(name: str, data_dir=None, *, pool_size=None, test_size=None, seed: int = 0,
              normalize: bool = False):
    """Train pool and test set as :class:`~coreselect.integrations.torch.ArrayDataset`.

    Pixels are scaled to [0, 1]; CIFAR-10 is always standardised per channel, MNIST and
    Fashion-MNIST only with ``normalize`` (their usual mean and standard deviation).
    """
    from ..datasets import images as im
    from ..integrations.torch import ArrayDataset

    if name == "generated":
        rng = np.random.default_rng(seed)
        xtr, ytr = _generated_images(pool_size or 3000, rng)
        xte, yte = _generated_images(test_size or 1000, rng)
    else:
        loader = {"mnist": im.load_mnist, "fashion-mnist": im.load_fashion_mnist,
                  "cifar10": im.load_cifar10}[name]
        xtr, ytr = loader(data_dir, split="train")
        xte, yte = loader(data_dir, split="test")
    # fixed slices (not random) so that a smaller run is a prefix of the data set
    if pool_size:
        xtr, ytr = xtr[:pool_size], ytr[:pool_size]
    if test_size:
        xte, yte = xte[:test_size], yte[:test_size]
    if name == "cifar10":
        kw = {"mean": _CIFAR_MEAN, "std": _CIFAR_STD}
    else:
        kw = {"mean": _GRAY_STATS[name][0], "std": _GRAY_STATS[name][1]} if normalize else {}
        xtr, xte = xtr[:, None], xte[:, None]  # (n, 1, 28, 28)
    return ArrayDataset(xtr, ytr, **kw), ArrayDataset(xte, yte, **kw)


# ---------------------------------------------------------------------- one selection
def sensitivity_select(E, oracle, n_centers: int, size: int, *, lam="auto", seed=None,
                       fit_sample_size="auto", max_iter: int = 20):
    """Algorithm 1 as in section 5.2: cluster, query the centers, sample the rest.

    The ``size`` rows are drawn without replacement among the rows that are not centers
    (the centers are labelled anyway), with inclusion probabilities proportional to
    ``l(A(e)) + lam ||e - A(e)||^2`` (capped at 1); weights are ``1 / pi``.
    ``fit_sample_size`` and ``max_iter`` go to the clustering (fewer rows and steps: faster,
    still a constant-factor clustering after the D^2 seeding).

    Returns a :class:`~coreselect.Selection` over the rows of ``E``.

    Examples
    --------
    >>> import numpy as np
    >>> E = np.random.default_rng(0).normal(size=(300, 4))
    >>> loss = np.abs(E[:, 0])
    >>> sel = sensitivity_select(E, loss.__getitem__, 10, 50, seed=0)
    >>> sel.size, sel.n_queries, bool(np.isin(sel.indices, sel.query_indices).any())
    (50, 10, False)
    """
    from ..sampler import SensitivitySampler
    from ..selection import Selection
    from ..sensitivity import (
        draw_without_replacement,
        inclusion_probabilities,
        resolve_lam,
        sensitivity_probabilities,
    )

    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    sampler = SensitivitySampler(n_centers, seed=rng, fit_sample_size=fit_sample_size,
                                 max_iter=max_iter).fit(E)
    q = sampler.query_indices_
    losses = np.asarray(oracle(q), dtype=np.float64)
    hat_total = float(np.dot(sampler.cluster_sizes_.astype(np.float64), losses))
    lam_value, rule = resolve_lam(lam, hat_total, sampler.cost_)
    p = sensitivity_probabilities(losses[sampler.labels_], sampler.distances_, lam_value)
    p[q] = 0.0
    p /= p.sum()
    pi = inclusion_probabilities(p, size)
    idx = draw_without_replacement(pi, rng)
    return Selection(
        indices=idx, weights=1.0 / pi[idx], probabilities=pi[idx], n=E.shape[0],
        centers=q[sampler.labels_[idx]], query_indices=q, query_losses=losses,
        cluster_sizes=sampler.cluster_sizes_, replace=False, method="sensitivity",
        params={"lam": lam_value, "lam_rule": rule, "n_clusters": int(n_centers),
                "cost": float(sampler.cost_)},
    )


def _select(method, *, E, probs, rest, labelled, m, n_centers, oracles, lam, rng, fit):
    """Rows (of the pool) to label this round, and their weights: ``(idx, w, queries,
    n_centers)``; ``idx`` ends with the queried centers (loss, grad), whose labels the oracle
    has already asked for."""
    from .. import baselines

    if method == "uniform":
        sel = baselines.uniform(rest.shape[0], m, seed=rng)
        return rest[sel.indices], None, 0, 0
    if method == "kcenter":
        sel = baselines.k_center_greedy(E, m, initial=labelled, seed=rng)
        return sel.indices, None, 0, 0
    if method in _UNCERTAINTY:
        sel = getattr(baselines, method)(probs[rest], m, seed=rng)
        return rest[sel.indices], None, rest.shape[0], 0
    if method in ("badge", "cluster_margin"):
        options = ({"fit_sample_size": fit["fit_sample_size"], "max_iter": fit["max_iter"]}
                   if method == "cluster_margin" else {})
        sel = baselines.get_strategy(method)(m, X=E, probs=probs, labelled=labelled, seed=rng,
                                             **options)
        return sel.indices, None, rest.shape[0], 0
    if method == "scores":
        sel = baselines.get_strategy("sensitivity")(
            m, X=E, probs=probs, oracle=oracles["loss"], labelled=labelled,
            n_clusters=n_centers, seed=rng, **fit)
        idx = np.concatenate([sel.indices, sel.query_indices])
        return idx, None, rest.shape[0] + sel.n_queries, sel.n_queries
    if method in ("loss", "grad"):
        oracle = oracles[method]
        sel = sensitivity_select(E[rest], lambda i: oracle(rest[i]), n_centers,
                                 m - n_centers, lam=lam, seed=rng, **fit)
        idx = np.concatenate([rest[sel.indices], rest[sel.query_indices]])
        w = np.concatenate([sel.weights * (sel.size / sel.weights.sum()),
                            np.ones(sel.n_queries)])
        return idx, w, sel.n_queries, sel.n_queries
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}.")


def round_sizes(m: int, rounds: int) -> list[int]:
    """New labels of each round: ``m`` split as evenly as possible, the first rounds first.

    Examples
    --------
    >>> round_sizes(800, 3)
    [267, 267, 266]
    """
    base, extra = divmod(int(m), int(rounds))
    return [base + (j < extra) for j in range(int(rounds))]


def _label_function(dataset):
    """The label oracle of the experiment: the data set's own labels (a stand-in for the
    person who labels); every call goes through a label cache (see :func:`run`)."""
    labels = dataset.tensors[1].numpy()

    def label(rows):
        return labels[np.asarray(rows, dtype=np.int64)].astype(np.float64)

    return label


def read_round_records(path) -> dict[tuple, list[dict]]:
    """The completed rounds recorded in a ``*_rounds.jsonl`` file, by ``(budget, rep,
    method)``: one dict per round, in order (``indices``: the round's new rows; ``weights``:
    their training weights or None). A partly written last line is ignored."""
    out: dict[tuple, list[dict]] = {}
    if path is None or not os.path.exists(path):
        return out
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a killed run
            key = (int(rec["budget"]), int(rec["rep"]), rec["method"])
            got = out.setdefault(key, [])
            if int(rec["round"]) == len(got) + 1:
                got.append(rec)
    return out


def _append_record(path, rec: dict) -> None:
    if path is None:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# -------------------------------------------------------------------------- the run
def run(dataset: str, budgets, reps: int, methods, *, seed: int = 0, data_dir=None,
        pool_size=None, test_size=None, epochs: int = 10, batch_size: int = 32,
        lr: float = 1e-3, warm_frac: float = 0.2, cluster_frac: float = 0.2, lam="auto",
        weighting: str = "none", layer: str = "penultimate", threads: int = 1,
        fit_sample_size=5000, max_iter: int = 5, normalize: bool = True,
        progress: bool = True, csv_path=None, done=None, rounds: int = 1,
        rounds_path=None, labels_dir=None, completed=None) -> list[dict]:
    """Run the experiment; returns one dict per (budget, repetition, method, round).

    With ``rounds = r``, each method labels its ``k - k'`` rows in ``r`` rounds of select ->
    label -> retrain -> re-embed (round sizes from :func:`round_sizes`; ``k''`` split
    likewise); round 1 selects with the warm-started model, as the one-round experiment
    does, each later round with the method's own model of the round before. A row per round
    gives the test accuracy of the model trained on everything labelled so far.

    Rows are appended to ``csv_path`` as they come, and each completed round to
    ``rounds_path`` (JSON lines: the round's new rows and weights), so that a stopped run keeps
    what it did. ``done`` is a set of ``(budget, rep)`` pairs to skip; ``completed`` holds the
    rounds already done (from :func:`read_round_records`): they are replayed from their rows
    (the model retrained, no label asked) and the run goes on from there. Every label goes
    through a :class:`coreselect.LossCache` per (budget, rep, method), in ``labels_dir``
    when given, so that no row's label is ever asked twice, across stops and resumes.
    """
    import torch

    from .. import LossCache, ask_oracle
    from .._progress import Progress
    from ..integrations import torch as ct

    rounds = int(rounds)
    if rounds < 1:
        raise ValueError(f"rounds must be an int >= 1; got {rounds}.")
    completed = completed or {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train_ds, test_ds = load_data(dataset, data_dir, pool_size=pool_size,
                                      test_size=test_size, seed=seed, normalize=normalize)
        label_fn = _label_function(train_ds)
        n = len(train_ds)
        model_name = "cnn" if dataset == "cifar10" else "mlp"
        lay = None if layer == "penultimate" else layer
        needs_embed = {"kcenter", "loss", "grad", "badge", "cluster_margin", "scores"}
        needs_probs = {"margin", "least_confidence", "entropy", "badge", "cluster_margin",
                       "scores"}
        rows = []
        todo = [(k, r) for k in budgets for r in range(reps) if (k, r) not in (done or set())]
        bar = Progress(len(todo) * len(methods) * rounds, f"neural {dataset}",
                       enabled=progress, unit="runs")
        for k, r in todo:
            ss = np.random.SeedSequence(seed, spawn_key=(int(k), int(r)))
            s_warm, s_init0, s_train0, s_init, s_train, s_sel = ss.spawn(6)
            k_warm = max(1, int(round(warm_frac * k)))
            n_centers = max(1, int(round(cluster_frac * k)))
            m = k - k_warm
            sizes = round_sizes(m, rounds)
            centers = round_sizes(n_centers, rounds)
            if min(s - c for s, c in zip(sizes, centers, strict=True)) < 1 or k > n:
                raise ValueError(f"budget {k} is too small for {rounds} round(s) or larger "
                                 f"than the pool ({n}).")
            rng_warm = np.random.default_rng(s_warm)
            warm = np.sort(rng_warm.choice(n, size=k_warm, replace=False))

            sel_seeds = {0: dict(zip(METHODS, s_sel.spawn(len(METHODS)), strict=True))}

            def fresh(j, method, k=k, r=r, sel_seeds=sel_seeds):
                """The selection seed of round j (from 0) of a method."""
                if j not in sel_seeds:
                    parent = np.random.SeedSequence(seed, spawn_key=(int(k), int(r), int(j)))
                    sel_seeds[j] = dict(zip(METHODS, parent.spawn(len(METHODS)), strict=True))
                return sel_seeds[j][method]

            def fit_model(idx, w, s_init=s_init, s_train=s_train):
                weights = None if w is None or weighting == "none" else w
                sub = ct.WeightedSubset(train_ds, idx, weights, normalize=False)
                return ct.train(ct.make_model(model_name, seed=np.random.default_rng(s_init)),
                                sub, epochs=epochs, batch_size=batch_size, lr=lr,
                                weighting=weighting, seed=np.random.default_rng(s_train))

            model0 = None
            shared = None  # round 1's inputs, from the warm-started model, for every method
            for method in methods:
                done_rounds = completed.get((int(k), int(r), method), [])[:rounds]
                if len(done_rounds) == rounds:
                    bar.update(rounds)
                    continue
                cache = LossCache(None if labels_dir is None else
                                  Path(labels_dir) / f"k{int(k)}_r{int(r)}_{method}.csv")

                def ask(idx, cache=cache):
                    return ask_oracle(label_fn, idx, cache=cache, batch_size=None,
                                      name="label_oracle")

                ask(warm)
                # training weights: 1 for the warm start, the sample's own for loss and grad
                weighted = method in ("loss", "grad")
                labelled, weights = warm, np.ones(k_warm)
                for rec in done_rounds:  # replay: rows and weights, no label asked
                    new = np.asarray(rec["indices"], dtype=np.int64)
                    missing = [i for i in new.tolist() if i not in cache]
                    if missing:
                        raise ValueError(f"the round record of {method} (k={k}, rep={r}, "
                                         f"round {rec['round']}) names rows whose labels the "
                                         f"label cache does not hold, e.g. {missing[0]}.")
                    labelled = np.concatenate([labelled, new])
                    weights = np.concatenate([weights, rec["weights"] or np.ones(new.size)])
                    bar.update(1)
                model = (fit_model(labelled, weights if weighted else None)
                         if done_rounds else None)
                for j in range(len(done_rounds), rounds):
                    if j == 0:
                        if shared is None:
                            model0 = ct.train(
                                ct.make_model(model_name, seed=np.random.default_rng(s_init0)),
                                ct.WeightedSubset(train_ds, warm), epochs=epochs,
                                batch_size=batch_size, lr=lr,
                                seed=np.random.default_rng(s_train0))
                            shared = _pool_outputs(ct, model0, train_ds, lay,
                                                   embed=bool(needs_embed & set(methods)),
                                                   probs=bool(needs_probs & set(methods)))
                        base, (E, probs, embed_time, predict_time) = model0, shared
                    else:
                        base = model
                        (E, probs, embed_time, predict_time) = _pool_outputs(
                            ct, model, train_ds, lay, embed=method in needs_embed,
                            probs=method in needs_probs)
                    rest = np.setdiff1d(np.arange(n), labelled)
                    oracles = {"loss": ct.loss_oracle(base, train_ds),
                               "grad": ct.grad_norm_oracle(base, train_ds)}
                    key = "loss" if method == "scores" else method
                    if key in oracles:  # a center's loss needs its label: ask it first
                        raw = oracles[key]
                        oracles[key] = lambda i, raw=raw, ask=ask: (ask(i), raw(i))[1]
                    t0 = time.perf_counter()
                    idx, w, queries, n_c = _select(
                        method, E=E, probs=probs, rest=rest, labelled=labelled, m=sizes[j],
                        n_centers=centers[j], oracles=oracles, lam=lam,
                        rng=np.random.default_rng(fresh(j, method)),
                        fit={"fit_sample_size": fit_sample_size, "max_iter": max_iter})
                    select_time = time.perf_counter() - t0
                    ask(idx[: idx.size - n_c])  # the centers' labels were asked above
                    labelled = np.concatenate([labelled, idx])
                    weights = np.concatenate([weights, np.ones(idx.size) if w is None else w])
                    t0 = time.perf_counter()
                    model = fit_model(labelled, weights if weighted else None)
                    train_time = time.perf_counter() - t0
                    acc = ct.evaluate(model, test_ds)
                    row = {
                        "dataset": dataset, "budget": int(k), "rep": int(r),
                        "seed": int(seed), "method": method, "round": j + 1,
                        "rounds": rounds, "accuracy": acc,
                        "n_train": int(np.unique(labelled).size),
                        "n_warm": k_warm, "n_centers": n_c, "n_sampled": int(idx.size - n_c),
                        "oracle_queries": int(queries),
                        "embedded": n if method in needs_embed else 0,
                        "select_time_s": select_time,
                        "pool_pass_s": ((embed_time if method in needs_embed else 0.0)
                                        + (predict_time if method in needs_probs else 0.0)),
                        "train_time_s": train_time, "weighting": weighting,
                        "lam": lam, "cluster_frac": cluster_frac, "warm_frac": warm_frac,
                        "layer": layer, "threads": threads,
                        "fit_sample_size": fit_sample_size, "max_iter": max_iter,
                        "normalize": normalize, "labels_asked": len(cache),
                    }
                    rows.append(row)
                    if csv_path is not None:
                        _append_csv(csv_path, row)
                    _append_record(rounds_path, {
                        "budget": int(k), "rep": int(r), "method": method, "round": j + 1,
                        "rounds": rounds, "seed": int(seed), "indices": idx.tolist(),
                        "weights": None if w is None else [float(v) for v in w]})
                    bar.update(1)
        bar.close()
        return rows
    finally:
        torch.set_num_threads(old_threads)


def _pool_outputs(ct, model, dataset, layer, *, embed: bool, probs: bool):
    """The model's embeddings and class probabilities on the pool (each only if needed),
    with the time each pass took."""
    t0 = time.perf_counter()
    E = (ct.embed(model, dataset, layer=layer or "penultimate").astype(np.float64)
         if embed else None)
    embed_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    P = ct.predict_proba(model, dataset) if probs else None
    return E, P, embed_time, time.perf_counter() - t0


def _append_csv(path, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_rows(path) -> list[dict]:
    """Rows of a CSV written by :func:`run`, with numbers parsed (a file written before
    rounds existed reads as round 1 of 1)."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("accuracy") in (None, "") or row.get("labels_asked", "") is None:
                continue  # a line cut by a killed run
            for key in ("round", "rounds"):
                row[key] = row.get(key) or "1"
            for key in ("budget", "rep", "seed", "n_train", "n_warm", "n_centers", "n_sampled",
                        "oracle_queries", "embedded", "threads", "round", "rounds"):
                row[key] = int(row[key])
            if row.get("labels_asked"):
                row["labels_asked"] = int(row["labels_asked"])
            for key in ("accuracy", "select_time_s", "pool_pass_s", "train_time_s",
                        "cluster_frac", "warm_frac"):
                row[key] = float(row[key])
            out.append(row)
    return out


# ---------------------------------------------------------------------- statistics
def _t_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    mean = float(np.mean(x))
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * np.std(x, ddof=1)
                 / np.sqrt(x.size))
    return mean, mean - half, mean + half


def summarize(rows: list[dict]) -> list[dict]:
    """Per (budget, round, method): mean and std accuracy, the paired difference to uniform
    (same round) with a 95% t interval, mean selection time and the oracle queries.

    Rows without a ``round`` are round 1.

    Examples
    --------
    >>> rows = [{"budget": 10, "rep": r, "method": m, "accuracy": a, "select_time_s": 0.0,
    ...          "pool_pass_s": 0.0, "oracle_queries": 0, "embedded": 0}
    ...         for r, (u, l) in enumerate([(0.5, 0.6), (0.7, 0.9)])
    ...         for m, a in (("uniform", u), ("loss", l))]
    >>> s = summarize(rows)
    >>> [(x["method"], x["round"], round(x["mean"], 2), round(x["diff_uniform"], 2)) for x in s]
    [('uniform', 1, 0.6, nan), ('loss', 1, 0.75, 0.15)]
    """
    out = []
    budgets = sorted({r["budget"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for k in budgets:
        for j in sorted({r.get("round", 1) for r in rows if r["budget"] == k}):
            at = [r for r in rows if r["budget"] == k and r.get("round", 1) == j]
            uni = {r["rep"]: r["accuracy"] for r in at if r["method"] == "uniform"}
            for m in methods:
                sub = [r for r in at if r["method"] == m]
                if not sub:
                    continue
                acc = np.array([r["accuracy"] for r in sub])
                paired = np.array([r["accuracy"] - uni[r["rep"]] for r in sub
                                   if r["rep"] in uni])
                d_mean, d_lo, d_hi = (_t_interval(paired) if paired.size and m != "uniform"
                                      else (float("nan"),) * 3)
                out.append({
                    "budget": k, "round": int(j), "method": m, "reps": int(acc.size),
                    "mean": float(acc.mean()),
                    "std": float(acc.std(ddof=1)) if acc.size > 1 else float("nan"),
                    "diff_uniform": d_mean, "diff_ci_low": d_lo, "diff_ci_high": d_hi,
                    "select_time_s": float(np.mean([r["select_time_s"] for r in sub])),
                    "pool_pass_s": float(np.mean([r["pool_pass_s"] for r in sub])),
                    "oracle_queries": int(np.mean([r["oracle_queries"] for r in sub])),
                    "embedded": int(np.mean([r["embedded"] for r in sub])),
                    "n_train": int(np.mean([r.get("n_train", 0) for r in sub])),
                })
    return out


def markdown(summary: list[dict], dataset: str) -> str:
    """The paper's table for one data set, our figures beside the paper's (k = 2,000, one
    round); with several rounds, one line per method and round (the labels so far in
    ``labelled``)."""
    paper = PAPER_K2000.get(dataset, {})
    lines = [f"## {dataset}", ""]
    many = any(s.get("round", 1) > 1 for s in summary)
    for k in sorted({s["budget"] for s in summary}):
        head = "| method | round | labelled " if many else "| method "
        lines += [
            f"k = {k}" + (" (accuracy after each round of select -> label -> retrain)"
                          if many else ""),
            "",
            head + "| accuracy (mean ± std) | paper (k=2000) | Δ vs uniform [95% CI] | reps "
            "| selection time (s) | pool pass (s) | oracle queries | rows embedded |",
            "|---|" + ("---|---|" if many else "") + "---|---|---|---|---|---|---|---|",
        ]
        sub = sorted((x for x in summary if x["budget"] == k),
                     key=lambda x: (METHODS.index(x["method"]), x.get("round", 1)))
        for s in sub:
            one = s.get("round", 1) == 1 and not many
            p = paper.get(s["method"]) if k == 2000 and one else None
            diff = ("—" if s["method"] == "uniform" or np.isnan(s["diff_uniform"]) else
                    f"{s['diff_uniform']:+.4f} [{s['diff_ci_low']:+.4f}, {s['diff_ci_high']:+.4f}]")
            where = f" {s.get('round', 1)} | {s.get('n_train', '')} |" if many else ""
            lines.append(
                f"| {_LABELS[s['method']]} |{where} {s['mean']:.4f} ± {s['std']:.4f} | "
                f"{'' if p is None else f'{p:.4f}'} | {diff} | {s['reps']} | "
                f"{s['select_time_s']:.3f} | {s['pool_pass_s']:.2f} | {s['oracle_queries']} | "
                f"{s['embedded']} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(summary: list[dict], dataset: str, out_dir: Path, tag: str = "") -> list[Path]:
    """Figure 2 (accuracy against budget) and Figure 3 (selection time against budget), at
    the last round of each budget."""
    last = {}
    for s in summary:
        last[s["budget"]] = max(last.get(s["budget"], 1), s.get("round", 1))
    summary = [s for s in summary if s.get("round", 1) == last[s["budget"]]]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is missing (pip install coreselect[plot]): no figures.")
        return []
    methods = [m for m in METHODS if any(s["method"] == m for s in summary)]
    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m in methods:
        sub = sorted((s for s in summary if s["method"] == m), key=lambda s: s["budget"])
        k = np.array([s["budget"] for s in sub])
        mu = np.array([s["mean"] for s in sub])
        sd = np.nan_to_num(np.array([s["std"] for s in sub]))
        ax.plot(k, mu, marker="o", label=_LABELS[m])
        ax.fill_between(k, mu - sd, mu + sd, alpha=0.15)
    ax.set_xlabel("k (labelled points)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{dataset}: accuracy (mean ± 1 std)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / f"fig2_{dataset}{tag}.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m in methods:
        sub = sorted((s for s in summary if s["method"] == m), key=lambda s: s["budget"])
        ax.plot([s["budget"] for s in sub],
                [max(s["select_time_s"] + s["pool_pass_s"], 1e-4) for s in sub],
                marker="o", label=_LABELS[m])
    ax.set_yscale("log")
    ax.set_xlabel("k (labelled points)")
    ax.set_ylabel("selection time incl. pool pass (s)")
    ax.set_title(f"{dataset}: selection runtime")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / f"fig3_{dataset}{tag}.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------- CLI
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints; got {text!r}")
    return values


def _methods(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in METHODS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    return values


def _lam(text: str):
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"lam must be 'auto' or a float >= 0; got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"lam must be 'auto' or a float >= 0; got {text!r}")
    return value


def _fit_size(text: str):
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an int; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coreselect reproduce neural",
        description="The paper's neural-network experiments (section 5.2, Figures 2 and 3).",
    )
    p.add_argument("--dataset", default="fashion-mnist",
                   choices=["mnist", "fashion-mnist", "cifar10", "generated"])
    p.add_argument("--data-dir", default=None, help="folder of the data set's official files")
    p.add_argument("--budgets", type=_int_list, default=[2000], help="e.g. 1000,2000,3000")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--methods", type=_methods, default=list(METHODS),
                   help="comma-separated, from " + ",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warm-frac", type=float, default=0.2, help="k'/k")
    p.add_argument("--cluster-frac", type=float, default=0.2, help="k''/k")
    p.add_argument("--lam", type=_lam, default="auto")
    p.add_argument("--weighting", default="none", choices=["loss", "resample", "none"],
                   help="how the sample weights of loss/grad reach training (default: ignored, "
                        "as in the paper; 'loss' weights each row's loss)")
    p.add_argument("--layer", default="penultimate",
                   help="embedding layer: 'penultimate' or a module name of the model")
    p.add_argument("--fit-sample-size", type=_fit_size, default=5000,
                   help="rows the k''-clustering is fitted on ('auto' or an int)")
    p.add_argument("--max-iter", type=int, default=5, help="clustering improvement steps")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="standardise MNIST / Fashion-MNIST pixels (CIFAR-10 always is)")
    p.add_argument("--pool-size", type=int, default=None, help="use the first N training rows")
    p.add_argument("--test-size", type=int, default=None, help="use the first N test rows")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="results/neural")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of select -> label -> retrain -> re-embed for the k - k' "
                        "labels after the warm start (1: the paper's one-shot selection)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows and rounds already done and run only the missing ones "
                        "(no label is asked twice: answers are kept in <out>/<stem>_labels/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                   help="run nothing: merge these result files (first row of each budget, "
                        "repetition and method wins) and write the tables and figures")
    return p


def main(argv=None) -> int:
    """``coreselect reproduce neural``: run, then write CSV, Markdown and figures."""
    args = build_parser().parse_args(argv)
    if args.reps < 1:
        build_parser().error(f"--reps must be >= 1; got {args.reps}")
    if args.rounds < 1:
        build_parser().error(f"--rounds must be >= 1; got {args.rounds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"neural_{args.dataset}{args.tag}"
    csv_path = out / f"{stem}.csv"
    t0 = time.perf_counter()
    if args.from_csv:
        return _report(merge_rows([read_rows(p) for p in args.from_csv]), args, out, stem, t0)
    rounds_path = out / f"{stem}_rounds.jsonl"
    labels_dir = out / f"{stem}_labels"
    done, previous, completed = set(), [], {}
    if args.resume and csv_path.exists():
        previous = read_rows(csv_path)
        if rounds_path.exists():  # the rounds completed, each with its rows
            completed = read_round_records(rounds_path)
            other = {int(rec.get("rounds", args.rounds)) for recs in completed.values()
                     for rec in recs} - {args.rounds}
            if other:
                build_parser().error(f"--resume: {rounds_path} was written with --rounds "
                                     f"{sorted(other)[0]}; got --rounds {args.rounds}.")
            previous = [r for r in previous
                        if r["round"] <= len(completed.get((r["budget"], r["rep"], r["method"]),
                                                           ()))]
        else:  # a file written before rounds: whole repetitions only
            have: dict[tuple[int, int], set] = {}
            for r in previous:
                have.setdefault((r["budget"], r["rep"]), set()).add(r["method"])
            done = {key for key, got in have.items() if set(args.methods) <= got}
            previous = [r for r in previous if (r["budget"], r["rep"]) in done]
        os.replace(csv_path, str(csv_path) + ".bak")
        for r in previous:
            _append_csv(csv_path, r)
    else:
        for path in (csv_path, rounds_path):
            if path.exists():
                os.remove(path)
        if labels_dir.exists():
            shutil.rmtree(labels_dir)
    labels_dir.mkdir(exist_ok=True)
    rows = previous + run(
        args.dataset, args.budgets, args.reps, args.methods, seed=args.seed,
        data_dir=args.data_dir, pool_size=args.pool_size, test_size=args.test_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warm_frac=args.warm_frac,
        cluster_frac=args.cluster_frac, lam=args.lam, weighting=args.weighting,
        layer=args.layer, threads=args.threads, fit_sample_size=args.fit_sample_size,
        max_iter=args.max_iter, normalize=args.normalize, progress=not args.quiet, csv_path=csv_path,
        done=done, rounds=args.rounds, rounds_path=rounds_path, labels_dir=labels_dir,
        completed=completed)
    return _report(rows, args, out, stem, t0)


def merge_rows(tables: list[list[dict]]) -> list[dict]:
    """Rows of several runs, the first one of each (budget, rep, method, round) kept.

    Runs with the same ``--seed`` share their warm starts and training seeds, so methods run
    apart (e.g. the slow k-center greedy) pair with the others repetition by repetition.
    """
    seen, out = set(), []
    for rows in tables:
        for r in rows:
            key = (r["budget"], r["rep"], r["method"], r.get("round", 1))
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


def _report(rows, args, out: Path, stem: str, t0: float) -> int:
    csv_path = out / f"{stem}.csv"
    if args.from_csv:
        seeds = {r["seed"] for r in rows}
        if len(seeds) > 1:
            logger.warning("merging runs with different seeds %s: pairs are not paired", seeds)
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS, restval="")
            writer.writeheader()
            writer.writerows(rows)
    summary = summarize(rows)
    with open(out / f"{stem}_summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    (out / f"{stem}_summary.json").write_text(json.dumps(
        [{key: (None if isinstance(v, float) and np.isnan(v) else v) for key, v in s.items()}
         for s in summary], indent=1) + "\n")
    table = markdown(summary, args.dataset)
    (out / f"{stem}.md").write_text(table + "\n")
    figs = plot(summary, args.dataset, out, args.tag)
    print(table)
    print(f"wrote {csv_path}, {out / (stem + '_summary.csv')}, {out / (stem + '.md')}"
          + "".join(f", {f}" for f in figs) + f" in {time.perf_counter() - t0:.1f} s "
          f"(load {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
