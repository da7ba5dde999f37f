"""BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings, without forming them.

The gradient embedding of row i is ``g_i = a_i (x) h_i`` (a Kronecker product of length
``C * d``), with ``a_i = p_i - onehot(argmax p_i)`` the last layer's output gradient for the
model's own label and ``h_i`` the penultimate-layer embedding. Because
``<a_i (x) h_i, a_j (x) h_j> = <a_i, a_j> <h_i, h_j>``,

    ||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 + ||a_j||^2 ||h_j||^2 - 2 <a_i, a_j> <h_i, h_j>,

and ``<a_i, a_j> = <p_i, a_j> - a_j[y_i]``. One seeding step therefore costs two GEMVs (over
the probabilities and the embeddings) and memory stays O(n (C + d)): the inputs and a few
vectors of length n, never the ``n x C d`` gradient embeddings.
"""

from __future__ import annotations

import logging

import numpy as np

from .._progress import Progress
from .._validation import (
    check_choice,
    check_embeddings,
    check_probabilities,
    check_random_state,
    iter_chunks,
)
from ..selection import Selection
from .uniform import _nominal_selection, selectable_rows

__all__ = ["badge"]

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 4 * 2**20


class _GradientDistances:
    """Squared distances between gradient embeddings, from their factors."""

    def __init__(self, probs: np.ndarray, H: np.ndarray, chunk: int | None = None):
        n, C = probs.shape
        d = H.shape[1]
        self.P, self.H = probs, H
        self.chunk = chunk or max(256, _CHUNK_BYTES // ((C + d) * 8))
        self.y = np.empty(n, dtype=np.int64)  # the model's own label
        self.gnorm2 = np.empty(n)  # ||g_i||^2 = ||a_i||^2 ||h_i||^2
        for a, b in iter_chunks(n, self.chunk):
            p = np.asarray(probs[a:b], dtype=np.float64)
            y = np.argmax(p, axis=1)
            self.y[a:b] = y
            p = p.copy() if np.shares_memory(p, probs) else p
            p[np.arange(b - a), y] -= 1.0  # a_i, formed one block at a time
            h = np.asarray(H[a:b], dtype=np.float64)
            self.gnorm2[a:b] = np.einsum("ij,ij->i", p, p) * np.einsum("ij,ij->i", h, h)

    def factors(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``a_j`` and ``h_j`` in float64."""
        a = np.asarray(self.P[j], dtype=np.float64).copy()
        a[self.y[j]] -= 1.0
        return a, np.asarray(self.H[j], dtype=np.float64)

    def to(self, j: int, out: np.ndarray | None = None) -> np.ndarray:
        """``||g_i - g_j||^2`` for every row i (clamped at 0; exactly 0 for i = j)."""
        n = self.P.shape[0]
        out = np.empty(n) if out is None else out
        a_j, h_j = self.factors(j)
        a_w = a_j.astype(self.P.dtype)
        h_w = h_j.astype(self.H.dtype)
        const = self.gnorm2[j]
        for a, b in iter_chunks(n, self.chunk):
            pa = np.einsum("ij,j->i", self.P[a:b], a_w).astype(np.float64)
            pa -= a_j[self.y[a:b]]  # <a_i, a_j> = <p_i, a_j> - a_j[y_i]
            hh = np.einsum("ij,j->i", self.H[a:b], h_w).astype(np.float64)
            o = out[a:b]
            np.multiply(pa, hh, out=o)
            o *= -2.0
            o += self.gnorm2[a:b]
            o += const
            np.maximum(o, 0.0, out=o)
        out[j] = 0.0
        return out


def badge(probs, embeddings, size: int, *, seed=None, exclude=None, first: str = "max_norm",
          progress: bool = False) -> Selection:
    """BADGE: k-means++ seeding on the last layer's gradient embeddings.

    Row i's gradient embedding is ``(p_i - onehot(argmax p_i)) (x) h_i``; the first row is
    the one with the largest gradient norm (as in the authors' code), each next one is drawn
    with probability proportional to its squared distance to the nearest row chosen so far.
    The distances come from the factors (see the module docstring), so the ``n x (C d)``
    gradient embeddings are never formed.

    Parameters
    ----------
    probs : array-like of shape (n, C)
        The model's class probabilities (rows sum to 1).
    embeddings : array-like of shape (n, d)
        The penultimate-layer embeddings ``h``.
    size : int
        Rows to select.
    seed : None, int or numpy.random.Generator
        The same seed gives the same selection.
    exclude : array-like of int, optional
        Rows that must not be selected (e.g. the ones already labelled).
    first : {"max_norm", "random"}, default="max_norm"
        The first row: the largest gradient norm, or a uniformly random row (k-means++).
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    Selection
        ``indices`` in the order they were chosen; ``method="badge"``. The rows are drawn
        by an adaptive procedure whose inclusion probabilities are unknown, so ``weights``
        (``N / size``, ``N`` the rows not excluded) and ``probabilities`` (``size / N``)
        are nominal, as for a uniform sample of the same size: they make no unbiasedness
        claim.

    Notes
    -----
    One step costs O(n (C + d)); memory beyond the inputs is a few vectors of length n.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(200, 5))
    >>> probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    >>> sel = badge(probs, rng.normal(size=(200, 16)), 10, seed=0)
    >>> sel.indices.shape, len(set(sel.indices.tolist()))
    ((10,), 10)
    """
    probs = check_probabilities(probs)
    H = check_embeddings(embeddings, name="embeddings")
    n = probs.shape[0]
    if H.shape[0] != n:
        raise ValueError(
            f"embeddings must have one row per row of probs (n={n}); got {H.shape[0]} rows."
        )
    first = check_choice(first, "first", ("max_norm", "random"))
    rng = check_random_state(seed)
    rows, pool, size = selectable_rows(n, exclude, size)

    grad = _GradientDistances(probs, H)
    free = np.ones(n, dtype=bool) if rows is None else np.zeros(n, dtype=bool)
    if rows is not None:
        free[rows] = True
    if first == "max_norm":
        norms = np.where(free, grad.gnorm2, -1.0)
        j = int(np.argmax(norms))
    else:
        j = int(rng.choice(np.flatnonzero(free)))
    picks = np.empty(size, dtype=np.int64)
    mind = np.empty(n)
    new = np.empty(n)
    fallback = 0
    bar = Progress(size, "badge", enabled=progress, unit="centers")
    for t in range(size):
        if t > 0:
            total = float(mind.sum())
            if total > 0:
                cdf = np.cumsum(mind)
                j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
                if j >= n or mind[j] <= 0:  # u rounded onto the end: the last positive row
                    j = int(np.flatnonzero(mind > 0)[-1])
            else:  # every free row coincides with a chosen one
                fallback += 1
                j = int(rng.choice(np.flatnonzero(free)))
        picks[t] = j
        free[j] = False
        if t == 0:
            grad.to(j, out=mind)
            mind[~free] = 0.0
        else:
            np.minimum(mind, grad.to(j, out=new), out=mind)
            mind[j] = 0.0
        bar.update(1)
    bar.close()
    logger.debug("badge: %d rows selected (%d uniform fallbacks)", size, fallback)
    return _nominal_selection(picks, pool, n, "badge",
                             {"size": size, "n_available": pool, "n_excluded": n - pool,
                              "first": first},
                             {"uniform_fallbacks": fallback})
