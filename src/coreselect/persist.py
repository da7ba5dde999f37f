"""Saving and loading a fitted :class:`~coreselect.SensitivitySampler`, without pickles.

The file is a ``.npz`` archive: the fitted arrays (``query_indices_``, ``labels_``,
``distances_``, ``cluster_sizes_``, the fitted centers) and one JSON string ``meta`` with the
format, the coreselect version, the parameters, the seed and the state of the random stream
(so that sampling after loading draws exactly what sampling before saving would have drawn)
and the fingerprint of the embeddings (shape, dtype, SHA-256; see
:func:`coreselect.io.fingerprint`). It is read with ``allow_pickle=False``.

Loading with the embeddings (``load_sampler(path, X)``) refuses embeddings that are not the
ones the plan was made from: the shape must match, the hash too when the file has one, and
the stored distances of a few rows to their centers must match those recomputed from ``X``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import zipfile
from typing import Any

import numpy as np

from ._validation import check_embeddings

__all__ = ["FORMAT", "save_sampler", "load_sampler", "verify_embeddings"]

logger = logging.getLogger(__name__)

FORMAT = "coreselect.SensitivitySampler/1"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# Constructor parameters saved (those the sampler has) and passed back when loading.
_PARAMS = ("n_clusters", "z", "seed", "fit_sample_size", "max_iter", "chunk_size", "backend",
           "memory_limit")
# Rows whose distance to their center is recomputed to check that X is the plan's data.
_SPOT_ROWS = 256


def _version() -> str:
    from . import __version__

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


def save_sampler(sampler, path: str | os.PathLike, *, X=None,
                 fingerprint: dict | None = None) -> str:
    """Write a fitted ``SensitivitySampler`` to ``path`` (a ``.npz`` archive), atomically.

    Parameters
    ----------
    sampler : SensitivitySampler
        Fitted.
    path : str or path-like
        The file to write (written as given; ``.npz`` is the usual suffix).
    X : array-like, optional
        The embeddings the sampler was fitted on: their full fingerprint (with a SHA-256) is
        stored. Without it (and without ``fingerprint`` or a ``fingerprint_`` attribute) only
        the shape is stored, and loading checks the shape and a few distances.
    fingerprint : dict, optional
        A fingerprint from :func:`coreselect.io.fingerprint`, when the caller has one.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from coreselect import SensitivitySampler
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> sampler = SensitivitySampler(4, seed=0).fit(X)
    >>> path = save_sampler(sampler, os.path.join(tempfile.mkdtemp(), "plan.npz"), X=X)
    >>> again = load_sampler(path, X)
    >>> bool((again.labels_ == sampler.labels_).all())
    True
    """
    from .io import atomic_path
    from .io import fingerprint as compute_fingerprint

    if not hasattr(sampler, "query_indices_"):
        raise RuntimeError("this SensitivitySampler is not fitted yet; call fit(X) first.")
    path = os.fspath(path)
    if X is not None:
        fingerprint = compute_fingerprint(check_embeddings(X))
    elif fingerprint is None:
        fingerprint = getattr(sampler, "fingerprint_", None)
    if fingerprint is None:
        fingerprint = {"shape": [int(sampler.n_samples_), int(sampler.n_features_in_)]}
    cl = getattr(sampler, "clustering_", None)
    meta = {
        "format": FORMAT,
        "coreselect_version": _version(),
        "params": {name: _param(getattr(sampler, name, None)) for name in
                   _PARAMS},
        "fitted": {
            "cost": float(sampler.cost_),
            "n_samples": int(sampler.n_samples_),
            "n_features": int(sampler.n_features_in_),
        },
        "clustering": None if cl is None else {
            "z": float(cl.z), "fit_sample_size": int(cl.fit_sample_size),
            "n_iter": int(cl.n_iter), "cost": float(cl.cost),
        },
        "rng": _rng_state(getattr(sampler, "_rng", None)),
        "fingerprint": fingerprint,
    }
    arrays = {
        "query_indices": np.asarray(sampler.query_indices_, dtype=np.int64),
        "labels": np.asarray(sampler.labels_, dtype=np.int64),
        "distances": np.asarray(sampler.distances_, dtype=np.float64),
        "cluster_sizes": np.asarray(sampler.cluster_sizes_, dtype=np.int64),
    }
    if cl is not None:
        arrays["fitted_centers"] = np.asarray(cl.fitted_centers, dtype=np.float64)
    query_points = getattr(sampler, "_query_points", None)
    if query_points is not None:  # the centers' embeddings (used by the diagnostics)
        arrays["query_points"] = np.asarray(query_points, dtype=np.float64)
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


def load_sampler(path: str | os.PathLike, X=None, *, cls=None):
    """Read a sampler written by :func:`save_sampler`.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    X : array-like, optional
        The embeddings: when given, the sampler is refused (``ValueError``) unless they are
        the ones it was fitted on (shape, dtype and SHA-256 when stored; distances of a few
        rows always).
    cls : type, optional
        The class to build (``SensitivitySampler`` by default).

    Returns
    -------
    SensitivitySampler
        Fitted; ``sample`` continues the saved random stream.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from coreselect import SensitivitySampler
    >>> X = np.random.default_rng(1).normal(size=(60, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "plan.npz")
    >>> _ = save_sampler(SensitivitySampler(3, seed=0).fit(X), path, X=X)
    >>> load_sampler(path, X + 1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the embeddings have the same shape and dtype as those the plan was made for, but other values (their SHA-256 differs); ... Make a new plan.
    """
    if cls is None:
        from .sampler import SensitivitySampler as cls
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
    if X is not None:
        X = check_embeddings(X)
        verify_embeddings(meta, arrays, X, path=path)
    params = dict(meta["params"])
    accepted = inspect.signature(cls.__init__).parameters
    sampler = cls(params.pop("n_clusters"), **{p: v for p, v in params.items()
                                                if p in _PARAMS and p in accepted})
    sampler.query_indices_ = q
    sampler.labels_ = labels
    sampler.distances_ = dist
    sampler.cost_ = float(fitted["cost"])
    sampler.cluster_sizes_ = sizes
    sampler.n_samples_ = n
    sampler.n_features_in_ = int(fitted["n_features"])
    sampler.fingerprint_ = meta.get("fingerprint")
    if "query_points" in arrays:
        sampler._query_points = arrays["query_points"]
    elif X is not None:
        sampler._query_points = np.asarray(X[q], dtype=np.float64)
    rng = _rng_from_state(meta.get("rng"))
    if rng is not None:
        sampler._rng = rng
    else:
        from ._validation import check_random_state

        sampler._rng = check_random_state(sampler.seed)
    cl_meta = meta.get("clustering")
    if cl_meta is not None and "fitted_centers" in arrays:
        from .clustering import Clustering

        sampler.clustering_ = Clustering(
            center_indices=q, labels=labels, distances=dist, cost=float(cl_meta["cost"]),
            cluster_sizes=sizes, fitted_centers=arrays["fitted_centers"], z=float(cl_meta["z"]),
            fit_sample_size=int(cl_meta["fit_sample_size"]), n_iter=int(cl_meta["n_iter"]),
        )
    return sampler
