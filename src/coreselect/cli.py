"""The ``coreselect`` command line: plan, label, sample, estimate; files in, files out.

Thin: parse the arguments, read the files (:mod:`coreselect.io`), call the public API, write
the results atomically. Exit codes: 0 ok, 2 bad usage or bad input (one line on stderr, no
traceback), 1 anything else (an oracle that failed, a bug: ``--debug`` shows the traceback).
Progress bars and log lines go to stderr (``--quiet`` silences them); ``--json`` prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import sys
import textwrap
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main", "build_parser", "UsageError"]

logger = logging.getLogger("coreselect.cli")

PLAN_FILE = "plan.npz"
PLAN_SUMMARY = "plan.json"
QUERIES_FILE = "queries.csv"
_CACHE_TAG = "# coreselect loss cache:"


class UsageError(ValueError):
    """Bad usage or bad input: exit code 2 with a one-line message."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# --------------------------------------------------------------------------- helpers
def _version() -> str:
    from . import __version__

    return __version__


def _emit(args, human: list[str], data: dict) -> None:
    """Results on stdout: a JSON object with ``--json``, else the human lines."""
    if args.json:
        sys.stdout.write(json.dumps(data, indent=None, default=_json_default) + "\n")
    else:
        for line in human:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _json_default(value: Any):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _progress(args) -> bool:
    return not args.quiet


