"""Figure 3 of the paper: selection time of each method on the same embeddings.

A warm-start MLP (appendix C) is trained on k' = 0.2 k uniform Fashion-MNIST images (generated
images when the data set is missing), the pool is embedded once, and each method selects the
other k - k' points: uniform; k-center greedy [SS18] from the warm start; margin (needs the
model's output on every pool row: that pass is timed as part of it); loss- and gradient-based
Algorithm 1 (k'' = 0.2 k clusters, the oracle on the k'' centers, sampling; "loss fast": the
clustering fitted on 5,000 rows with 5 improvement steps). Times exclude
the shared embedding pass, which is printed apart. Ratios are measured in the same run.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_neural_runtime.py``
(``--quick`` for k = 1000 only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_header  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="1000,2000,4000")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs PyTorch: pip install coreselect[torch]")
        return 0
    from coreselect import baselines
    from coreselect.datasets import DatasetNotFoundError
    from coreselect.experiments.neural import load_data, sensitivity_select
    from coreselect.integrations import torch as ct

    torch.set_num_threads(args.threads)
    budgets = [1000] if args.quick else [int(b) for b in args.budgets.split(",")]
    try:
        train_ds, _ = load_data("fashion-mnist", test_size=10)
        name = "Fashion-MNIST"
    except DatasetNotFoundError:
        train_ds, _ = load_data("generated", pool_size=60000, test_size=10, seed=args.seed)
        name = "generated images"
    n = len(train_ds)
    print(machine_header())
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}; pool: {name}, "
          f"n = {n}\n")
    header = (f"{'k':>5} {'embed (s)':>9} {'uniform':>9} {'k-center':>9} {'margin':>9} "
              f"{'loss':>9} {'grad':>9} {'loss fast':>9} {'kcenter/loss':>12} "
              f"{'kcenter/fast':>12} {'margin/loss':>11} {'load':>5}")
    print(header)
    for k in budgets:
        rng = np.random.default_rng([args.seed, k])
        k_warm, k2 = int(0.2 * k), int(0.2 * k)
        m = k - k_warm
        warm = np.sort(rng.choice(n, k_warm, replace=False))
        rest = np.setdiff1d(np.arange(n), warm)
        model = ct.train(ct.make_model("mlp", seed=rng), ct.WeightedSubset(train_ds, warm),
                         seed=rng)
        t0 = time.perf_counter()
        E = ct.embed(model, train_ds).astype(np.float64)
        t_embed = time.perf_counter() - t0
        times = {}
        t0 = time.perf_counter()
        baselines.uniform(rest.shape[0], m, seed=rng)
        times["uniform"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        baselines.k_center_greedy(E, m, initial=warm)
        times["kcenter"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = ct.predict_proba(model, train_ds, indices=rest)
        baselines.margin(probs, m, seed=rng)
        times["margin"] = time.perf_counter() - t0
        fast = {"fit_sample_size": 5000, "max_iter": 5}
        for kind, make, fit in (("loss", ct.loss_oracle, {}), ("grad", ct.grad_norm_oracle, {}),
                                ("loss_fast", ct.loss_oracle, fast)):
            oracle = make(model, train_ds)
            t0 = time.perf_counter()
            sensitivity_select(E[rest], lambda i, o=oracle, r=rest: o(r[i]), k2, m - k2,
                               seed=rng, **fit)
            times[kind] = time.perf_counter() - t0
        print(f"{k:5d} {t_embed:9.2f} {times['uniform']:9.4f} {times['kcenter']:9.2f} "
              f"{times['margin']:9.2f} {times['loss']:9.2f} {times['grad']:9.2f} "
              f"{times['loss_fast']:9.2f} {times['kcenter'] / times['loss']:12.1f} "
              f"{times['kcenter'] / times['loss_fast']:12.1f} {times['margin'] / times['loss']:11.2f} "
              f"{os.getloadavg()[0]:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
