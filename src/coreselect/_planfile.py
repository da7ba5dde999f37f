"""The plan file of a fitted sampler: a ``.npz`` archive with a JSON ``meta``, no pickles.

The archive holds the fitted arrays (``query_indices``, ``labels``, ``distances``,
``cluster_sizes``, the fitted centers, the queried rows' embeddings, the block boundaries of
the per-row state) and one JSON string ``meta`` with the format, the coreselect version, the
parameters, the state of the random stream (so that sampling after loading draws exactly what
sampling before saving would have drawn), the fingerprint of the embeddings (shape, dtype,
SHA-256; see :func:`coreselect.io.fingerprint`) and a SHA-256 checksum of the arrays, so that
an edited or damaged plan is refused. It is read with ``allow_pickle=False``.

:func:`write_plan` and :func:`read_plan` work on a :class:`coreselect.clustering.FittedState`;
:mod:`coreselect.persist` is the public face (``save_sampler``, ``load_sampler``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from typing import Any

import numpy as np

from ._validation import check_embeddings
from ._version import __version__
from .clustering import Clustering, FittedState
from .pools.state import memory_rows

__all__ = ["FORMAT", "write_plan", "read_plan", "read_meta", "verify_embeddings"]

logger = logging.getLogger("coreselect.persist")

FORMAT = "coreselect.SensitivitySampler/1"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# Rows whose distance to their center is recomputed to check that X is the plan's data.
_SPOT_ROWS = 256
# The arrays covered by the checksum, in this order.
_CHECKED = ("query_indices", "labels", "distances", "cluster_sizes", "fitted_centers",
            "query_points", "block_starts", "exclude", "representatives")


def _version() -> str:
    return __version__


def _jsonable(value: Any) -> Any:
    """Generator states hold numpy arrays and ints: make them JSON (arrays tagged)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def _rng_state(rng: np.random.Generator | None) -> dict | None:
    if rng is None:
        return None
    return _jsonable(rng.bit_generator.state)


def _rng_from_state(state: dict | None) -> np.random.Generator | None:
    if state is None:
        return None
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown random bit generator {name!r} in the saved state.")
    bitgen = getattr(np.random, name)()
    bitgen.state = _from_jsonable(state)
    return np.random.Generator(bitgen)


def _param(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return None  # a Generator seed: its state is saved instead


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in _CHECKED:
        if name in arrays:
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}:{a.dtype.str}:{list(a.shape)};".encode())
            h.update(memoryview(a).cast("B"))
    return "sha256:" + h.hexdigest()


