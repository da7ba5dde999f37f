"""Uncertainty sampling: margin, least confidence and entropy on an (n, C) probability matrix.

Each strategy scores every row from the model's class probabilities and selects the ``size``
most uncertain rows; rows with equal scores are ordered at random (by ``seed``). The scores
are computed on blocks of rows, so memory stays O(n + block x C) beyond the input.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_probabilities, check_random_state, iter_chunks
from ..selection import Selection
from .uniform import _nominal_selection, selectable_rows

__all__ = ["margin", "least_confidence", "entropy", "uncertainty_scores"]

_BLOCK_ROWS = 8192
_KINDS = ("margin", "least_confidence", "entropy")


def _block_scores(p: np.ndarray, kind: str) -> np.ndarray:
    """Uncertainty of each row of a block (larger = more uncertain), in float64."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if kind == "least_confidence":
        return 1.0 - p.max(axis=1)
    if kind == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    # entropy, summed over each row's sorted values so that permuting the classes of a row
    # gives exactly the same score (ties stay ties)
    p = np.sort(p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def uncertainty_scores(probs, kind: str) -> np.ndarray:
    """Uncertainty scores of every row, larger meaning more uncertain.

    Parameters
    ----------
    probs : array-like of shape (n, C)
        Class probabilities (rows sum to 1).
    kind : {"margin", "least_confidence", "entropy"}
        ``"margin"``: ``-(p_(1) - p_(2))``, minus the gap between the two largest
        probabilities; ``"least_confidence"``: ``1 - max p``; ``"entropy"``:
        ``-sum p log p`` (natural log, ``0 log 0 = 0``).

    Returns
    -------
    ndarray of float64, shape (n,)

    Examples
    --------
    >>> uncertainty_scores([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], "margin").round(2).tolist()
    [-0.5, -0.05]
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {list(_KINDS)}; got {kind!r}.")
    probs = check_probabilities(probs)
    n = probs.shape[0]
    out = np.empty(n)
    for a, b in iter_chunks(n, _BLOCK_ROWS):
        out[a:b] = _block_scores(probs[a:b], kind)
    return out


def _top(scores: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The ``size`` highest-scoring rows, best first; equal scores in random order."""
    n = scores.shape[0]
    tie = rng.permutation(n)  # a random rank for every row, for ties
    if size < n:
        kth = np.partition(scores, n - size)[n - size]  # the size-th largest score
        above = np.flatnonzero(scores > kth)
        at = np.flatnonzero(scores == kth)
        at = at[np.argsort(tie[at], kind="stable")][: size - above.size]
        rows = np.concatenate([above, at])
    else:
        rows = np.arange(n)
    order = np.lexsort((tie[rows], -scores[rows]))
    return rows[order]


def _select(probs, size: int, kind: str, seed, exclude) -> Selection:
    rng = check_random_state(seed)
    scores = uncertainty_scores(probs, kind)
    n = scores.shape[0]
    rows, pool, size = selectable_rows(n, exclude, size)
    if rows is None:
        idx = _top(scores, size, rng)
    else:
        idx = rows[_top(scores[rows], size, rng)]
    chosen = scores[idx]
    return _nominal_selection(idx, pool, n, kind,
                             {"size": size, "n_available": pool, "n_excluded": n - pool},
                             {"score_max": float(chosen[0]), "score_min": float(chosen[-1])})


_RETURNS = """
    Returns
    -------
    Selection
        ``indices`` from the most uncertain row down; ``method`` is the strategy's name and
        ``diagnostics`` holds the highest and lowest selected scores. The choice is greedy,
        not random, so ``weights`` (``N / size``, ``N`` the rows not excluded) and
        ``probabilities`` (``size / N``) are nominal, as for a uniform sample of the same size:
        they make no unbiasedness claim.
"""

_PARAMS = """
    Parameters
    ----------
    probs : array-like of shape (n, C)
        Class probabilities from the model (C >= 2); every row must sum to 1 within 1e-4 and
        hold no NaN.
    size : int
        Rows to select.
    seed : None, int or numpy.random.Generator
        Breaks ties between equal scores.
    exclude : array-like of int, optional
        Rows that must not be selected (e.g. the ones already labelled).
"""


def margin(probs, size: int, *, seed=None, exclude=None) -> Selection:
    """Select the rows with the smallest gap between the two most likely classes.
    {params}{returns}
    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4], [1.0, 0.0]])
    >>> margin(probs, 2).indices.tolist()
    [1, 2]
    """
    return _select(probs, size, "margin", seed, exclude)


def least_confidence(probs, size: int, *, seed=None, exclude=None) -> Selection:
    """Select the rows whose most likely class has the lowest probability.
    {params}{returns}
    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.5, 0.25, 0.25], [0.4, 0.4, 0.2], [0.8, 0.1, 0.1]])
    >>> least_confidence(probs, 2).indices.tolist()
    [1, 0]
    """
    return _select(probs, size, "least_confidence", seed, exclude)


def entropy(probs, size: int, *, seed=None, exclude=None) -> Selection:
    """Select the rows whose class distribution has the highest entropy.
    {params}{returns}
    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[1.0, 0.0, 0.0], [1/3, 1/3, 1/3], [0.5, 0.5, 0.0]])
    >>> entropy(probs, 2).indices.tolist()
    [1, 2]
    """
    return _select(probs, size, "entropy", seed, exclude)


for _f in (margin, least_confidence, entropy):
    _f.__doc__ = _f.__doc__.format(params=_PARAMS, returns=_RETURNS)
del _f
