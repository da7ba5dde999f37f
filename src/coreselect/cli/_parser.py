"""The parser of ``coreselect``: sub-commands, their options and the number converters."""

from __future__ import annotations

import argparse
import sys
import textwrap

import numpy as np

from .._argparse import number
from . import _commands as commands
from . import _embed

__all__ = ["build_parser", "usage_error"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    last_error: str | None = None  # for --json: the message of the error just raised

    def error(self, message: str):  # noqa: D401
        _Parser.last_error = f"{self.prog}: {message} (see {self.prog} --help)"
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def usage_error() -> str | None:
    """The last argparse error of ``coreselect``'s parsers (None if none)."""
    return _Parser.last_error


_positive_int = number(int, lambda v: v >= 1, "a positive integer")
_seed = number(int, lambda v: v >= 0, "a non-negative integer")
_fraction = number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_z = number(float, lambda v: bool(np.isfinite(v)) and v >= 1, "a number >= 1")
_positive_float = number(float, lambda v: bool(np.isfinite(v)) and v > 0,
                        "a finite number > 0")
_nonneg = number(float, lambda v: bool(np.isfinite(v)) and v >= 0,
                 "'auto' or a finite number >= 0")


def _lam(text: str):
    return "auto" if text == "auto" else _nonneg(text)


def _auto_or_int(text: str):
    return "auto" if text == "auto" else _positive_int(text)


_EPILOG = """\
examples:
  coreselect embed texts.txt --out emb.npy     # texts: one a line (pip install coreselect[text])
  coreselect info emb.npy
  coreselect plan emb.npy --clusters 200 --seed 0 --out run/
  #   ... fill the 'loss' column of run/queries.csv (a person, a batch job) ...
  coreselect sample run/ --losses run/queries.csv --size 800 --out run/selection.csv
  #   ... label the selected rows, put their losses in labelled.csv (index,loss) ...
  coreselect estimate run/selection.csv --losses labelled.csv
  coreselect select emb.npy --clusters 200 --size 800 --oracle mymodel:loss \\
      --cache run/answers.csv --seed 0 --out run/selection.csv
  coreselect reproduce NAME --help

embeddings: .npy (memory-mapped, never pickles), .npz (--key), .parquet (a list column or
numeric columns; pip install coreselect[parquet]), .csv (--columns for both). Outputs: .csv,
.parquet (.npz); their folders are created. exit codes: 0 ok, 2 bad usage or input, 1 anything
else, 130 interrupted (Ctrl-C; nothing is written, paid answers stay in the cache).
"""


def _embedding_options(parser, prefix: str = "") -> None:
    parser.add_argument("--key", metavar="NAME", help=prefix + ".npz: the array to read")
    parser.add_argument("--columns", metavar="COLS",
                        help=prefix + ".csv/.parquet: the embedding columns, by name or 0-based "
                             "position, ranges A:B as in Python (e.g. 'x0,x1', '1:'); default: "
                             "the list column, else every numeric column")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``coreselect`` (sub-commands and their options)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    g.add_argument("--json", action="store_true", help="print the results as one JSON object")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")

    fit = argparse.ArgumentParser(add_help=False)
    g = fit.add_argument_group("clustering")
    g.add_argument("--clusters", "-k", type=_positive_int, required=True, metavar="K",
                   help="k: the centers whose loss the oracle gives before sampling")
    g.add_argument("--z", type=_z, default=2.0, help="power of the distance (2: k-means, "
                   "1: k-median; default 2)")
    g.add_argument("--fit-sample-size", type=_auto_or_int, default="auto", metavar="M",
                   help="rows the clustering is fitted on (default: auto)")
    g.add_argument("--max-iter", type=_positive_int, default=20, help="clustering steps (20)")
    g.add_argument("--init", choices=["scalable", "greedy"], default="scalable",
                   help="the fit: scalable (k-means|| seeding, default) or greedy (the "
                   "earlier one, slow at large k)")
    g.add_argument("--chunk-size", type=_positive_int, default=None,
                   help="rows per assignment chunk (does not change results)")
    g.add_argument("--backend", default=None,
                   help="assignment backend: numpy (default), faiss, torch, ...")
    g.add_argument("--memory-limit", default=None, metavar="BYTES",
                   help="bound on the fit's memory (e.g. 2GB); the pool is read in chunks")

    draw = argparse.ArgumentParser(add_help=False)
    g = draw.add_argument_group("sampling")
    g.add_argument("--size", "-s", type=_positive_int, required=True, metavar="S",
                   help="s: draws (or distinct rows with --without-replacement)")
    g.add_argument("--lam", type=_lam, default="auto",
                   help="weight of the distances: 'auto' (default) or a number >= 0")
    g.add_argument("--without-replacement", action="store_true",
                   help="s distinct rows (Horvitz-Thompson weights) instead of i.i.d. draws")
    g.add_argument("--mix", type=_fraction, default=0.0, metavar="ALPHA",
                   help="defensive mixing with uniform sampling, in [0, 1] (default 0)")
    g.add_argument("--design", choices=("auto", "sensitivity", "stratified"), default=None,
                   help="auto (the default of a new plan: chosen from the queried losses), "
                        "sensitivity (Algorithm 1) or stratified (clusters as strata, uniform "
                        "inside: never much worse than uniform sampling); default: the plan's")
    g.add_argument("--surrogate", metavar="FILE", default=None,
                   help="a .npy file of n predicted losses >= 0, one per row (e.g. the "
                        "model's expected cross-entropy): per-row proposal and control variate")
    g.add_argument("--proposal-power", type=_positive_float, default=None, metavar="P",
                   help="with --surrogate: draw in proportion to the surrogate to the power P "
                        "(a training set: e.g. a margin score with P = 4); default: the "
                        "calibrated proposal that minimises the estimate's variance")

    emb = argparse.ArgumentParser(add_help=False)
    _embedding_options(emb)

    fmt = argparse.RawDescriptionHelpFormatter

    def wrap(text: str) -> str:
        return textwrap.fill(text, width=88)
    parser = _Parser(
        prog="coreselect",
        description=wrap("Coreset-based data selection by sensitivity sampling: which rows to "
                    "label, with weights, after very few model inferences."),
        epilog=_EPILOG, formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"coreselect {commands.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "info", parents=[emb, common], formatter_class=fmt,
        help="shape, dtype, memory, NaN/inf, duplicate rows, a hint for k",
        description=wrap("Describe an embeddings file (nothing is written)."),
        epilog="example:\n  coreselect info emb.npy --budget 2000",
    )
    p.add_argument("embeddings", help="the embeddings file")
    p.add_argument("--budget", type=_positive_int, default=None,
                   help="labelling budget for the hint (default: 2%% of the rows)")
    p.add_argument("--hash", action="store_true", help="also print the SHA-256 fingerprint")
    p.set_defaults(func=commands.info)

    p = sub.add_parser(
        "plan", parents=[emb, fit, common], formatter_class=fmt,
        help="cluster, write the plan and the queries to answer",
        description=wrap("Fit the (k, z)-clustering and write OUT/plan.npz (the fitted state, "
                    "parameters, seed, version, embeddings fingerprint), OUT/plan.json (a "
                    "readable summary, with the SHA-256 of plan.npz) and OUT/queries.csv "
                    "(index, and an empty loss column to fill). OUT is created."),
        epilog="example:\n  coreselect plan emb.npy --clusters 200 --seed 0 --out run/",
    )
    p.add_argument("embeddings", help="the embeddings file")
    p.add_argument("--seed", type=_seed, default=None, help="random seed (default: a new "
                   "one, printed and recorded in the plan)")
    p.add_argument("--design", choices=("auto", "sensitivity", "stratified"), default="auto",
                   help="what the plan asks about: the centers (sensitivity: Algorithm 1) or "
                        "one random row of each cluster (auto, stratified: counted in the "
                        "sample); default auto")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=commands.plan)

    p = sub.add_parser(
        "sample", parents=[draw, common], formatter_class=fmt,
        help="draw the weighted sample from a plan and the answers",
        description=wrap("Read a plan and the losses of its queried rows; write the selection: "
                    "index, weight, probability, center, cluster_size (one row per draw; "
                    "for .csv, what estimate needs besides goes to OUT.json). The plan must "
                    "match its plan.json, and the embeddings it was made from, when that file "
                    "is at hand, are checked to be the same (--no-check-embeddings skips it). "
                    "Prints the verdict on the sample and every warning."),
        epilog="example:\n  coreselect sample run/ --losses run/queries.csv --size 800 "
               "--out run/selection.csv",
    )
    p.add_argument("plan", metavar="PLAN", help="the plan folder (or its plan.npz)")
    p.add_argument("--losses", "-l", required=True, metavar="FILE",
                   help="the answers: .csv/.parquet with columns index, loss")
    p.add_argument("--seed", type=_seed, default=None,
                   help="seed of the draw (default: the plan's random stream continues, as "
                        "in the Python API)")
    p.add_argument("--embeddings", metavar="FILE", default=None,
                   help="the embeddings to check against the plan (default: the file the plan "
                        "was made from, when it is at hand)")
    _embedding_options(p, prefix="with --embeddings: ")
    p.add_argument("--no-check-embeddings", action="store_true",
                   help="do not read the embeddings to check that they are the plan's")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help=".csv, .parquet or .npz")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=commands.sample)

    p = sub.add_parser(
        "select", parents=[emb, fit, draw, common], formatter_class=fmt,
        help="one step with an importable Python oracle (resumable with --cache)",
        description=wrap("Plan, ask the oracle (a Python function indices -> losses) and sample, "
                    "in one step. With --cache, answers are appended to the file batch by "
                    "batch, so a run that stops is resumed by running the same command. Two runs "
                    "sharing a cache never ask one row twice: the second waits for the first "
                    "(the file is locked), then asks only for what is still missing. The output "
                    "folder is created and checked to be writable before the oracle is asked."),
        epilog="example:\n  coreselect select emb.npy -k 200 -s 800 --oracle mymodel:loss "
               "--cache answers.csv --seed 0 --out selection.csv",
    )
    p.add_argument("embeddings", help="the embeddings file")
    p.add_argument("--oracle", required=True, metavar="MODULE:FUNCTION",
                   help="importable callable (or file.py:function) taking an int64 array of "
                        "rows and returning their losses")
    p.add_argument("--cache", metavar="FILE", default=None,
                   help="append-only CSV of the answers (index,loss), reused when rerun; the "
                        "fitted plan is kept beside it as FILE.plan.npz")
    p.add_argument("--batch-size", type=_positive_int, default=1024,
                   help="rows per oracle call (1024)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed (default: the one recorded in the cache, else a new one)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help=".csv, .parquet or .npz")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=commands.select)

    p = sub.add_parser(
        "estimate", parents=[common], formatter_class=fmt,
        help="total and mean loss from a selection and the losses of its rows",
        description=wrap("Estimate the pool's total and mean loss, with a confidence interval, "
                    "from a selection and the losses of the selected rows."),
        epilog="example:\n  coreselect estimate run/selection.csv --losses labelled.csv",
    )
    p.add_argument("selection", help="a selection written by sample or select")
    p.add_argument("--losses", "-l", required=True, metavar="FILE",
                   help=".csv/.parquet with columns index, loss, covering the selected rows")
    p.add_argument("--method", choices=("weighted", "difference"), default="weighted",
                   help="weighted (default) or difference (queried losses as control variate)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.set_defaults(func=commands.estimate)

    p = sub.add_parser(
        "embed", parents=[common], formatter_class=fmt,
        help="texts to a memory-mapped .npy of sentence embeddings (coreselect[text])",
        description=wrap("Embed the lines of a .txt file (row i = line i + 1, empty lines "
                    "too), or a text column of a Hugging Face dataset saved with save_to_disk, "
                    "with a local sentence-transformers model (default: the offline "
                    "all-MiniLM-L6-v2 of coreselect[text]); the .npy is written in chunks, "
                    "so the texts need not fit in memory as vectors."),
        epilog="example:\n  coreselect embed texts.txt --out emb.npy\n"
               "  coreselect select emb.npy -k 100 -s 400 --oracle mymodel:loss --out sel.csv",
    )
    p.add_argument("texts", help="a .txt file, or the folder of a saved Hugging Face dataset")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="the .npy to write")
    p.add_argument("--column", default="text", help="the dataset's text column (text)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a sentence-transformers model folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=_positive_int, default=64,
                   help="texts per model call (64)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=_embed.embed)

    names = commands.experiments()
    p = sub.add_parser(
        "reproduce", formatter_class=fmt, add_help=True,
        help="run one of the paper's experiments",
        description=wrap("Run coreselect.experiments.NAME.main(ARGS)."),
        epilog="available: " + (", ".join(names) if names else "(none installed)"),
    )
    p.add_argument("name", metavar="NAME", help="the experiment: " + (", ".join(names) or "-"))
    p.add_argument("args", nargs=argparse.REMAINDER, help="its own options (NAME --help)")
    p.set_defaults(func=commands.reproduce, quiet=False, json=False, debug=False)
    return parser