def write_plan(path, params: dict, state: FittedState, rng: np.random.Generator | None,
               fingerprint: dict | None) -> str:
    """Write a fitted state and its sampler's parameters to ``path`` atomically."""
    from .io import atomic_path

    path = os.fspath(path)
    cl = state.clustering
    if fingerprint is None:
        fingerprint = {"shape": [int(state.n), int(state.d)]}
    arrays = {
        "query_indices": np.asarray(cl.center_indices, dtype=np.int64),
        "labels": np.asarray(cl.labels, dtype=np.int64),
        "distances": np.asarray(cl.distances, dtype=np.float64),
        "cluster_sizes": np.asarray(cl.cluster_sizes, dtype=np.int64),
        "fitted_centers": np.asarray(cl.fitted_centers, dtype=np.float64),
        "query_points": np.asarray(state.query_points, dtype=np.float64),
        "block_starts": np.asarray(state.rows.starts, dtype=np.int64),
    }
    if state.exclude is not None:
        arrays["exclude"] = np.asarray(state.exclude, dtype=np.int64)
    if state.representatives is not None:
        arrays["representatives"] = np.asarray(state.representatives, dtype=np.int64)
    meta = {
        "format": FORMAT,
        "coreselect_version": _version(),
        "params": {name: _param(value) for name, value in params.items()},
        "fitted": {"cost": float(cl.cost), "n_samples": int(state.n),
                   "n_features": int(state.d)},
        "clustering": {"z": float(cl.z), "fit_sample_size": int(cl.fit_sample_size),
                       "n_iter": int(cl.n_iter), "cost": float(cl.cost)},
        "rng": _rng_state(rng),
        "fingerprint": fingerprint,
        "checksum": _checksum(arrays),
    }
    with atomic_path(path, force=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON part of a saved sampler (parameters, version, fingerprint), arrays not read."""
    return _open(path)[0]


def _open(path: str | os.PathLike) -> tuple[dict, dict]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable coreselect plan ({exc}).") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a saved coreselect plan (not a .npz archive).")
    try:
        with data:
            if "meta" not in data.files:
                raise KeyError("no 'meta' entry")
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError, KeyError,
            ValueError) as exc:
        raise ValueError(f"{path} is not a readable coreselect plan ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path} is not a coreselect plan of format {FORMAT!r}; got {got!r}.")
    return meta, arrays


def verify_embeddings(meta: dict, arrays: dict, X, *, path: str = "the plan") -> None:
    """Raise ``ValueError`` when ``X`` is not the data the saved sampler was fitted on."""
    from .io import compare_fingerprints
    from .io import fingerprint as compute_fingerprint

    expected = meta.get("fingerprint") or {}
    shape = list(np.shape(X))
    if expected.get("shape") and list(expected["shape"]) != shape:
        raise ValueError(
            f"these embeddings have shape {tuple(shape)}, but {path} was made for embeddings of "
            f"shape {tuple(expected['shape'])}; refusing to use it with other data."
        )
    if expected.get("hash"):
        why = compare_fingerprints(expected, compute_fingerprint(X))
        if why:
            raise ValueError(f"{why}; {path} was made from other data. Make a new plan.")
    # spot check: the stored distance of some rows to their centers
    n = shape[0]
    q = arrays["query_indices"]
    labels = arrays["labels"]
    rows = np.unique(np.concatenate([
        np.random.default_rng(0).integers(0, n, size=min(n, _SPOT_ROWS)),
        q[: _SPOT_ROWS],
    ]))
    z = float(meta["params"].get("z") or 2.0)
    diff = np.asarray(X[rows], dtype=np.float64) - np.asarray(X[q[labels[rows]]], dtype=np.float64)
    v = np.sqrt(np.einsum("ij,ij->i", diff, diff)) ** z
    stored = arrays["distances"][rows]
    scale = max(1.0, float(np.max(np.abs(stored))) if stored.size else 1.0)
    if not np.allclose(v, stored, rtol=1e-5, atol=1e-9 * scale):
        bad = int(rows[np.flatnonzero(~np.isclose(v, stored, rtol=1e-5, atol=1e-9 * scale))[0]])
        raise ValueError(
            f"these embeddings do not match {path}: row {bad} is at distance {v[rows == bad][0]:.6g} "
            f"from its center, the plan says {arrays['distances'][bad]:.6g}. Make a new plan."
        )


def read_plan(path, X=None) -> tuple[dict, FittedState, np.random.Generator | None, dict]:
    """Read a plan: ``(params, state, rng, fingerprint)``; with ``X``, refuse other data.

    Raises ``ValueError`` naming the file when it is not a complete plan, when its arrays do
    not match their checksum (edited or damaged), or when ``X`` is not the plan's data.
    """
    path = os.fspath(path)
    meta, arrays = _open(path)
    version = meta.get("coreselect_version")
    if version != _version():
        logger.warning("%s was written by coreselect %s; this is %s", path, version, _version())
    for name in ("query_indices", "labels", "distances", "cluster_sizes"):
        if name not in arrays:
            raise ValueError(f"{path} is not a complete coreselect plan (no {name!r}).")
    q, labels, dist, sizes = (arrays[k] for k in ("query_indices", "labels", "distances",
                                                   "cluster_sizes"))
    fitted = meta["fitted"]
    n, k = int(fitted["n_samples"]), q.shape[0]
    if (labels.shape != (n,) or dist.shape != (n,) or sizes.shape != (k,)
            or (n and (labels.min() < 0 or labels.max() >= k))
            or (k and (q.min() < 0 or q.max() >= n))):
        raise ValueError(f"{path} is corrupted: its arrays do not agree with n={n}, k={k}.")
    if meta.get("checksum") is not None and meta["checksum"] != _checksum(arrays):
        raise ValueError(f"{path} is corrupted: its arrays do not match the checksum stored "
                         "with them (the file was edited or damaged). Make a new plan.")
    if X is not None:
        X = check_embeddings(X)
        verify_embeddings(meta, arrays, X, path=path)
    reps = arrays.get("representatives")
    if reps is not None and (reps.shape != (k,) or (k and (reps.min() < 0 or reps.max() >= n))
                             or not np.array_equal(labels[reps], np.arange(k))):
        raise ValueError(f"{path} is corrupted: its queried rows are not one per cluster.")
    if "query_points" in arrays:
        query_points = arrays["query_points"]
    elif X is not None:
        query_points = np.asarray(X[q if reps is None else reps], dtype=np.float64)
    else:
        query_points = None
    starts = arrays.get("block_starts")
    if starts is not None and (starts.size < 2 or starts[0] != 0 or starts[-1] != n
                               or np.any(np.diff(starts) <= 0)):
        raise ValueError(f"{path} is corrupted: its block boundaries do not cover n={n} rows.")
    rows = memory_rows(labels, dist, k, starts=starts)
    cl_meta = meta.get("clustering") or {}
    fitted_centers = arrays.get("fitted_centers")
    clustering = Clustering(
        center_indices=q, labels=labels, distances=dist, cost=float(fitted["cost"]),
        cluster_sizes=sizes,
        fitted_centers=fitted_centers if fitted_centers is not None else np.empty((0, 0)),
        z=float(cl_meta.get("z", meta["params"].get("z") or 2.0)),
        fit_sample_size=int(cl_meta.get("fit_sample_size", n)),
        n_iter=int(cl_meta.get("n_iter", 0)))
    state = FittedState(clustering=clustering, rows=rows, query_points=query_points,
                        path="in-memory", n=n, d=int(fitted["n_features"]),
                        exclude=arrays.get("exclude"), representatives=reps)
    return dict(meta["params"]), state, _rng_from_state(meta.get("rng")), meta.get("fingerprint")
