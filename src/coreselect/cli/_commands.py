"""The sub-commands: read the files (:mod:`coreselect.io`), call the public API, print.

Each command checks everything it can before the costly part (the fit, the oracle): the
inputs, the options, and that its outputs can be written.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import sys

import numpy as np

import coreselect as cs
from coreselect import io
from coreselect.persist import load_sampler, read_meta, save_sampler

from ._output import emit, verdict

logger = logging.getLogger("coreselect.cli")

PLAN_FILE = "plan.npz"
PLAN_SUMMARY = "plan.json"
QUERIES_FILE = "queries.csv"
SELECTION_FORMATS = (".csv", ".parquet", ".npz")


class UsageError(ValueError):
    """Bad usage or bad input: exit code 2 with a one-line message."""


def version() -> str:
    return cs.__version__


# --------------------------------------------------------------------------- helpers
def _progress(args) -> bool:
    return not args.quiet


def _mix(args) -> dict:
    """``mix``, ``design``, ``surrogate`` and ``proposal_power`` only when asked for (the
    defaults are the API's: for ``sample``, the plan's design)."""
    options = {"mix": args.mix} if args.mix else {}
    if args.design is not None:
        options["design"] = args.design
    if getattr(args, "surrogate", None):
        options["surrogate"] = _load_surrogate(args.surrogate)
    if getattr(args, "proposal_power", None) is not None:
        options["proposal_power"] = args.proposal_power
    return options


def _load_surrogate(path: str) -> np.ndarray:
    """The ``--surrogate`` file: a .npy array of one predicted loss per row."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--surrogate {path}: no such file.")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--surrogate {path}: not a readable .npy array ({exc}).") from None


def _fit_params(args) -> dict:
    """The clustering options for ``SensitivitySampler`` (``memory_limit`` only when given)."""
    params = {"fit_sample_size": args.fit_sample_size, "max_iter": args.max_iter,
              "chunk_size": args.chunk_size, "backend": args.backend}
    if getattr(args, "init", "scalable") != "scalable":
        params["init"] = args.init
    if args.memory_limit is not None:
        params["memory_limit"] = args.memory_limit
    return params


def _new_seed() -> int:
    """A fresh seed, printed and stored so that the run can be repeated."""
    return int(np.random.SeedSequence().entropy % (2**32))


def _load_X(path: str, key=None, columns=None, *, validate: bool = True) -> np.ndarray:
    return io.load_embeddings(path, key=key, columns=columns, validate=validate)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _summary_path(plan: str) -> str:
    """The readable summary of a plan: ``run/plan.npz`` -> ``run/plan.json``."""
    return os.path.splitext(plan)[0] + ".json"


def _selection_room(size: int, k: int) -> int:
    """About the bytes a selection of ``size`` draws and ``k`` queries takes on disk."""
    return 120 * int(size) + 80 * int(k) + 64 * 1024


def _write_plan(sampler, path: str, summary: dict, fp: dict, *, force: bool,
                extra=()) -> None:
    """``path`` (the fitted sampler) and its summary JSON, with the SHA-256 of ``path``;
    ``extra`` holds ``(path, write(tmp))`` pairs renamed into place with them."""
    jpath = _summary_path(path)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(io.atomic_path(path, force=force))
        tmp_json = stack.enter_context(io.atomic_path(jpath, force=force))
        tmps = [stack.enter_context(io.atomic_path(p, force=force)) for p, _ in extra]
        save_sampler(sampler, tmp, fingerprint=fp)
        with open(tmp_json, "w", encoding="utf-8") as fh:
            json.dump({**summary, "plan_sha256": _sha256(tmp)}, fh, indent=1)
        for (_, write), t in zip(extra, tmps, strict=True):
            write(t)


def _check_plan(plan: str, *, given_as_folder: bool) -> dict | None:
    """The plan's summary, checked against the plan's bytes.

    A plan written by the command line (``plan.npz`` in a folder, ``FILE.plan.npz`` beside
    a cache) must have its summary, and the SHA-256 recorded there; a sampler saved from
    Python under another name is read without one (``None``).
    """
    jpath = _summary_path(plan)
    name = os.path.basename(plan)
    needs_summary = given_as_folder or name == PLAN_FILE or name.endswith("." + PLAN_FILE)
    if not os.path.exists(jpath):
        if needs_summary:
            raise UsageError(f"{plan}: its summary {jpath} is missing, so the plan cannot be "
                             "checked; make the plan again (coreselect plan).")
        logger.info("%s has no summary %s: read as a sampler saved from Python", plan, jpath)
        return None
    try:
        with open(jpath, encoding="utf-8") as fh:
            summary = json.load(fh)
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{jpath} is not a plan summary ({exc}); the plan is damaged: make "
                         "it again (coreselect plan).") from None
    recorded = summary.get("plan_sha256")
    if recorded is None:
        logger.warning("%s was written by an older coreselect without a checksum: %s is not "
                       "checked", jpath, plan)
    elif recorded != _sha256(plan):
        raise UsageError(f"{plan} does not match {jpath}: its SHA-256 differs, so it was "
                         "changed after it was written; make the plan again (coreselect plan).")
    return summary


