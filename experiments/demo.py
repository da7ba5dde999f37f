"""``make demo``: which rows to label for a small neural network, then a model's loss from few
inferences; each part ends with what its figures mean and what to try next.

Part 1 (the paper's section 5.2, quick version): Fashion-MNIST, 2,000 labels, four ways of
choosing which images to label, 3 repetitions, the small network of the paper's appendix C
(10 epochs). Prints the test accuracy of each way, beside the paper's, and draws it as points
with error bars (``results/demo/accuracy.png``). Needs ``coreselect[torch]``; without the
Fashion-MNIST files it runs on generated images and says so.

Part 2: estimating a model's total loss over the pool with few inferences
(``experiments/demo_estimate.py``).

Run: ``make demo`` (or ``python experiments/demo.py --help``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import textwrap
import time
from pathlib import Path

# How each way of choosing is called here, in plain words.
PLAIN = {
    "uniform": "random rows (uniform)",
    "kcenter": "rows spread over the space (k-center)",
    "loss": "sensitivity sampling, by loss",
    "grad": "sensitivity sampling, by gradient",
    "margin": "least margin",
    "least_confidence": "least confidence",
    "entropy": "highest entropy",
}
WHAT = {
    "uniform": "every image equally likely",
    "kcenter": "each new image as far as possible from those already chosen",
    "loss": "images drawn with probability ~ the warm model's loss at their cluster's center "
            "+ their distance to it, weighted",
    "grad": "the same, with the size of the loss gradient instead of the loss",
}


def say(text: str) -> None:
    """A paragraph of the conclusion, wrapped for a terminal."""
    print(textwrap.fill(text, width=92, initial_indent="  ", subsequent_indent="    "))


def _read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for key in ("mean", "std", "diff_uniform", "diff_ci_low", "diff_ci_high",
                    "select_time_s", "pool_pass_s"):
            r[key] = float(r[key]) if r.get(key) not in (None, "", "nan") else float("nan")
        r["reps"] = int(r["reps"])
    return rows


def _bars(summary: list[dict], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [PLAIN.get(s["method"], s["method"]) for s in summary]
    means = [s["mean"] for s in summary]
    stds = [0.0 if s["std"] != s["std"] else s["std"] for s in summary]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    # points, not bars: the axis does not start at 0, and a bar's length would mislead
    ax.errorbar(means, range(len(labels)), xerr=stds, fmt="o", capsize=4, color="#2f5f8a")
    uniform = [s["mean"] for s in summary if s["method"] == "uniform"]
    if uniform:
        ax.axvline(uniform[0], color="gray", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    lo = min(m - s for m, s in zip(means, stds, strict=True))
    ax.set_xlim(max(0.0, lo - 0.02), min(1.0, max(means) + max(stds) + 0.02))
    ax.set_xlabel("test accuracy: mean +/- 1 std (dashed: random rows)", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def neural_part(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: pip install '.[torch]' (skipping part 1)")
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
    out = Path(args.out)
    argv = ["--dataset", dataset, "--budgets", str(args.budget), "--reps", str(args.reps),
            "--methods", "uniform,kcenter,loss,grad", "--seed", str(args.seed),
            "--threads", str(args.threads), "--out", str(out), *extra]
    if args.quiet:
        argv.append("--quiet")
    print(f"== part 1: which {args.budget} images to label for a small neural network "
          f"({dataset}, {args.reps} repetitions) ==\n", flush=True)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its paper-style table: ours is below
        rc = neural.main(argv)
    if rc:
        return rc
    summary = _read_summary(out / f"neural_{dataset}_summary.csv")
    paper = neural.PAPER_K2000.get(dataset, {}) if args.budget == 2000 else {}
    for s in summary:
        print(f"  {PLAIN.get(s['method'], s['method']):38s} {WHAT.get(s['method'], '')}")
    print()
    head = (f"{'how the images were chosen':38s} {'test accuracy':>17s} {'paper':>6s} "
            f"{'vs random, paired (95% CI)':>27s} {'time to choose':>14s}")
    print(head)
    print("-" * len(head))
    for s in summary:
        acc = f"{s['mean']:.4f} +/- {s['std']:.3f}" if s["std"] == s["std"] else f"{s['mean']:.4f}"
        ref = f"{paper[s['method']]:.4f}" if s["method"] in paper else ""
        if s["method"] == "uniform" or s["diff_uniform"] != s["diff_uniform"]:
            diff = "(the reference)"
        else:
            diff = (f"{100 * s['diff_uniform']:+5.2f} pt [{100 * s['diff_ci_low']:+5.2f}, "
                    f"{100 * s['diff_ci_high']:+5.2f}]")
        secs = s["select_time_s"] + s["pool_pass_s"]
        print(f"{PLAIN.get(s['method'], s['method']):38s} {acc:>17s} {ref:>6s} {diff:>27s} "
              f"{secs:12.2f} s")
    # one budget: the experiment's accuracy-against-budget figures would be single points
    for stale in (f"fig2_{dataset}.png", f"fig3_{dataset}.png"):
        with contextlib.suppress(OSError):
            os.remove(out / stale)
    picture = out / "accuracy.png"
    drawn = _bars(summary, picture, f"{dataset}: {args.budget} labels, {args.reps} repetitions")
    better = [s for s in summary if s["method"] != "uniform" and s["diff_ci_low"] > 0]
    worse = [s for s in summary if s["method"] != "uniform" and s["diff_ci_high"] < 0]
    tied = [s for s in summary if s["method"] != "uniform" and s not in better + worse]

    def names(items):
        return "; ".join(PLAIN.get(s["method"], s["method"]) for s in items)

    print("\nwhat it means:")
    say("'vs random' is each way's accuracy minus that of random rows, repetition by "
        "repetition (the same warm start and training seed), with a 95% interval.")
    if better:
        say(f"Better than random rows, beyond the noise of {args.reps} repetitions: "
            f"{names(better)}.")
    if tied:
        say(f"Not distinguishable from random rows at this budget: {names(tied)} (their "
            "intervals contain 0; more repetitions, --reps, narrow them).")
    if worse:
        say(f"Worse than random rows: {names(worse)}.")
    say("The paper reports differences of under one point between these ways at 2,000 labels "
        "on Fashion-MNIST; a gap that small needs many repetitions to show. Sensitivity "
        "sampling's case is the one where labels are dear and the model's loss varies across "
        "the embedding: part 2 shows what happens when it does not.")
    if drawn:
        print(f"  picture: {picture} (each way's mean with error bars)")
    print(f"  full table and per-repetition rows: {out}/ ({time.perf_counter() - t0:.0f} s)")
    return 0


def estimate_part(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from demo_estimate import main as estimate_main

    print("\n== part 2: a model's total loss over the pool, from few model calls ==\n",
          flush=True)
    return estimate_main(["--seed", str(args.seed), "--reps", str(args.estimate_reps),
                          "--out", args.out])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000, help="labels in part 1 (2000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of part 1 (3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/demo")
    ap.add_argument("--estimate-reps", type=int, default=100,
                    help="repetitions of part 2's error summary (100)")
    ap.add_argument("--skip-neural", action="store_true")
    ap.add_argument("--skip-estimate", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rc = 0 if args.skip_neural else neural_part(args)
    if rc == 0 and not args.skip_estimate:
        rc = estimate_part(args)
    print(f"\ndemo done in {time.perf_counter() - t0:.0f} s (load average "
          f"{os.getloadavg()[0]:.2f})")
    print("next: your own data, from a shell -")
    print("  coreselect info emb.npy            # what is in the file, and a hint for k")
    print("  coreselect select emb.npy -k 200 -s 800 --oracle mymodel:loss --cache run/a.csv "
          "--out run/sel.csv")
    print("or from Python: docs/getting-started.md; the scripts in examples/ (docs/tutorials.md).")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
