"""Cluster-Margin (Citovsky et al., NeurIPS 2021, "Batch Active Learning at Scale").

Uncertainty and diversity in one batch: take the ``m`` rows of smallest margin (the gap
between the two most likely classes), group them by a clustering of the pool, and pick
round-robin over those groups, smallest group first, one uniformly random row per group and
round, until ``size`` rows are chosen.

The paper clusters the pool once, by hierarchical agglomerative clustering with average
linkage, which needs the pairwise distances of the rows it clusters. Here the default
clustering is the library's own k-means (:func:`coreselect.kz_clustering`, z = 2, centers
snapped to rows) with ``n_clusters = size`` clusters: one pass over the pool and no
``n x n`` matrix, so memory stays O(n) beyond the inputs at a million rows. A clustering
computed once (the paper's way, e.g. by agglomerative clustering of a sample with the other
rows assigned to their nearest cluster) can be passed as ``clusters``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validation import (
    check_embeddings,
    check_fraction,
    check_positive_int,
    check_probabilities,
    check_random_state,
)
from ..clustering import cluster_array
from ..selection import Selection
from .uncertainty import _top, uncertainty_scores
from .uniform import _nominal_selection, selectable_rows

__all__ = ["cluster_margin", "round_robin"]


def round_robin(rows: np.ndarray, groups: np.ndarray, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """``size`` of ``rows`` picked round-robin over their ``groups``, smallest group first.

    Each round visits the groups in ascending order of their number of rows (ties in random
    order) and takes one row not taken yet, uniformly at random, from each group that has one
    left. Returned in the order picked.

    Examples
    --------
    >>> rows = np.array([10, 11, 12, 13, 14, 15])
    >>> groups = np.array([0, 0, 0, 1, 1, 2])
    >>> picked = round_robin(rows, groups, 4, np.random.default_rng(0))
    >>> groups[picked - 10].tolist()  # round 1: groups 2, 1, 0; round 2 starts with group 1
    [2, 1, 0, 1]
    """
    m = rows.shape[0]
    perm = rng.permutation(m)  # a uniformly random row of each group at each round
    rows, groups = rows[perm], groups[perm]
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    order = np.lexsort((rng.permutation(counts.shape[0]), counts))  # smallest first
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0])
    by_group = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(m, dtype=np.int64)  # the round in which each row is reached
    rank[by_group] = np.arange(m) - starts[inv[by_group]]
    pick = np.lexsort((position[inv], rank))[:size]
    return rows[pick]


def _check_clusters(clusters, n: int) -> np.ndarray:
    arr = np.asarray(getattr(clusters, "labels", clusters))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"clusters must have shape ({n},), one cluster label per row of "
                         f"probs; got shape {arr.shape}.")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"clusters must hold integer cluster labels; got dtype {arr.dtype}.")
    return arr


def cluster_margin(probs, embeddings, size: int, *, margin_multiple: float = 10.0,
                   n_clusters: int | None = None, clusters=None, seed=None, exclude=None,
                   fit_sample_size="auto", max_iter: int = 20) -> Selection:
    """Cluster-Margin: the lowest-margin rows, round-robin over their clusters.

    Parameters
    ----------
    probs : array-like of shape (n, C)
        The model's class probabilities (C >= 2); every row must sum to 1 within 1e-4 and
        hold no NaN.
    embeddings : array-like of shape (n, d) or None
        The rows to cluster (e.g. the penultimate layer); may be None when ``clusters`` is
        given.
    size : int
        Rows to select (at most the rows not excluded).
    margin_multiple : float, default=10.0
        ``m = ceil(margin_multiple * size)`` lowest-margin rows (at most the rows not
        excluded) are the candidates; the paper's ``k_m``, a multiple of the batch size
        ``k_t`` (>= 1; 1 is plain margin sampling).
    n_clusters : int, optional
        Clusters of the default k-means clustering; ``size`` by default (at most n).
    clusters : array-like of int of shape (n,) or Clustering, optional
        A clustering of the pool computed beforehand (its ``labels``), used instead of the
        k-means one; the paper computes it once, before the first round.
    seed : None, int or numpy.random.Generator
        The clustering, the row taken from each cluster, and ties.
    exclude : array-like of int, optional
        Rows that must not be selected (e.g. the ones already labelled).
    fit_sample_size : int or "auto", default="auto"
        Rows the k-means centers are fitted on (see :func:`coreselect.kz_clustering`).
    max_iter : int, default=20
        k-means improvement steps at most.

    Returns
    -------
    Selection
        ``indices`` in the order picked; ``method="cluster_margin"``. The choice is greedy,
        so ``weights`` (``N / size``, ``N`` the rows not excluded) and ``probabilities``
        (``size / N``) are nominal, as for :func:`coreselect.baselines.margin`: they make no
        unbiasedness claim. ``diagnostics`` holds the candidates' and clusters' counts.

    Notes
    -----
    Memory beyond the inputs is a few vectors of length n; time is one margin pass over
    ``probs``, one k-means fit on ``fit_sample_size`` rows and one assignment pass over the
    embeddings (none when ``clusters`` is given).

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.5, 0.5], [0.51, 0.49], [0.52, 0.48], [0.9, 0.1], [1.0, 0.0]])
    >>> clusters = np.array([0, 0, 1, 1, 1])
    >>> sel = cluster_margin(probs, None, 2, margin_multiple=1.5, clusters=clusters, seed=0)
    >>> sel.indices[0].item(), sel.indices[1].item() in (0, 1), sel.method
    (2, True, 'cluster_margin')
    """
    probs = check_probabilities(probs)
    n = probs.shape[0]
    if clusters is None:
        if embeddings is None:
            raise ValueError("cluster_margin needs embeddings (an (n, d) matrix) or clusters "
                             "(one label per row); got neither.")
        H = check_embeddings(embeddings, name="embeddings")
        if H.shape[0] != n:
            raise ValueError(f"embeddings must have one row per row of probs (n={n}); got "
                             f"{H.shape[0]} rows.")
    else:
        labels = _check_clusters(clusters, n)
    if isinstance(margin_multiple, numbers.Real) and not isinstance(margin_multiple, bool):
        margin_multiple = check_fraction(margin_multiple, "margin_multiple", low=1.0,
                                         high=float(np.finfo(float).max))
    else:
        raise TypeError(f"margin_multiple must be a real number >= 1; got "
                        f"{type(margin_multiple).__name__} {margin_multiple!r}.")
    rng = check_random_state(seed)
    rows, pool, size = selectable_rows(n, exclude, size)
    m = min(pool, max(size, math.ceil(margin_multiple * size)))
    k = None
    if clusters is None:
        k = min(n, size) if n_clusters is None else check_positive_int(
            n_clusters, "n_clusters", maximum=n, maximum_name="n")
        check_positive_int(max_iter, "max_iter")

    scores = uncertainty_scores(probs, "margin")  # minus the margin: larger = less sure
    candidates = _top(scores, m, rng) if rows is None else rows[_top(scores[rows], m, rng)]
    if clusters is None:
        labels = cluster_array(H, k, z=2.0, rng=rng, fit_sample_size=fit_sample_size,
                               max_iter=max_iter).labels
    groups = labels[candidates]
    idx = round_robin(candidates, groups, size, rng)
    touched = np.unique(groups).shape[0]
    return _nominal_selection(
        idx, pool, n, "cluster_margin",
        {"size": size, "n_available": pool, "n_excluded": n - pool,
         "margin_multiple": margin_multiple, "n_candidates": int(m),
         "n_clusters": None if k is None else int(k), "clusters_given": clusters is not None},
        {"candidate_clusters": int(touched),
         "selected_clusters": int(np.unique(labels[idx]).shape[0]),
         "margin_max": float(-scores[candidates[-1]]),
         "margin_min": float(-scores[candidates[0]])})