def _plan_path(target: str) -> tuple[str, bool]:
    if os.path.isdir(target):
        path = os.path.join(target, PLAN_FILE)
        if not os.path.exists(path):
            raise UsageError(f"{target} holds no {PLAN_FILE}; make one with 'coreselect plan'.")
        return path, True
    if not os.path.exists(target):
        raise FileNotFoundError(f"{target}: no such plan folder or file.")
    return target, False


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


def _selection_summary(sel, paths: list[str]) -> tuple[list[str], dict]:
    uniq = np.unique(sel.indices).size
    params = dict(sel.params)
    said, fields = verdict(sel)
    data = {
        "out": paths, "size": sel.size, "unique": int(uniq), "n": sel.n,
        "queries": sel.n_queries, "replace": sel.replace, "lam": params.get("lam"),
        "lam_rule": params.get("lam_rule"), "cost": params.get("cost"),
        "weights_sum": float(sel.weights.sum()), **fields,
    }
    human = [
        f"selected {sel.size} {'draws' if sel.replace else 'rows'} ({uniq} distinct rows) of "
        f"n={sel.n}, after {sel.n_queries} oracle answers",
        f"lam = {params.get('lam', float('nan')):.6g} ({params.get('lam_rule', '')})",
        *said,
        f"written: {', '.join(paths)}",
    ]
    return human, data


# --------------------------------------------------------------------------- commands
def info(args) -> int:
    X = _load_X(args.embeddings, args.key, args.columns, validate=False)
    if X.ndim != 2:
        raise UsageError(f"{args.embeddings}: expected a 2-D array; got shape {X.shape}.")
    if X.dtype.kind not in "biuf":
        raise UsageError(f"{args.embeddings}: expected numbers; got dtype {X.dtype}.")
    summary = io.embeddings_summary(X, progress=_progress(args))
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
        summary["fingerprint"] = io.fingerprint(X, progress=_progress(args))
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
    emit(args, human, summary)
    return 0


def plan(args) -> int:
    from coreselect._validation import check_n_clusters

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; plan writes a folder.")
    targets = [os.path.join(out, name) for name in (PLAN_FILE, PLAN_SUMMARY, QUERIES_FILE)]
    X = _load_X(args.embeddings, args.key, args.columns)
    n, d = X.shape
    check_n_clusters(args.clusters, n)
    created = not os.path.isdir(out)
    room = 24 * n + 16 * args.clusters * (d + 4) + 64 * 1024
    try:
        for i, t in enumerate(targets):
            io.check_output(t, force=args.force, name="--out", create=True, room=room * (i == 0))
        seed = args.seed if args.seed is not None else _new_seed()
        fp = io.fingerprint(X, progress=_progress(args))
        sampler = cs.SensitivitySampler(
            args.clusters, z=args.z, seed=seed, progress=_progress(args), design=args.design,
            **_fit_params(args),
        ).fit(X)
        q = sampler.query_indices_
        summary = {
            "embeddings": os.path.abspath(args.embeddings), "key": args.key,
            "columns": args.columns, "n_clusters": int(args.clusters), "queries": int(q.size),
            "z": float(args.z), "seed": int(seed), "cost": float(sampler.cost_),
            "fingerprint": fp, "coreselect_version": version(),
            "next": f"fill the 'loss' column of {QUERIES_FILE}, then: coreselect sample {out} "
                    f"--losses {os.path.join(out, QUERIES_FILE)} --size S --out selection.csv",
        }

        def queries(tmp):
            io.write_table(tmp, {"index": q, "loss": [None] * q.size}, fmt=".csv", atomic=False)

        # the three files are renamed into place only when all three are written
        _write_plan(sampler, targets[0], summary, fp, force=args.force,
                    extra=[(targets[2], queries)])
    except BaseException:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        raise
    human = [
        f"plan: {q.size} centers for n={n} rows (z={args.z:g}, seed={seed}, "
        f"cost {sampler.cost_:.6g})",
        f"written: {', '.join(targets)}",
        f"next: fill the 'loss' column of {targets[2]}, then run",
        f"  coreselect sample {out} --losses {targets[2]} --size S --out selection.csv",
    ]
    emit(args, human, {"out": targets, "queries": int(q.size), "n": int(n),
                       "seed": int(seed), "cost": float(sampler.cost_), "fingerprint": fp})
    return 0