def _number(parse, ok, what: str):
    """An argparse type: ``parse(text)`` that must satisfy ``ok``; errors say ``what``."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_seed = _number(int, lambda v: v >= 0, "a non-negative integer")
_fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_z = _number(float, lambda v: bool(np.isfinite(v)) and v >= 1, "a number >= 1")
_nonneg = _number(float, lambda v: bool(np.isfinite(v)) and v >= 0,
                  "'auto' or a finite number >= 0")


def _lam(text: str):
    return "auto" if text == "auto" else _nonneg(text)


def _auto_or_int(text: str):
    return "auto" if text == "auto" else _positive_int(text)


def _mix(args) -> dict:
    """``mix`` only when asked for, so that samplers without the option keep working."""
    return {"mix": args.mix} if args.mix else {}


def _fit_params(args) -> dict:
    """The clustering options for ``SensitivitySampler`` (``memory_limit`` only when given)."""
    params = {"fit_sample_size": args.fit_sample_size, "max_iter": args.max_iter,
              "chunk_size": args.chunk_size, "backend": args.backend}
    if args.memory_limit is not None:
        params["memory_limit"] = args.memory_limit
    return params


def _new_seed() -> int:
    """A fresh seed, printed and stored so that the run can be repeated."""
    return int(np.random.SeedSequence().entropy % (2**32))


def _load_X(args, path: str | None = None, *, validate: bool = True) -> np.ndarray:
    from .io import load_embeddings

    return load_embeddings(path or args.embeddings, key=getattr(args, "key", None),
                           validate=validate)


def _plan_path(target: str) -> str:
    if os.path.isdir(target):
        path = os.path.join(target, PLAN_FILE)
        if not os.path.exists(path):
            raise UsageError(f"{target} holds no {PLAN_FILE}; make one with 'coreselect plan'.")
        return path
    if not os.path.exists(target):
        raise FileNotFoundError(f"{target}: no such plan folder or file.")
    return target


def _load_oracle(spec: str):
    """``module:function`` or ``path/to/file.py:function`` -> the callable."""
    if ":" not in spec:
        raise UsageError(f"--oracle must look like 'module:function' or 'file.py:function'; got {spec!r}.")
    modname, _, attr = spec.rpartition(":")
    if not modname or not attr:
        raise UsageError(f"--oracle must look like 'module:function'; got {spec!r}.")
    try:
        if modname.endswith(".py") or os.sep in modname:
            if not os.path.exists(modname):
                raise UsageError(f"--oracle {spec!r}: no file {modname}.")
            name = "_coreselect_oracle_" + os.path.splitext(os.path.basename(modname))[0]
            spec_obj = importlib.util.spec_from_file_location(name, modname)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[name] = module
            spec_obj.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(modname)
            finally:
                if added and cwd in sys.path:
                    sys.path.remove(cwd)
    except UsageError:
        raise
    except Exception as exc:  # an import that fails is bad usage, whatever it raised
        raise UsageError(
            f"--oracle {spec!r}: cannot import {modname!r} ({type(exc).__name__}: {exc})."
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"--oracle {spec!r}: {modname!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"--oracle {spec!r}: {attr!r} is not callable.")
    return obj


def _cache_header(path: str, fp: dict) -> dict | None:
    """The header of an existing cache file, checked against the embeddings' fingerprint.

    ``None`` when the file does not exist, is empty or has no coreselect header (a cache
    written by hand or by :class:`~coreselect.LossCache`: its answers are used as given).
    """
    from .io import compare_fingerprints

    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
    if not first.startswith(_CACHE_TAG):
        logger.warning("%s: a cache without a coreselect header: its answers are used as given "
                       "(they must be for these embeddings); give --seed to resume the same plan",
                       path)
        return None
    try:
        recorded = json.loads(first[len(_CACHE_TAG):])
    except json.JSONDecodeError:
        raise UsageError(f"--cache {path}: unreadable first line {first!r}.") from None
    why = compare_fingerprints(recorded, fp, what="these embeddings")
    if why:
        why = why.replace("the plan was made for", "the cache was written for")
        raise UsageError(f"--cache {path} holds answers for other embeddings: {why}; use "
                         "another cache file.")
    return recorded


def _create_cache(path: str, fp: dict, seed: int) -> None:
    """A new cache file whose first line names the embeddings and the seed."""
    from .io import atomic_path

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--cache: folder {folder!r} does not exist.")
    header = {"shape": fp["shape"], "dtype": fp["dtype"], "hash": fp["hash"], "seed": seed}
    with atomic_path(path, force=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"{_CACHE_TAG} {json.dumps(header)}\nindex,loss\n")


def _selection_summary(sel, paths: list[str]) -> tuple[list[str], dict]:
    uniq = np.unique(sel.indices).size
    params = dict(sel.params)
    data = {
        "out": paths, "size": sel.size, "unique": int(uniq), "n": sel.n,
        "queries": sel.n_queries, "replace": sel.replace, "lam": params.get("lam"),
        "lam_rule": params.get("lam_rule"), "cost": params.get("cost"),
        "weights_sum": float(sel.weights.sum()),
    }
    human = [
        f"selected {sel.size} {'draws' if sel.replace else 'rows'} ({uniq} distinct rows) of "
        f"n={sel.n}, after {sel.n_queries} oracle answers",
        f"lam = {params.get('lam', float('nan')):.6g} ({params.get('lam_rule', '')})",
        f"written: {', '.join(paths)}",
    ]
    return human, data


# --------------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    from .io import embeddings_summary, fingerprint

    X = _load_X(args, validate=False)
    if X.ndim != 2:
        raise UsageError(f"{args.embeddings}: expected a 2-D array; got shape {X.shape}.")
    if X.dtype.kind not in "biuf":
        raise UsageError(f"{args.embeddings}: expected numbers; got dtype {X.dtype}.")
    summary = embeddings_summary(X, progress=_progress(args))
    n, d = X.shape
    summary.update(
        path=args.embeddings, format=os.path.splitext(args.embeddings)[1].lower(),
        file_bytes=os.path.getsize(args.embeddings),
        memory_mapped=isinstance(X, np.memmap),
        memory_float32_bytes=int(n * d * 4), memory_float64_bytes=int(n * d * 8),
    )
    budget = args.budget if args.budget is not None else max(1, min(n, round(0.02 * n)))
    k_hint = max(1, min(n, round(0.2 * budget)))
    summary["hint"] = {
        "budget": int(budget), "clusters": int(k_hint), "size": int(max(1, budget - k_hint)),
        "why": "the paper spends 20% of the labelling budget on the cluster centers "
               "(k'' = 0.2 k, section 5.2) and samples the rest",
    }
    if args.hash:
        summary["fingerprint"] = fingerprint(X, progress=_progress(args))
    mib = 2**20
    human = [
        f"file      {args.embeddings} ({summary['file_bytes'] / mib:.1f} MiB"
        f"{', memory-mapped' if summary['memory_mapped'] else ''})",
        f"shape     {n} x {d}  dtype {X.dtype.name}",
        f"memory    {n * d * 4 / mib:.1f} MiB as float32, {n * d * 8 / mib:.1f} MiB as float64",
        f"non-finite {summary['nan']} NaN, {summary['inf']} inf in {summary['rows_not_finite']} rows"
        + (f" (first: row {summary['first_row_not_finite']})"
           if summary["first_row_not_finite"] is not None else ""),
        f"duplicates {summary['duplicate_rows']} rows repeat an earlier row "
        f"({summary['distinct_rows']} distinct finite rows)",
        f"hint      for a labelling budget of {budget}: --clusters {k_hint} --size "
        f"{max(1, budget - k_hint)} (20% of the budget on centers, as in the paper)",
    ]
    if args.hash:
        human.append(f"sha256    {summary['fingerprint']['hash']}")
    _emit(args, human, summary)
    return 0


def cmd_plan(args) -> int:
    from . import SensitivitySampler
    from ._validation import check_n_clusters
    from .io import atomic_path, check_output, fingerprint, write_table
    from .persist import save_sampler

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; plan writes a folder.")
    targets = [os.path.join(out, name) for name in (PLAN_FILE, PLAN_SUMMARY, QUERIES_FILE)]
    if os.path.isdir(out):
        for t in targets:
            check_output(t, force=args.force)
    else:
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"--out: folder {parent!r} does not exist.")
    X = _load_X(args)
    check_n_clusters(args.clusters, X.shape[0])
    seed = args.seed if args.seed is not None else _new_seed()
    fp = fingerprint(X, progress=_progress(args))
    sampler = SensitivitySampler(
        args.clusters, z=args.z, seed=seed, progress=_progress(args), **_fit_params(args),
    ).fit(X)
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    q = sampler.query_indices_
    summary = {
        "embeddings": os.path.abspath(args.embeddings), "key": args.key,
        "n_clusters": int(args.clusters), "queries": int(q.size), "z": float(args.z),
        "seed": int(seed), "cost": float(sampler.cost_), "fingerprint": fp,
        "coreselect_version": _version(),
        "next": f"fill the 'loss' column of {QUERIES_FILE}, then: coreselect sample {out} "
                f"--losses {os.path.join(out, QUERIES_FILE)} --size S --out selection.csv",
    }
    try:
        # three temporary files, renamed into place only when all three are written
        with contextlib.ExitStack() as stack:
            tmps = [stack.enter_context(atomic_path(t, force=args.force)) for t in targets]
            save_sampler(sampler, tmps[0], fingerprint=fp)
            with open(tmps[1], "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=1)
            write_table(tmps[2], {"index": q, "loss": [None] * q.size}, fmt=".csv",
                        atomic=False)
    except BaseException:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        raise
    human = [
        f"plan: {q.size} centers for n={X.shape[0]} rows (z={args.z:g}, seed={seed}, "
        f"cost {sampler.cost_:.6g})",
        f"written: {', '.join(targets)}",
        f"next: fill the 'loss' column of {targets[2]}, then run",
        f"  coreselect sample {out} --losses {targets[2]} --size S --out selection.csv",
    ]
    _emit(args, human, {"out": targets, "queries": int(q.size), "n": int(X.shape[0]),
                        "seed": int(seed), "cost": float(sampler.cost_), "fingerprint": fp})
    return 0


def cmd_sample(args) -> int:
    from ._validation import check_size
    from .io import check_output, match_losses, read_losses, write_selection
    from .persist import load_sampler

    check_output(args.out, force=args.force, formats=(".csv", ".parquet", ".npz"), name="--out")
    plan = _plan_path(args.plan)
    X = _load_X(args, args.embeddings) if args.embeddings else None
    sampler = load_sampler(plan, X)
    replace = not args.without_replacement
    size = check_size(args.size, sampler.n_samples_, replace=replace)
    idx, losses = read_losses(args.losses, n=sampler.n_samples_)
    query_losses = match_losses(idx, losses, sampler.query_indices_, path=args.losses)
    sel = sampler.sample(query_losses, size, lam=args.lam, replace=replace, seed=args.seed,
                         **_mix(args))
    provenance = {"plan": os.path.abspath(plan), "plan_seed": sampler.seed,
                  "sample_seed": args.seed, "fingerprint": getattr(sampler, "fingerprint_", None)}
    paths = write_selection(args.out, sel, force=args.force, extra_meta=provenance)
    human, data = _selection_summary(sel, paths)
    human.append(f"next: label the selected rows, then: coreselect estimate {args.out} "
                 "--losses FILE")
    _emit(args, human, data)
    return 0


def _checkpoint_path(cache: str) -> str:
    return cache + ".plan.npz"


def _checkpointed_fit(args, X, fp: dict, seed: int):
    """The fitted sampler: loaded from beside the cache when it was fitted there with the
    same data and options, else fitted now and saved there before the oracle is asked.

    A run with a cache thus gives the selection of ``coreselect plan`` + ``sample`` (and of
    the Python API on an in-memory array); a run without one that of ``sensitivity_sample``
    on the same input (on a memory-mapped ``.npy`` that samples out of core, which sums in
    another order: the same rows, weights equal to ~1e-16).
    """
    from . import SensitivitySampler
    from .persist import load_sampler, read_meta, save_sampler

    path = _checkpoint_path(args.cache)
    wanted = {"n_clusters": args.clusters, "z": float(args.z), "seed": int(seed),
              "fit_sample_size": args.fit_sample_size, "max_iter": args.max_iter}
    if os.path.exists(path):
        try:
            meta = read_meta(path)
            params = meta["params"]
            same = (all(params.get(key) == value for key, value in wanted.items())
                    and meta.get("fingerprint") == fp)
        except (ValueError, KeyError) as exc:
            logger.info("%s: not reused (%s)", path, exc)
            same = False
        if same:
            logger.info("reusing the clustering saved in %s", path)
            return load_sampler(path)
        logger.info("%s was fitted with other options or data; fitting again", path)
    sampler = SensitivitySampler(args.clusters, z=args.z, seed=seed, progress=_progress(args),
                                 **_fit_params(args)).fit(X)
    save_sampler(sampler, path, fingerprint=fp)
    # sample from the saved state, as a resumed run will: both then draw bit for bit alike
    return load_sampler(path)


def _save_partial_answers(args, exc, X, seed: int) -> None:
    """Without ``--cache``, keep the answers an oracle gave before failing in a cache file
    beside the output, and say how to continue from it (nothing paid for is lost)."""
    from . import LossCache
    from .io import fingerprint

    if not exc.answered:
        return
    path = args.out + ".answers.csv"
    count = 1
    while os.path.exists(path):
        path = f"{args.out}.answers-{count}.csv"
        count += 1
    _create_cache(path, fingerprint(X), seed)
    keys = np.array(sorted(exc.answered), dtype=np.int64)
    LossCache(path).add(keys, [exc.answered[int(i)] for i in keys])
    exc.args = (f"{exc.args[0]} The {keys.size} answers received are saved in {path}; rerun "
                f"with --cache {path} --seed {seed} to ask only for the others.",)
    args.saved_answers = path


def cmd_select(args) -> int:
    from . import LossCache, ask_oracle, sensitivity_sample
    from ._validation import check_n_clusters, check_size
    from .io import check_output, fingerprint, write_selection
    from .oracle import OracleError

    check_output(args.out, force=args.force, formats=(".csv", ".parquet", ".npz"), name="--out")
    oracle = _load_oracle(args.oracle)
    X = _load_X(args)
    n = X.shape[0]
    check_n_clusters(args.clusters, n)
    replace = not args.without_replacement
    check_size(args.size, n, replace=replace)
    seed = args.seed
    cache = None
    if args.cache:
        fp = fingerprint(X, progress=_progress(args))
        recorded = _cache_header(args.cache, fp)
        if seed is None and recorded is not None and recorded.get("seed") is not None:
            seed = int(recorded["seed"])
            logger.info("resuming with seed %d, recorded in %s", seed, args.cache)
        if seed is None:
            seed = _new_seed()
        if not os.path.exists(args.cache) or os.path.getsize(args.cache) == 0:
            _create_cache(args.cache, fp, seed)
        cache = LossCache(args.cache)
        if len(cache):
            logger.info("%s: %d answers already paid for", args.cache, len(cache))
    elif seed is None:
        seed = _new_seed()
    if cache is None:
        try:
            sel = sensitivity_sample(
                X, oracle, args.size, n_clusters=args.clusters, z=args.z, lam=args.lam,
                replace=replace, seed=seed, batch_size=args.batch_size, cache=cache,
                progress=_progress(args), **_fit_params(args), **_mix(args),
            )
        except OracleError as exc:
            _save_partial_answers(args, exc, X, seed)
            raise
    else:
        # the same steps as sensitivity_sample, with the fitted clustering kept beside the
        # cache, so that a rerun does not fit it again
        sampler = _checkpointed_fit(args, X, fp, seed)
        losses = ask_oracle(oracle, sampler.query_indices_, batch_size=args.batch_size,
                            cache=cache, progress=_progress(args), state=sampler)
        sel = sampler.sample(losses, args.size, lam=args.lam, replace=replace, **_mix(args))
    paths = write_selection(args.out, sel, force=args.force, extra_meta={"seed": int(seed)})
    human, data = _selection_summary(sel, paths)
    data["seed"] = int(seed)
    human.insert(1, f"seed = {seed}")
    if args.cache:
        data["plan"] = _checkpoint_path(args.cache)
        human.append(f"the plan is kept in {data['plan']} (coreselect sample can draw again)")
    _emit(args, human, data)
    return 0


def cmd_estimate(args) -> int:
    from .io import match_losses, read_losses, read_selection

    sel = read_selection(args.selection)
    idx, losses = read_losses(args.losses, n=sel.n)
    uniq = np.unique(sel.indices)
    per_unique = match_losses(idx, losses, uniq, path=args.losses, allow_extra=True)
    y = per_unique[np.searchsorted(uniq, sel.indices)]
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must lie in (0, 1); got {args.confidence}.")
    total = sel.estimate_total(y, method=args.method, confidence=args.confidence)
    mean = total.scaled(1.0 / sel.n)
    pct = round(100 * args.confidence)
    data = {
        "total": {"value": total.value, "stderr": total.stderr, "ci_low": total.ci_low,
                  "ci_high": total.ci_high},
        "mean": {"value": mean.value, "stderr": mean.stderr, "ci_low": mean.ci_low,
                 "ci_high": mean.ci_high},
        "confidence": args.confidence, "method": args.method, "n": sel.n, "size": sel.size,
        "unique": int(uniq.size), "replace": sel.replace,
    }
    human = [
        f"total loss  {total.value:.6g} +/- {total.stderr:.3g}  ({pct}% CI "
        f"[{total.ci_low:.6g}, {total.ci_high:.6g}])",
        f"mean loss   {mean.value:.6g} +/- {mean.stderr:.3g}  ({pct}% CI "
        f"[{mean.ci_low:.6g}, {mean.ci_high:.6g}])",
        f"from {sel.size} {'draws' if sel.replace else 'rows'} ({uniq.size} distinct) of "
        f"n={sel.n}, {args.method} estimator",
    ]
    _emit(args, human, data)
    return 0


def _experiments() -> list[str]:
    try:
        from . import experiments
    except ImportError:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                  if not m.name.startswith("_"))


def cmd_reproduce(args) -> int:
    names = _experiments()
    if args.name not in names:
        raise UsageError(
            f"unknown experiment {args.name!r}; available: {', '.join(names) or '(none)'}."
        )
    module = importlib.import_module(f"coreselect.experiments.{args.name}")
    main_fn = getattr(module, "main", None)
    if not callable(main_fn):
        raise UsageError(f"experiment {args.name!r} has no main(argv) function.")
    try:
        rc = main_fn(list(args.args))
    except SystemExit as exc:  # the experiment's own argparse (--help, bad options)
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        sys.stderr.write(f"{code}\n")
        return 1
    return int(rc or 0)


# --------------------------------------------------------------------------- parser
_EPILOG = """\
examples:
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
numeric columns; pip install coreselect[parquet]), .csv. Outputs: .csv, .parquet (.npz).
exit codes: 0 ok, 2 bad usage or input, 1 anything else.
"""


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

    emb = argparse.ArgumentParser(add_help=False)
    emb.add_argument("--key", help=".npz: the array; .parquet: the list column (or "
                     "comma-separated numeric columns)")

    fmt = argparse.RawDescriptionHelpFormatter

    def wrap(text: str) -> str:
        return textwrap.fill(text, width=88)
    parser = _Parser(
        prog="coreselect",
        description=wrap("Coreset-based data selection by sensitivity sampling: which rows to "
                    "label, with weights, after very few model inferences."),
        epilog=_EPILOG, formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"coreselect {_version()}")
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
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "plan", parents=[emb, fit, common], formatter_class=fmt,
        help="cluster, write the plan and the queries to answer",
        description=wrap("Fit the (k, z)-clustering and write OUT/plan.npz (the fitted state, "
                    "parameters, seed, version, embeddings fingerprint), OUT/plan.json (a "
                    "readable summary) and OUT/queries.csv (index, and an empty loss column "
                    "to fill)."),
        epilog="example:\n  coreselect plan emb.npy --clusters 200 --seed 0 --out run/",
    )
    p.add_argument("embeddings", help="the embeddings file")
    p.add_argument("--seed", type=_seed, default=None, help="random seed (default: a new "
                   "one, printed and recorded in the plan)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "sample", parents=[draw, common], formatter_class=fmt,
        help="draw the weighted sample from a plan and the answers",
        description=wrap("Read a plan and the losses of its queried rows; write the selection: "
                    "index, weight, probability, center, cluster_size (one row per draw; "
                    "for .csv, what estimate needs besides goes to OUT.json)."),
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
                   help="check that these are the embeddings the plan was made from")
    p.add_argument("--key", help="with --embeddings: the .npz array or .parquet column")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help=".csv, .parquet or .npz")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "select", parents=[emb, fit, draw, common], formatter_class=fmt,
        help="one step with an importable Python oracle (resumable with --cache)",
        description=wrap("Plan, ask the oracle (a Python function indices -> losses) and sample, "
                    "in one step. With --cache, answers are appended to the file batch by "
                    "batch, so a run that stops is resumed by running the same command."),
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
    p.set_defaults(func=cmd_select)

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
    p.set_defaults(func=cmd_estimate)

    names = _experiments()
    p = sub.add_parser(
        "reproduce", formatter_class=fmt, add_help=True,
        help="run one of the paper's experiments",
        description=wrap("Run coreselect.experiments.NAME.main(ARGS)."),
        epilog="available: " + (", ".join(names) if names else "(none installed)"),
    )
    p.add_argument("name", metavar="NAME", help="the experiment: " + (", ".join(names) or "-"))
    p.add_argument("args", nargs=argparse.REMAINDER, help="its own options (NAME --help)")
    p.set_defaults(func=cmd_reproduce, quiet=False, json=False, debug=False)
    return parser


def _setup_logging(args) -> tuple:
    """Log lines of the library to stderr; returns what :func:`_restore_logging` puts back."""
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    root = logging.getLogger("coreselect")
    saved = (root.level, root.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("coreselect: %(message)s"))
    handler._coreselect_cli = True
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return saved


def _restore_logging(saved: tuple) -> None:
    root = logging.getLogger("coreselect")
    for h in list(root.handlers):
        if getattr(h, "_coreselect_cli", False):
            root.removeHandler(h)
    root.setLevel(saved[0])
    root.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad usage/input, 1 other).

    Examples
    --------
    >>> main(["--version"])
    coreselect 0.1.0
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    saved = _setup_logging(args)
    from .oracle import OracleError

    try:
        return args.func(args)
    except OracleError as exc:
        if args.debug:
            traceback.print_exc()
        if getattr(args, "cache", None):
            hint = " Run the same command again to continue from the cache."
        elif getattr(args, "saved_answers", None):
            hint = ""
        else:
            hint = " Use --cache FILE to keep the answers across runs."
        _fail(f"{exc}{hint}")
        return 1
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError, PermissionError) as exc:
        if args.debug:
            traceback.print_exc()
        _fail(str(exc))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted.")
        return 1
    except (ImportError, OSError) as exc:  # a missing extra, a full disk...
        if args.debug:
            traceback.print_exc()
        _fail(str(exc))
        return 1
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1
    finally:
        _restore_logging(saved)


def _fail(message: str) -> None:
    line = " ".join(str(message).split())
    sys.stderr.write(f"coreselect: error: {line}\n")
    sys.stderr.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
