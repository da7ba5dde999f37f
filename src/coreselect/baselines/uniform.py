"""Uniform sampling: the simplest baseline, and an unbiased one."""

from __future__ import annotations

import numpy as np

from .._validation import check_indices, check_positive_int, check_random_state, check_size
from ..selection import Selection

__all__ = ["uniform", "available_rows"]


def available_rows(n: int, exclude) -> np.ndarray | None:
    """The rows of ``range(n)`` not in ``exclude`` (sorted), or None when nothing is excluded."""
    if exclude is None:
        return None
    ex = np.unique(check_indices(exclude, n, name="exclude"))
    if ex.size == 0:
        return None
    keep = np.ones(n, dtype=bool)
    keep[ex] = False
    return np.flatnonzero(keep)


def selectable_rows(n: int, exclude, size, *, replace: bool = False,
                    verb: str = "select") -> tuple[np.ndarray | None, int, int]:
    """``(rows, pool, size)``: the rows not in ``exclude`` (None: all), how many, and
    ``size`` checked against them; an error when ``exclude`` covers every row."""
    rows = available_rows(n, exclude)
    pool = n if rows is None else int(rows.shape[0])
    if pool == 0:
        raise ValueError(f"exclude covers all n={n} rows; nothing is left to {verb}.")
    return rows, pool, check_size(size, pool, replace=replace)


def _nominal_selection(indices, pool: int, n: int, method: str, params: dict,
                       diagnostics: dict | None = None, *, replace: bool = False) -> Selection:
    """``size`` rows of ``pool`` available ones as a Selection with the nominal weights
    ``pool / size`` (each row stands for as many), per-row probability ``size / pool`` (or
    ``1 / pool`` per draw with replacement): uniform's exact values, the greedy strategies'
    conventional ones."""
    indices = np.asarray(indices, dtype=np.int64)
    size = indices.shape[0]
    return Selection(indices=indices, weights=np.full(size, pool / size),
                     probabilities=np.full(size, 1.0 / pool if replace else size / pool),
                     n=n, replace=replace, method=method, params=params,
                     diagnostics={} if diagnostics is None else diagnostics)


def uniform(n: int, size: int, *, seed=None, replace: bool = False, exclude=None) -> Selection:
    """Draw ``size`` rows of a pool of ``n`` uniformly at random.

    Parameters
    ----------
    n : int
        The pool size.
    size : int
        s, the number of draws (at most the number of available rows when
        ``replace=False``).
    seed : None, int or numpy.random.Generator
        The same seed gives the same selection.
    replace : bool, default=False
        i.i.d. draws (True; a row can come more than once) or distinct rows (False).
    exclude : array-like of int, optional
        Rows that must not be drawn (e.g. the ones already labelled). The sample is then
        uniform over the ``N = n - len(exclude)`` other rows.

    Returns
    -------
    Selection
        ``weights`` are ``N / s`` (``N = n`` without ``exclude``) and ``probabilities`` are
        the inclusion probability ``s / N`` (``replace=False``) or the per-draw probability
        ``1 / N`` (``replace=True``), so that ``sum(w * loss)`` is an unbiased estimate of
        the total loss of the available rows. ``method`` is ``"uniform"``.

    Examples
    --------
    >>> sel = uniform(100, 10, seed=0)
    >>> sel.indices.shape, float(sel.weights[0]), float(sel.probabilities[0])
    ((10,), 10.0, 0.1)
    >>> len(set(sel.indices.tolist()))
    10
    """
    n = check_positive_int(n, "n", minimum=1)
    rng = check_random_state(seed)
    rows, pool, size = selectable_rows(n, exclude, size, replace=replace, verb="draw")
    if replace:
        pos = rng.integers(0, pool, size=size)
    else:
        pos = rng.choice(pool, size=size, replace=False)
    idx = pos if rows is None else rows[pos]
    return _nominal_selection(idx, pool, n, "uniform",
                             {"size": size, "n_available": pool, "n_excluded": n - pool},
                             replace=replace)