def _plan_embeddings(args, summary: dict | None):
    """The embeddings to check the plan against: ``--embeddings``, else the plan's own file
    when it is at hand (None: nothing to check)."""
    if args.embeddings:
        return _load_X(args.embeddings, args.key, args.columns)
    if args.no_check_embeddings or not summary or not summary.get("embeddings"):
        return None
    path = summary["embeddings"]
    if not os.path.exists(path):
        logger.info("the plan's embeddings %s are not at hand: not checked (give --embeddings)",
                    path)
        return None
    logger.info("checking that %s are still the plan's embeddings (--no-check-embeddings "
                "skips it)", path)
    return _load_X(path, summary.get("key"), summary.get("columns"))


def sample(args) -> int:
    from coreselect._validation import check_size

    plan_file, as_folder = _plan_path(args.plan)
    summary = _check_plan(plan_file, given_as_folder=as_folder)
    X = _plan_embeddings(args, summary)
    sampler = load_sampler(plan_file, X)
    replace = not args.without_replacement
    size = check_size(args.size, sampler.n_samples_, replace=replace)
    io.check_output(args.out, force=args.force, formats=SELECTION_FORMATS, name="--out",
                    create=True, room=_selection_room(size, sampler.query_indices_.size))
    idx, losses = io.read_losses(args.losses, n=sampler.n_samples_)
    query_losses = io.match_losses(idx, losses, sampler.query_indices_, path=args.losses)
    sel = sampler.sample(query_losses, size, lam=args.lam, replace=replace, seed=args.seed,
                         **_mix(args))
    provenance = {"plan": os.path.abspath(plan_file), "plan_seed": sampler.seed,
                  "sample_seed": args.seed, "fingerprint": getattr(sampler, "fingerprint_", None)}
    paths = io.write_selection(args.out, sel, force=args.force, extra_meta=provenance)
    human, data = _selection_summary(sel, paths)
    human.append(f"next: label the selected rows, then: coreselect estimate {args.out} "
                 "--losses FILE")
    emit(args, human, data)
    return 0


def _checkpoint_path(cache: str) -> str:
    return cache + "." + PLAN_FILE


def _checkpointed_fit(args, X, fp: dict, seed: int):
    """The fitted sampler: loaded from beside the cache when it was fitted there with the
    same data and options, else fitted now and saved there before the oracle is asked.

    A run with a cache thus gives the selection of ``coreselect plan`` + ``sample`` (and of
    the Python API on an in-memory array); a run without one that of ``sensitivity_sample``
    on the same input (on a memory-mapped ``.npy`` that samples out of core, which sums in
    another order: the same rows, weights equal to ~1e-16).
    """
    path = _checkpoint_path(args.cache)
    design = args.design or "auto"
    wanted = {"n_clusters": args.clusters, "z": float(args.z), "seed": int(seed),
              "fit_sample_size": args.fit_sample_size, "max_iter": args.max_iter,
              "design": "sensitivity" if design == "sensitivity" else "auto",
              "init": getattr(args, "init", "scalable")}
    if os.path.exists(path):
        try:
            _check_plan(path, given_as_folder=False)
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
    sampler = cs.SensitivitySampler(args.clusters, z=args.z, seed=seed,
                                    progress=_progress(args), **_fit_params(args),
                                    design=wanted["design"]).fit(X)
    summary = {"embeddings": os.path.abspath(args.embeddings), "key": args.key,
               "columns": args.columns, "n_clusters": int(args.clusters),
               "queries": int(sampler.query_indices_.size), "z": float(args.z),
               "seed": int(seed), "cost": float(sampler.cost_), "fingerprint": fp,
               "cache": os.path.abspath(args.cache), "coreselect_version": version()}
    _write_plan(sampler, path, summary, fp, force=True)
    # sample from the saved state, as a resumed run will: both then draw bit for bit alike
    return load_sampler(path)


def _save_partial_answers(args, exc, fp: dict, seed: int) -> None:
    """Without ``--cache``, keep the answers an oracle gave before failing in a cache file
    beside the output, and say how to continue from it (nothing paid for is lost)."""
    if not exc.answered:
        return
    path = args.out + ".answers.csv"
    count = 1
    while os.path.exists(path):
        path = f"{args.out}.answers-{count}.csv"
        count += 1
    keys = np.array(sorted(exc.answered), dtype=np.int64)
    cs.LossCache(path, fingerprint=fp, info={"seed": seed}).add(
        keys, [exc.answered[int(i)] for i in keys])
    exc.args = (f"{exc.args[0]} The {keys.size} answers received are saved in {path}; rerun "
                f"with --cache {path} --seed {seed} to ask only for the others.",)
    args.saved_answers = path


