"""Every input check of coreselect and its message, in one place.

Checks raise ``ValueError`` or ``TypeError`` (never ``assert``) and name the argument,
what was expected and what came, in the manner of scikit-learn's ``check_array``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "check_random_state",
    "check_embeddings",
    "check_n_clusters",
    "check_size",
    "check_z",
    "check_lam",
    "check_losses",
    "check_indices",
    "check_positive_int",
    "iter_chunks",
    "check_labels",
    "check_fraction",
    "check_choice",
    "check_sample_weights",
    "check_probabilities",
    "check_surrogate",
    "check_proposal_power",
    "check_finite_rows",
    "check_memory_limit",
    "check_mix",
    "check_oracle",
    "check_exclude",
]

# Rows per block when scanning an array that may be memory-mapped (about 32 MB at d=128 float64).
_SCAN_ROWS = 32768


def check_random_state(seed: Any) -> np.random.Generator:
    """Turn ``seed`` (None, an int or a Generator) into a ``numpy.random.Generator``.

    A Generator is returned as is (not copied), so that a caller can pass its own stream down.
    """
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be None, an int or a numpy.random.Generator; got {seed!r}.")
    if isinstance(seed, numbers.Integral):
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed}.")
        return np.random.default_rng(int(seed))
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    raise TypeError(
        "seed must be None, an int or a numpy.random.Generator; "
        f"got {type(seed).__name__} {seed!r}."
    )


def iter_chunks(n: int, chunk: int):
    """Yield ``(start, stop)`` pairs covering ``range(n)`` in blocks of ``chunk`` rows."""
    chunk = max(1, int(chunk))
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)


def _to_array(X: Any, name: str) -> np.ndarray:
    """Convert array-likes (lists, DataFrames, memmaps) without copying when possible."""
    if isinstance(X, np.ndarray):  # includes np.memmap
        return X
    if hasattr(X, "__dask_graph__"):
        raise TypeError(
            f"{name} is a Dask array; this function needs an in-memory or memory-mapped array. "
            "Use the Dask backend (install coreselect[dask]) or call .compute() first."
        )
    to_numpy = getattr(X, "to_numpy", None)
    if callable(to_numpy):  # pandas / polars DataFrame: no copy when the columns share one dtype
        try:
            return np.asarray(to_numpy())
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if np.isscalar(X) or X is None:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features); got {X!r}.")
    try:
        return np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from exc


def check_embeddings(X: Any, *, name: str = "X", check_finite: bool = True) -> np.ndarray:
    """Validate an (n, d) embedding matrix and return a floating array.

    float32 and float64 arrays (memory-mapped ones included) are returned without a copy;
    bool, integer and float16 arrays are cast (float16 to float32, the others to float64).
    The finiteness scan goes through the rows in blocks, so a memory-mapped array is never
    loaded whole. Errors name the first row holding NaN or inf.
    """
    arr = _to_array(X, name)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (bool, int or float); got dtype {arr.dtype}."
        )
    if arr.ndim != 2:
        hint = " Reshape a single feature with X.reshape(-1, 1)." if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim}-D "
            f"array of shape {arr.shape}.{hint}"
        )
    n, d = arr.shape
    if n == 0:
        raise ValueError(f"{name} has 0 rows (shape {arr.shape}); at least 1 is required.")
    if d == 0:
        raise ValueError(f"{name} has 0 columns (shape {arr.shape}); at least 1 is required.")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):  # longdouble
        arr = arr.astype(np.float64)
    if check_finite and arr.dtype.kind == "f":
        for start, stop in iter_chunks(n, _SCAN_ROWS):
            check_finite_rows(arr[start:stop], start, name)
    return arr


def check_finite_rows(block: np.ndarray, start: int = 0, name: str = "X", *,
                      rows: np.ndarray | None = None,
                      hint: str = "remove or impute non-finite values first.") -> None:
    """Raise naming the first row and column of ``block`` holding NaN or inf.

    The scan of every block of embeddings, wherever it happens (the public entry for arrays,
    the fit's one pass for pools read from files or Dask). Rows are numbered from ``start``,
    or by ``rows`` (the pool rows of the block's rows) when given.
    """
    finite = np.isfinite(block)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        what = "NaN" if np.isnan(block[row, col]) else "inf"
        at = int(rows[row]) if rows is not None else start + int(row)
        raise ValueError(f"{name} contains {what} at row {at}, column {int(col)}; {hint}")


def check_positive_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None,
                       maximum_name: str | None = None) -> int:
    """Check that ``value`` is an int in ``[minimum, maximum]`` and return it as ``int``."""
    if isinstance(value, (bool, np.bool_)):
        rng = f"[{minimum}, {maximum_name or maximum}]" if maximum is not None else f">= {minimum}"
        raise TypeError(f"{name} must be an int {rng}; got bool {value!r}.")
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            rng = f"[{minimum}, {maximum_name or maximum}]" if maximum is not None else f">= {minimum}"
            raise TypeError(f"{name} must be an int {rng}; got {type(value).__name__} {value!r}.")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        rng = (
            f"in [{minimum}, {maximum_name + '=' if maximum_name else ''}{maximum}]"
            if maximum is not None
            else f">= {minimum}"
        )
        raise ValueError(f"{name} must be an int {rng}; got {value}.")
    return value


def check_n_clusters(n_clusters: Any, n: int) -> int:
    """``n_clusters`` must be an int in ``[1, n]``."""
    return check_positive_int(n_clusters, "n_clusters", minimum=1, maximum=n, maximum_name="n")


def check_size(size: Any, n: int, *, replace: bool) -> int:
    """``size`` must be an int >= 1, and at most ``n`` when drawing without replacement."""
    if replace:
        return check_positive_int(size, "size", minimum=1)
    if not isinstance(size, (bool, np.bool_)) and isinstance(size, numbers.Integral) and size > n:
        raise ValueError(
            f"size must be at most n={n} when replace=False; got {int(size)}. "
            "Use replace=True to draw with replacement."
        )
    return check_positive_int(size, "size", minimum=1, maximum=n, maximum_name="n")


def check_z(z: Any) -> float:
    """``z`` (the power of the distance) must be a real number >= 1."""
    if isinstance(z, (bool, np.bool_)) or not isinstance(z, numbers.Real):
        raise TypeError(f"z must be a real number >= 1; got {type(z).__name__} {z!r}.")
    z = float(z)
    if not np.isfinite(z) or z < 1:
        raise ValueError(f"z must be a finite real number >= 1; got {z}.")
    return z


def check_lam(lam: Any, *, allowed: tuple[str, ...] = ("auto",)) -> float | str:
    """``lam`` must be a finite float >= 0 or one of the strings in ``allowed``."""
    if isinstance(lam, str):
        if lam in allowed:
            return lam
        raise ValueError(f"lam must be a float >= 0 or one of {list(allowed)}; got {lam!r}.")
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        raise TypeError(
            f"lam must be a float >= 0 or one of {list(allowed)}; got {type(lam).__name__} {lam!r}."
        )
    lam = float(lam)
    if np.isnan(lam) or lam < 0 or np.isinf(lam):
        raise ValueError(f"lam must be a finite float >= 0; got {lam}.")
    return lam


def check_indices(indices: Any, n: int, *, name: str = "indices") -> np.ndarray:
    """Validate an index array: 1-D integers in ``[0, n)``; returned as int64."""
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}.")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        bad = np.flatnonzero((arr < 0) | (arr >= n))
        if bad.size:
            raise ValueError(
                f"{name} must lie in [0, {n}); got {int(arr[bad[0]])} at position {int(bad[0])}."
            )
    return arr


def check_losses(losses: Any, indices: np.ndarray, *, name: str = "losses",
                 source: str = "", nonnegative: bool = True) -> np.ndarray:
    """Validate loss values for ``indices``: one finite number >= 0 per index.

    Errors name the first bad index (the data index, not the position), so that a user can
    find the faulty answer. ``source`` (e.g. "the oracle") is used in the message. With
    ``nonnegative=False`` any finite real number is accepted (regression labels).
    """
    what, whats = ("loss", "losses") if nonnegative else ("label", "labels")
    who = f"{source} returned " if source else ""
    try:
        arr = np.asarray(losses)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: {who}values that are not numbers: {exc}") from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(
            f"{name}: {who}an array of shape {arr.shape}; expected shape ({len(indices)},), "
            f"one {what} per index."
        )
    if arr.shape[0] != len(indices):
        raise ValueError(
            f"{name}: {who}{arr.shape[0]} values for {len(indices)} indices; expected one "
            f"{what} per index."
        )
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        for pos, value in enumerate(arr.reshape(-1)):
            try:
                float(value)
            except (TypeError, ValueError):
                shown = value.item() if hasattr(value, "item") else value
                raise TypeError(
                    f"{name}: {who}a non-numeric value {shown!r} for index {int(indices[pos])}."
                ) from None
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name}: {who}{arr[bad[0]]} for index {int(indices[bad[0]])}; {whats} must be "
            f"finite ({bad.size} non-finite in all)."
        )
    if nonnegative:
        bad = np.flatnonzero(arr < 0)
        if bad.size:
            raise ValueError(
                f"{name}: {who}{arr[bad[0]]} for index {int(indices[bad[0]])}; losses must be "
                f">= 0 ({bad.size} negative in all)."
            )
    return arr


def check_labels(labels: Any, indices: np.ndarray, *, name: str = "labels",
                 source: str = "") -> np.ndarray:
    """Validate regression labels for ``indices``: one finite real number per index.

    :func:`check_losses` without the sign check; errors name the first bad index.
    """
    return check_losses(labels, indices, name=name, source=source, nonnegative=False)


def check_fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0,
                   low_open: bool = False, high_open: bool = False) -> float:
    """``value`` must be a real number in the interval from ``low`` to ``high``.

    ``low_open`` / ``high_open`` exclude the end points. Used for ``mix`` (alpha in
    [0, 1]) and quantiles (in (0, 1]).
    """
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{low:g}, {high:g}{hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in {interval}; got {type(value).__name__} {value!r}."
        )
    value = float(value)
    bad = (
        not np.isfinite(value)
        or value < low or value > high
        or (low_open and value == low) or (high_open and value == high)
    )
    if bad:
        raise ValueError(f"{name} must be a real number in {interval}; got {value}.")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` must be one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")
    return value


def check_sample_weights(weights: Any, m: int, *, name: str = "weights") -> np.ndarray:
    """Training weights: a 1-D array of ``m`` finite numbers >= 0; returned as float64."""
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold numbers; got {weights!r}: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] != m:
        raise ValueError(f"{name} must have shape ({m},), one weight per row; got {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise ValueError(
            f"{name} must be finite and >= 0; got {arr[bad[0]]} at position {int(bad[0])}."
        )
    return arr


def check_surrogate(surrogate: Any, n: int, *, name: str = "surrogate") -> np.ndarray | None:
    """An (n,) array of predicted losses >= 0, one per pool row, as float64; None passes.

    Errors name the argument and the first bad row.
    """
    if surrogate is None:
        return None
    try:
        arr = np.asarray(surrogate)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one predicted loss per pool row; "
                         f"got shape {arr.shape}.")
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        for row, value in enumerate(arr):
            try:
                float(value)
            except (TypeError, ValueError):
                shown = value.item() if hasattr(value, "item") else value
                raise TypeError(f"{name}: a non-numeric value {shown!r} at row {row}.") from None
        raise TypeError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    arr = np.asarray(arr, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}: {arr[bad[0]]} at row {int(bad[0])}; predicted losses must be "
                         f"finite ({bad.size} non-finite in all).")
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ValueError(f"{name}: {arr[bad[0]]} at row {int(bad[0])}; predicted losses must be "
                         f">= 0 ({bad.size} negative in all).")
    return arr


def check_proposal_power(proposal_power: Any, surrogate, design: str) -> float | None:
    """``proposal_power``: None, or a finite real > 0 given with a surrogate and a design
    that follows a per-row proposal ("auto" or "sensitivity")."""
    if proposal_power is None:
        return None
    value = check_fraction(proposal_power, "proposal_power", low=0.0, high=math.inf,
                           low_open=True, high_open=True)
    if surrogate is None:
        raise ValueError("proposal_power needs surrogate= (the per-row score it raises to "
                         "that power); got surrogate=None.")
    if design == "stratified":
        raise ValueError("proposal_power needs design='auto' or 'sensitivity' (the "
                         "stratified design draws uniformly inside the clusters); got "
                         "design='stratified'.")
    return value


def check_probabilities(probs: Any, *, name: str = "probs", atol: float = 1e-4) -> np.ndarray:
    """Validate an (n, C) matrix of class probabilities (C >= 2) and return a float array.

    Every entry must be finite and in ``[-atol, 1 + atol]``, and every row must sum to 1
    within ``atol``. float32 and float64 arrays come back without a copy; others are cast to
    float64. The scan goes through the rows in blocks; errors name the first bad row.
    """
    arr = _to_array(probs, name)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (class probabilities); got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes); got {arr.ndim}-D "
            f"array of shape {arr.shape}."
        )
    n, n_classes = arr.shape
    if n == 0:
        raise ValueError(f"{name} has 0 rows (shape {arr.shape}); at least 1 is required.")
    if n_classes < 2:
        raise ValueError(f"{name} must have at least 2 columns (classes); got shape {arr.shape}.")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    for start, stop in iter_chunks(n, _SCAN_ROWS):
        block = arr[start:stop]
        check_finite_rows(block, start, name, hint="probabilities must be finite.")
        bad = (block < -atol) | (block > 1 + atol)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} must lie in [0, 1]; got {block[row, col]} at row {start + int(row)}, "
                f"column {int(col)}."
            )
        sums = block.sum(axis=1, dtype=np.float64)
        off = np.flatnonzero(np.abs(sums - 1.0) > atol)
        if off.size:
            row = int(off[0])
            raise ValueError(
                f"{name} rows must sum to 1 (within {atol:g}); row {start + row} sums to "
                f"{sums[row]:.6g}. Apply a softmax to logits first."
            )
    return arr


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def check_memory_limit(memory_limit: Any, *, name: str = "memory_limit") -> int:
    """``memory_limit``: a finite number of bytes > 0, or a string such as "1.5GB" or
    "512MiB"; returned as an int number of bytes (None is resolved by the caller)."""
    if isinstance(memory_limit, str):
        import re

        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", memory_limit)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(
                f"{name} must be a number of bytes, a string such as '1.5GB' or '512MiB', "
                f"or None; got {memory_limit!r}."
            )
        memory_limit = float(m.group(1)) * _UNITS[unit]
    if isinstance(memory_limit, (bool, np.bool_)) or not isinstance(memory_limit, numbers.Real):
        raise TypeError(
            f"{name} must be a number of bytes, a string such as '1.5GB', or None; "
            f"got {type(memory_limit).__name__} {memory_limit!r}."
        )
    value = float(memory_limit)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of bytes; got {memory_limit!r}.")
    return int(value)


def check_mix(mix: Any, *, allowed: tuple[str, ...] = ()) -> float | str:
    """``mix``, the uniform (or label-free) share mixed into a proposal: a real number in
    [0, 1], or one of the strings in ``allowed``."""
    if not allowed:
        return check_fraction(mix, "mix")
    if isinstance(mix, str) and mix in allowed:
        return mix
    options = " or ".join([repr(a) for a in allowed] + ["a real number in [0, 1]"])
    if isinstance(mix, str):
        raise ValueError(f"mix must be {options}; got {mix!r}.")
    try:
        return check_fraction(mix, "mix")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"mix must be {options}; got {mix!r}.") from None


def check_oracle(oracle: Any, *, name: str = "oracle", what: str = "losses") -> Callable:
    """``oracle`` must be callable: ``oracle(indices: ndarray[int64]) -> values``."""
    if not callable(oracle):
        raise TypeError(f"{name} must be callable (indices -> {what}); got "
                        f"{type(oracle).__name__}.")
    return oracle


def check_exclude(exclude: Any, n: int, *, name: str = "exclude") -> np.ndarray | None:
    """Rows to leave out (already labelled): distinct ints in ``[0, n)``, at least one row
    left; returned sorted as int64, or None when there are none."""
    if exclude is None:
        return None
    arr = check_indices(np.asarray(exclude).reshape(-1) if np.ndim(exclude) else exclude, n,
                        name=name)
    uniq = np.unique(arr)
    if uniq.shape[0] != arr.shape[0]:
        dup = np.flatnonzero(np.bincount(arr) > 1)[0]
        raise ValueError(f"{name} must hold distinct rows; row {int(dup)} appears more than "
                         "once.")
    if uniq.shape[0] >= n:
        raise ValueError(f"{name} leaves no row to select: it holds all {n} rows of the pool.")
    return uniq if uniq.size else None
