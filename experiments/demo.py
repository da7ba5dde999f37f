"""``make demo``: the paper's neural-network experiment in small, then loss estimation.

Part 1 (section 5.2 of the paper, quick version): Fashion-MNIST, budget k = 2,000, methods
uniform, k-center greedy [SS18], loss- and gradient-based Algorithm 1, 3 repetitions, the
MLP of appendix C (10 epochs, batch 32, Adam 1e-3). Prints our table beside the paper's and
writes the accuracy and runtime figures to ``results/demo/``. Needs ``coreselect[torch]``;
without the Fashion-MNIST files it runs on generated images and says so.

Part 2: estimating a model's total loss over the pool with few inferences
(``experiments/demo_estimate.py``).

Run: ``make demo`` (or ``python experiments/demo.py --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def neural_part(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: pip install coreselect[torch] (skipping part 1)")
        return 0
    from coreselect.datasets import DatasetNotFoundError, load_fashion_mnist
    from coreselect.experiments import neural

    dataset = "fashion-mnist"
    extra = []
    try:
        load_fashion_mnist(split="test")
    except DatasetNotFoundError as exc:
        print(f"note: {exc}\n      running on generated images instead (not the paper's data).")
        dataset, extra = "generated", ["--pool-size", "20000", "--test-size", "5000"]
    argv = ["--dataset", dataset, "--budgets", str(args.budget), "--reps", str(args.reps),
            "--methods", "uniform,kcenter,loss,grad", "--seed", str(args.seed),
            "--threads", str(args.threads), "--out", args.out, *extra]
    if args.quiet:
        argv.append("--quiet")
    print(f"== part 1: data selection for a neural network ({dataset}, k = {args.budget}, "
          f"{args.reps} repetitions) ==\n", flush=True)
    return neural.main(argv)


def estimate_part(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from demo_estimate import main as estimate_main

    print("\n== part 2: estimating a model's total loss with few inferences ==\n", flush=True)
    return estimate_main(["--seed", str(args.seed), "--reps", str(args.estimate_reps)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/demo")
    ap.add_argument("--estimate-reps", type=int, default=100)
    ap.add_argument("--skip-neural", action="store_true")
    ap.add_argument("--skip-estimate", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rc = 0 if args.skip_neural else neural_part(args)
    if rc == 0 and not args.skip_estimate:
        rc = estimate_part(args)
    print(f"\ndemo done in {time.perf_counter() - t0:.0f} s (load average "
          f"{os.getloadavg()[0]:.2f})")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