def select(args) -> int:
    from coreselect._validation import check_n_clusters, check_size

    oracle = _load_oracle(args.oracle)
    X = _load_X(args.embeddings, args.key, args.columns)
    n = X.shape[0]
    check_n_clusters(args.clusters, n)
    replace = not args.without_replacement
    check_size(args.size, n, replace=replace)
    # where the results go is writable, with room, before anything is paid for
    io.check_output(args.out, force=args.force, formats=SELECTION_FORMATS, name="--out",
                    create=True, room=_selection_room(args.size, args.clusters))
    if args.cache:
        io.check_output(args.cache, force=True, name="--cache", create=True,
                        room=64 * args.clusters + 24 * n)
        if os.path.exists(args.cache) and not os.access(args.cache, os.W_OK):
            raise PermissionError(f"--cache {args.cache}: the file is not writable.")
    fp = io.fingerprint(X, progress=_progress(args))
    seed = args.seed if args.seed is not None else _new_seed()
    if not args.cache:
        try:
            sel = cs.sensitivity_sample(
                X, oracle, args.size, n_clusters=args.clusters, z=args.z, lam=args.lam,
                replace=replace, seed=seed, batch_size=args.batch_size,
                progress=_progress(args), **_fit_params(args), **_mix(args),
            )
        except cs.OracleError as exc:
            _save_partial_answers(args, exc, fp, seed)
            raise
    else:
        cache = cs.LossCache(args.cache, fingerprint=fp, info={"seed": seed})
        recorded = (cache.header or {}).get("seed")
        if args.seed is None and recorded is not None:
            seed = int(recorded)
            logger.info("resuming with seed %d, recorded in %s", seed, args.cache)
        elif args.seed is None and cache.header is None and len(cache):
            logger.warning("%s: give --seed to resume the plan its answers were asked for",
                           args.cache)
        if len(cache):
            logger.info("%s: %d answers already paid for", args.cache, len(cache))
        sampler = _checkpointed_fit(args, X, fp, seed)
        losses = cs.ask_oracle(oracle, sampler.query_indices_, batch_size=args.batch_size,
                               cache=cache, progress=_progress(args), state=sampler)
        sel = sampler.sample(losses, args.size, lam=args.lam, replace=replace, **_mix(args))
    paths = io.write_selection(args.out, sel, force=args.force, extra_meta={"seed": int(seed)})
    human, data = _selection_summary(sel, paths)
    data["seed"] = int(seed)
    human.insert(1, f"seed = {seed}")
    if args.cache:
        data["plan"] = _checkpoint_path(args.cache)
        human.append(f"the plan is kept in {data['plan']} (coreselect sample can draw again)")
    emit(args, human, data)
    return 0


def estimate(args) -> int:
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must lie in (0, 1); got {args.confidence}.")
    sel = io.read_selection(args.selection)
    idx, losses = io.read_losses(args.losses, n=sel.n)
    uniq = np.unique(sel.indices)
    per_unique = io.match_losses(idx, losses, uniq, path=args.losses, allow_extra=True)
    y = per_unique[np.searchsorted(uniq, sel.indices)]
    total = sel.estimate_total(y, method=args.method, confidence=args.confidence)
    mean = total.scaled(1.0 / sel.n)
    pct = round(100 * args.confidence)
    said, fields = verdict(sel)
    data = {
        "total": {"value": total.value, "stderr": total.stderr, "ci_low": total.ci_low,
                  "ci_high": total.ci_high},
        "mean": {"value": mean.value, "stderr": mean.stderr, "ci_low": mean.ci_low,
                 "ci_high": mean.ci_high},
        "confidence": args.confidence, "method": args.method, "n": sel.n, "size": sel.size,
        "unique": int(uniq.size), "replace": sel.replace, **fields,
    }
    human = [
        f"total loss  {total.value:.6g} +/- {total.stderr:.3g}  ({pct}% CI "
        f"[{total.ci_low:.6g}, {total.ci_high:.6g}])",
        f"mean loss   {mean.value:.6g} +/- {mean.stderr:.3g}  ({pct}% CI "
        f"[{mean.ci_low:.6g}, {mean.ci_high:.6g}])",
        f"from {sel.size} {'draws' if sel.replace else 'rows'} ({uniq.size} distinct) of "
        f"n={sel.n}, {args.method} estimator",
        *said,
    ]
    emit(args, human, data)
    return 0


def experiments() -> list[str]:
    try:
        from coreselect import experiments as package
    except ImportError:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_"))


def reproduce(args) -> int:
    names = experiments()
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
