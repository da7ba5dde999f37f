"""Tutorial (a): choose 2,000 Fashion-MNIST images to label, and train on them with the weights.

The recipe of section 5.2 of the paper, with the public API:

1. label a small uniform warm-start set (20% of the budget) and train a model on it;
2. embed the whole pool with the model's last hidden layer;
3. cluster the embeddings (20% of the budget as centers) and label the centers: their loss
   under the warm model is what the oracle returns;
4. draw the rest of the budget by sensitivity sampling, without replacement;
5. train a fresh model on everything labelled, the drawn rows weighted by their sample
   weights (and, for comparison, without them), and compare with the warm start plus a
   uniform sample of the same number of labels, over ``--reps`` seeds.

Run ``python examples/label_fashion_mnist.py`` (about a minute per model on 2 cores), or
``--small`` for a quick check. Fashion-MNIST is read from ``/usr/share/datasets/fashion-mnist``
(Debian: ``apt-get install dataset-fashion-mnist``), ``$FASHION_MNIST_DIR`` or ``--data``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import coreselect as cs
from coreselect.datasets import DatasetNotFoundError, load_fashion_mnist

try:
    from coreselect.integrations.torch import (
        ArrayDataset,
        WeightedSubset,
        embed,
        evaluate,
        loss_oracle,
        make_model,
        train,
    )
except ImportError:  # pragma: no cover
    sys.exit("this tutorial needs PyTorch: pip install coreselect[torch]")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=2000, help="labels to pay for (2000)")
    p.add_argument("--pool-size", type=int, default=None, help="first rows of the train split")
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=3, help="seeds (warm starts) to average over")
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--small", action="store_true",
                   help="a quick run: 4,000 pool rows, 300 labels, 3 epochs")
    args = p.parse_args(argv)
    if args.small:
        args.budget = min(args.budget, 300)
        args.pool_size = args.pool_size or 4000
        args.test_size = args.test_size or 1000
        args.epochs = min(args.epochs, 3)
        args.reps = 1
    return args


def one_run(pool, test, args, rng) -> tuple[dict, dict]:
    """Steps 1 to 5 once; returns the accuracies and a few facts about the selection."""
    n = len(pool)
    k_warm, k_centers = args.budget // 5, args.budget // 5
    s = args.budget - k_warm - k_centers

    # 1. warm start on a uniform sample
    t0 = time.perf_counter()
    warm = rng.choice(n, size=k_warm, replace=False)
    model = train(make_model("mlp", seed=rng), WeightedSubset(pool, warm),
                  epochs=args.epochs, seed=rng)
    acc = {"warm start only": evaluate(model, test)}

    # 2. embeddings of the pool (one forward pass, no labels needed)
    rest = np.setdiff1d(np.arange(n), warm)
    E = embed(model, pool, indices=rest)

    # 3. the oracle: the warm model's loss; asking it for a row means labelling that row
    oracle_on_pool = loss_oracle(model, pool)
    asked = []

    def oracle(idx):
        asked.append(len(idx))
        return oracle_on_pool(rest[idx])

    # 4. cluster, ask the centers, draw the rest without replacement
    sampler = cs.SensitivitySampler(k_centers, seed=rng).fit(E)
    losses = oracle(sampler.query_indices_)
    sel = sampler.sample(losses, s, replace=False)
    t_select = time.perf_counter() - t0
    drawn = rest[sel.indices]
    centers = rest[sel.query_indices]
    labelled = np.union1d(np.union1d(warm, centers), drawn)
    info = {"selection": sel, "labels": int(labelled.size), "calls": sum(asked),
            "seconds": t_select}

    # 5. train a fresh model on what was labelled: the drawn rows with their weights (mean 1),
    #    the warm start and the centers with weight 1; or all unweighted; or uniform
    w = sel.weights * (s / sel.weights.sum())
    extra = np.setdiff1d(np.union1d(warm, centers), drawn)
    idx = np.concatenate([drawn, extra])
    weights = np.concatenate([w, np.ones(extra.size)])
    others = np.setdiff1d(np.arange(n), warm)
    uniform = np.concatenate([warm, rng.choice(others, size=idx.size - warm.size,
                                               replace=False)])
    train_seed = int(rng.integers(2**31))
    for name, rows, wts in [
        ("sensitivity, weighted", idx, weights),
        ("sensitivity, unweighted", idx, None),
        ("uniform", uniform, None),
    ]:
        m = train(make_model("mlp", seed=train_seed), WeightedSubset(pool, rows, wts),
                  epochs=args.epochs, seed=train_seed)
        acc[name] = evaluate(m, test)
    return acc, info


def main(argv=None) -> int:
    args = parse(argv)
    try:
        xtr, ytr = load_fashion_mnist(args.data, split="train")
        xte, yte = load_fashion_mnist(args.data, split="test")
    except DatasetNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    xtr, ytr = xtr[: args.pool_size], ytr[: args.pool_size]
    xte, yte = xte[: args.test_size], yte[: args.test_size]
    # pixels scaled to [0, 1], then standardised with the pool's mean and deviation
    mean, std = float(xtr.mean()) / 255, float(xtr.std()) / 255
    pool = ArrayDataset(xtr[:, None], ytr, mean=mean, std=std)   # (n, 1, 28, 28)
    test = ArrayDataset(xte[:, None], yte, mean=mean, std=std)
    k = args.budget // 5
    print(f"pool: {len(pool)} images, budget: {args.budget} labels "
          f"({k} warm start + {k} centers + {args.budget - 2 * k} sampled), {args.reps} seeds")

    runs = []
    for rep in range(args.reps):
        acc, info = one_run(pool, test, args, np.random.default_rng([args.seed, rep]))
        runs.append(acc)
        print(f"seed {rep}: {info['selection']}; lam = {info['selection'].params.get('lam'):.3g}; "
              f"labels paid: {info['labels']}, oracle calls: {info['calls']}; "
              f"{info['seconds']:.1f} s")

    uni = np.array([r["uniform"] for r in runs])
    print(f"\n{'training set':<26} {'labels':>7} {'test accuracy':>15} {'vs uniform':>11}")
    for name in runs[0]:
        a = np.array([r[name] for r in runs])
        labels = k if name == "warm start only" else info["labels"]
        print(f"{name:<26} {labels:>7} {a.mean():>8.4f} +/- {a.std():.4f} "
              f"{100 * (a - uni).mean():>+8.2f} pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
