"""Data selection for linear regression: Algorithm 2 of the paper (section 4, Theorem 9).

Given the rows ``a_i`` of a matrix A whose labels ``b_i`` are costly, :func:`regression_sample`

1. computes a k-median clustering of the rows (our (k, z)-clustering engine with z = 1, or
   k-medoids by FasterPAM from the optional ``kmedoids`` package, the paper's choice);
2. asks the label oracle only for the k centers and fits ``x0`` by least squares on the
   centers, each weighted by the size of its cluster;
3. samples rows with ``p_i`` proportional to ``zeta ||a_i - a^_i|| + (<a^_i, x0> - b^_i)^2``
   (``a^_i`` is the center of row i; ``zeta = inf`` keeps the distance only, the paper's
   experimental choice), weights ``1 / (s p_i)``;
4. asks for the labels of the sampled rows and solves the weighted least squares problem.

Rows with ``p_i = 0`` coincide with their center (and, for a finite zeta, the center's residual
is 0): under the paper's Lipschitz assumption their label is the center's, so by default
(``use_centers=True``) each center enters the final fit with the number of such rows as its
weight. The weighted objective then is an unbiased estimate of ``||Ax - b||^2`` under that
assumption, and with ``k = n`` it is exactly the full objective. ``use_centers=False`` fits on
the sample alone, as written in the paper.

``mix`` (``"auto"`` by default) adds the label-free sensitivity of the compressed problem. The
k centers, each weighted by its cluster size, form a small regression problem standing for
the whole; the largest share of that problem's loss that center c can carry, over all
coefficient vectors, is its leverage score ``h_c`` in the matrix of weighted centers
``sqrt(|C_c|) a_c``. Spread uniformly over its cluster, this gives every row the term
``h_c / |C_c|`` (the scores sum to ``r = rank``). The sampling probability is the mixture
``p = (1 - mix) p_alg2 + mix q`` with ``q_i = h_c / (|C_c| r)``; ``"auto"`` adds the two
sensitivity bounds as they stand, ``p_i ~ p_alg2_i + h_c / |C_c|``, i.e. ``mix = r / (1 + r)``
(the same sum as the classical k-median bound ``dist_i / Phi + 1 / |C_i|`` of Feldman and
Langberg, 2011, to which it reduces when ``k <= d``, since then every ``h_c = 1``). Rows that
coincide with their center can then be drawn, and every weight is bounded. ``mix=0`` is
Algorithm 2 exactly as in the paper. On the regression tables of ``coreselect reproduce
regression`` (diamonds, randhie, CPS1988, k = 10% of the rows, zeta = inf, no center labels,
100 repetitions) ``"auto"`` kept the validation 1 - R^2 within 2% of exact leverage-score
sampling's from s = 4d to 20d, where ``mix=0`` was 2% to 7 times worse (docs/results.md).

For wide matrices (d > 256 by default) the clustering is computed on a Gaussian random
projection of the rows to 128 dimensions (a Johnson-Lindenstrauss map preserves the cost of
every k-median clustering up to a constant factor, Makarychev, Makarychev and Razenshteyn,
2019), while the distances that define ``p`` are computed exactly in the original space.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._optional import require
from ._validation import (
    check_embeddings,
    check_mix,
    check_n_clusters,
    check_oracle,
    check_positive_int,
    check_random_state,
    check_size,
    iter_chunks,
)
from .clustering import Clustering, cluster_array
from .kernels import pairwise_sq_dists
from .oracle import LossCache, ask_oracle
from .pools import available_memory
from .selection import Selection
from .sensitivity import (
    draw_sample,
)

__all__ = [
    "RegressionSelection",
    "regression_sample",
    "ask_labels",
    "weighted_lstsq",
    "kmedoids_clustering",
    "random_projection",
]

logger = logging.getLogger(__name__)

_AUTO_PROJECT_ABOVE = 256
_AUTO_PROJECT_DIM = 128


@dataclass(frozen=True, eq=False)
class RegressionSelection:
    """The result of :func:`regression_sample`: a weighted sample and the fitted coefficients.

    Attributes
    ----------
    selection : Selection
        The weighted sample (``method="regression"``). ``query_indices`` are the k centers,
        ``query_losses`` their squared residuals ``(<a_c, x0> - b_c)^2`` at ``coef0``,
        ``cluster_sizes`` the rows each center stands for.
    coef : ndarray of float64, shape (d,)
        The weighted least squares solution on the labelled rows (the output of the method).
    coef0 : ndarray of float64, shape (d,)
        ``x0``: least squares on the centers weighted by their cluster sizes (NaN when the
        centers' labels were not needed: ``zeta=inf`` with ``use_centers=False``).
    center_labels : ndarray of float64, shape (k,) or (0,)
        The oracle's labels of the centers, in the order of ``selection.query_indices``
        (empty when they were not needed).
    sample_labels : ndarray of float64, shape (s,)
        The labels of ``selection.indices`` (repeats included).
    fit_indices, fit_weights : ndarray, shape (m,)
        The rows and weights of the final weighted fit: the sample (summed over repeats) plus,
        with ``use_centers=True``, each center with the number of zero-probability rows it
        stands for. Train any other model on these to use the selection.
    n_labels : int
        Distinct rows whose label the oracle was asked for: k plus the distinct sampled rows
        that are not centers (only the distinct sampled rows when ``zeta=inf`` and
        ``use_centers=False``, the paper's experimental setting).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(400, 3))
    >>> b = A @ np.array([1.0, -2.0, 0.5])
    >>> res = regression_sample(A, b.__getitem__, 40, n_clusters=20, seed=0)
    >>> np.allclose(res.coef, [1.0, -2.0, 0.5])
    True
    >>> res.indices.shape == res.selection.indices.shape   # the Selection's attributes
    True
    """

    selection: Selection
    coef: np.ndarray
    coef0: np.ndarray
    center_labels: np.ndarray
    sample_labels: np.ndarray
    fit_indices: np.ndarray
    fit_weights: np.ndarray
    n_labels: int

    def __getattr__(self, name: str):
        # the Selection's attributes and methods (indices, weights, probabilities,
        # query_indices, estimate_total, ...) are reachable directly, as DESIGN.md's
        # ``sel = cs.regression_sample(...); sel.indices`` promises
        if name.startswith("__") or name == "selection":
            raise AttributeError(name)
        return getattr(self.selection, name)

    def predict(self, A) -> np.ndarray:
        """``A @ coef`` for new rows ``A`` of shape (m, d)."""
        A = check_embeddings(A, name="A")
        if A.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"A must have {self.coef.shape[0]} columns; got shape {A.shape}."
            )
        return np.asarray(A, dtype=np.float64) @ self.coef


# --------------------------------------------------------------------------- helpers
def weighted_lstsq(A, b, weights=None, *, ridge: float = 0.0) -> np.ndarray:
    """Minimise ``sum_i w_i (<a_i, x> - b_i)^2 + ridge ||x||^2`` (minimum-norm solution).

    Parameters
    ----------
    A : array-like of shape (m, d)
    b : array-like of shape (m,)
    weights : array-like of shape (m,), optional
        Non-negative row weights (1 by default).
    ridge : float, default=0.0
        Non-negative ridge penalty.

    Returns
    -------
    ndarray of float64, shape (d,)

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0], [1.0]])
    >>> weighted_lstsq(A, np.array([0.0, 3.0]), np.array([2.0, 1.0])).round(6).tolist()
    [1.0]
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if A.ndim != 2 or A.shape[0] != b.shape[0]:
        raise ValueError(f"A must be 2-D with one row per label; got A {A.shape}, b {b.shape}.")
    ridge = _check_nonneg(ridge, "ridge")
    if weights is None:
        sw = np.ones(A.shape[0])
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != A.shape[0]:
            raise ValueError(f"weights must have {A.shape[0]} entries; got {w.shape[0]}.")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and >= 0.")
        sw = np.sqrt(w)
    M = A * sw[:, None]
    y = b * sw
    if ridge > 0:
        d = A.shape[1]
        M = np.vstack([M, math.sqrt(ridge) * np.eye(d)])
        y = np.concatenate([y, np.zeros(d)])
    if M.shape[0] == 0:
        return np.zeros(A.shape[1])
    coef, *_ = np.linalg.lstsq(M, y, rcond=None)
    return coef


def _check_nonneg(value, name: str, *, allow_inf: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number >= 0; got {type(value).__name__} {value!r}.")
    value = float(value)
    if np.isnan(value) or value < 0 or (np.isinf(value) and not allow_inf):
        what = "a real number >= 0 (inf allowed)" if allow_inf else "a finite real number >= 0"
        raise ValueError(f"{name} must be {what}; got {value}.")
    return value


def ask_labels(label_oracle: Callable, indices, *, batch_size: int | None = 1024,
               known: LossCache | str | os.PathLike | None = None,
               progress: bool = False) -> np.ndarray:
    """Ask ``label_oracle`` for the labels of ``indices`` (each distinct row once), in order.

    :func:`coreselect.ask_oracle` with signed answers (labels may be negative): batches,
    checks naming the bad index, and ``known`` (a :class:`~coreselect.LossCache`, in memory
    or on disk, or a path) consulted first and updated batch by batch, so that a label paid
    for is never asked again nor lost when the oracle fails (:class:`~coreselect.OracleError`
    carries the answers).

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([-1.0, 2.0, 5.0])
    >>> ask_labels(b.__getitem__, [2, 0, 2]).tolist()
    [5.0, -1.0, 5.0]
    """
    if isinstance(known, dict):  # a plain dict is read and updated in place
        cache = LossCache(signed=True)
        cache._data.update({int(i): float(v) for i, v in known.items()})
        out = ask_labels(label_oracle, indices, batch_size=batch_size, known=cache,
                         progress=progress)
        known.update(cache)
        return out
    if known is not None and not isinstance(known, LossCache):
        known = LossCache(known, signed=True)
    return ask_oracle(label_oracle, indices, batch_size=batch_size, cache=known,
                      progress=progress, signed=True, name="label_oracle")


def random_projection(A: np.ndarray, dim: int, *, seed=None,
                      chunk_size: int = 8192) -> np.ndarray:
    """Gaussian Johnson-Lindenstrauss map of the rows of A to ``dim`` dimensions (float32).

    Entries of the map are N(0, 1/dim), so that squared norms are preserved in expectation.
    Rows are taken in chunks (A may be memory-mapped).

    Examples
    --------
    >>> import numpy as np
    >>> random_projection(np.ones((5, 300)), 16, seed=0).shape
    (5, 16)
    """
    rng = check_random_state(seed)
    n, d = A.shape
    dim = check_positive_int(dim, "projection_dim")
    G = (rng.standard_normal((d, dim)) / math.sqrt(dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start, stop in iter_chunks(n, chunk_size):
        np.matmul(np.asarray(A[start:stop], dtype=np.float32), G, out=out[start:stop])
    return out


def _exact_distances(A: np.ndarray, center_rows: np.ndarray, labels: np.ndarray,
                     chunk_size: int = 8192) -> np.ndarray:
    """``||a_i - a_{center(i)}||`` in float64, chunk by chunk."""
    n = A.shape[0]
    out = np.empty(n)
    C = np.asarray(A[center_rows], dtype=np.float64)
    for start, stop in iter_chunks(n, chunk_size):
        diff = np.asarray(A[start:stop], dtype=np.float64) - C[labels[start:stop]]
        out[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    out[center_rows] = 0.0
    return out


def kmedoids_clustering(A, n_clusters: int, *, seed=None, max_iter: int = 100,
                        max_memory: int | None = None) -> Clustering:
    """k-medoids (Euclidean, z = 1) by FasterPAM from the optional ``kmedoids`` package.

    The n x n float32 distance matrix is computed by GEMM and handed to FasterPAM (random
    initial medoids). Refused with a ValueError when it would not fit in memory.

    Parameters
    ----------
    A : array-like of shape (n, d)
    n_clusters : int
    seed : None, int or numpy.random.Generator
    max_iter : int, default=100
        FasterPAM's sweeps at most.
    max_memory : int, optional
        Bytes allowed for the distance matrix; by default half the available memory.

    Returns
    -------
    Clustering
        With ``z=1``: ``distances`` are Euclidean distances (float64) to the medoids.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [9.0, 9.0], [9.0, 10.0]])
    >>> cl = kmedoids_clustering(X, 2, seed=0)  # doctest: +SKIP
    >>> cl.cost  # doctest: +SKIP
    3.0
    """
    A = check_embeddings(A, name="A")
    n, _ = A.shape
    k = check_n_clusters(n_clusters, n)
    rng = check_random_state(seed)
    need = 4 * n * n
    limit = available_memory() // 2 if max_memory is None else int(max_memory)
    if need > limit:
        raise ValueError(
            f"clustering='kmedoids' needs an n x n distance matrix: {need / 2**30:.2f} GiB for "
            f"n={n}, more than the {limit / 2**30:.2f} GiB allowed. Use clustering='kmedian' "
            "(linear memory) instead."
        )
    kmedoids = require("kmedoids", "kmedoids", "clustering='kmedoids'")
    diss = pairwise_distance_matrix(A)
    res = kmedoids.fasterpam(diss, k, max_iter=max_iter, init="random",
                             random_state=int(rng.integers(2**31 - 1)), n_cpu=-1)
    del diss
    medoids = np.asarray(res.medoids, dtype=np.int64)
    order = np.argsort(medoids)
    center_rows = medoids[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    labels = rank[np.asarray(res.labels, dtype=np.int64)]
    dist = _exact_distances(A, center_rows, labels)
    labels[center_rows] = np.arange(center_rows.shape[0])
    sizes = np.bincount(labels, minlength=center_rows.shape[0]).astype(np.int64)
    return Clustering(center_indices=center_rows, labels=labels, distances=dist,
                      cost=float(dist.sum()), cluster_sizes=sizes,
                      fitted_centers=np.asarray(A[center_rows], dtype=np.float64), z=1.0,
                      fit_sample_size=n, n_iter=int(res.n_iter))


def pairwise_distance_matrix(A: np.ndarray, chunk_size: int = 2048) -> np.ndarray:
    """The n x n Euclidean distance matrix of the rows of A, float32 (GEMM, clamped >= 0).

    Examples
    --------
    >>> import numpy as np
    >>> pairwise_distance_matrix(np.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    n = A.shape[0]
    x32 = np.ascontiguousarray(A, dtype=np.float32)
    norms = np.einsum("ij,ij->i", x32, x32)
    out = np.empty((n, n), dtype=np.float32)
    for start, stop in iter_chunks(n, chunk_size):
        block = pairwise_sq_dists(x32[start:stop], x32, anorm=norms[start:stop], bnorm=norms,
                                  out=out[start:stop])
        np.sqrt(block, out=block)
    np.fill_diagonal(out, 0.0)
    return out


def _kmedian(A: np.ndarray, k: int, rng: np.random.Generator, projection_dim,
             fit_params: dict) -> tuple[Clustering, int | None]:
    d = A.shape[1]
    if projection_dim == "auto":
        dim = _AUTO_PROJECT_DIM if d > _AUTO_PROJECT_ABOVE else None
    elif projection_dim is None:
        dim = None
    else:
        dim = check_positive_int(projection_dim, "projection_dim")
        if dim >= d:
            dim = None
    if dim is None:
        return cluster_array(A, k, z=1.0, rng=rng, **fit_params), None
    P = random_projection(A, dim, seed=rng)
    cl = cluster_array(P, k, z=1.0, rng=rng, **fit_params)
    del P
    dist = _exact_distances(A, cl.center_indices, cl.labels)
    return Clustering(center_indices=cl.center_indices, labels=cl.labels, distances=dist,
                      cost=float(dist.sum()), cluster_sizes=cl.cluster_sizes,
                      fitted_centers=cl.fitted_centers, z=1.0,
                      fit_sample_size=cl.fit_sample_size, n_iter=cl.n_iter), dim


def _center_term(A, centers: np.ndarray, labels: np.ndarray, sizes: np.ndarray,
                 eligible: np.ndarray) -> tuple[np.ndarray, float]:
    """The compressed problem's sensitivity, spread over the clusters: ``(q, r)``.

    ``h_c``: leverage scores of the centers' rows weighted by ``sqrt(|C_c|)`` (the regression
    problem the weighted centers form); cluster c's mass ``h_c / r`` (``r = sum h_c`` over
    the clusters with an eligible row) is shared evenly by its eligible rows. ``q`` sums to 1
    over the eligible rows (or is all 0 when none is eligible). ``O(k d min(k, d))``; when
    every center row is 0 the mass is spread evenly over the clusters.
    """
    from .baselines.leverage import trusted_leverage_scores

    C = np.asarray(A[centers], dtype=np.float64) * np.sqrt(sizes.astype(np.float64))[:, None]
    h = trusted_leverage_scores(C)  # all 1 when k <= d and the centers are independent (no QR then)
    m = np.bincount(labels[eligible], minlength=centers.shape[0]).astype(np.float64)
    h = np.where(m > 0, h, 0.0)
    if not np.any(h > 0):  # e.g. every center row is zero: spread evenly over the clusters
        h = (m > 0).astype(np.float64)
    r = float(h.sum())
    q = np.zeros(A.shape[0])
    if r > 0:
        share = np.divide(h, m * r, out=np.zeros_like(h), where=m > 0)
        q[eligible] = share[labels[eligible]]
    return q, r


# ------------------------------------------------------------------- Algorithm 2
def regression_sample(A, label_oracle: Callable, size: int, *, n_clusters: int | None,
                      zeta: float = float("inf"), ridge: float = 0.0, replace: bool = True,
                      use_centers: bool = True, mix: float | str = "auto",
                      clustering="kmedian",
                      projection_dim: int | str | None = "auto", seed=None,
                      batch_size: int | None = 1024,
                      cache: LossCache | str | os.PathLike | None = None,
                      **fit_params) -> RegressionSelection:
    """Select rows of A to label for least squares (Algorithm 2 of the paper) and fit.

    Parameters
    ----------
    A : array-like of shape (n, d)
        The rows (features). Append a column of ones for an intercept.
    label_oracle : callable
        ``label_oracle(indices: ndarray[int64]) -> labels``: one finite real label per row,
        called in batches of ``batch_size``; never asked twice for the same row.
    size : int
        s, the number of draws (``replace=True``) or of distinct rows (``replace=False``).
    n_clusters : int or None
        k, the number of centers whose labels are asked first. May be None when
        ``clustering`` is a fitted :class:`~coreselect.Clustering`.
    zeta : float, default=inf
        Weight of the distance term in ``p_i ~ zeta ||a_i - a^_i|| + (<a^_i, x0> - b^_i)^2``;
        ``inf`` samples by distance only (the paper's experiment), 0 by the residuals only.
    ridge : float, default=0.0
        Ridge penalty ``ridge ||x||^2`` added to both fits (on the scale of the full
        objective ``||Ax - b||^2``).
    replace : bool, default=True
        i.i.d. draws with weights ``1/(s p)`` (the paper), or distinct rows with inclusion
        probabilities ``min(1, c p)`` and weights ``1/pi``.
    use_centers : bool, default=True
        Add each center to the final fit, weighted by the number of rows of its cluster that
        have ``p = 0`` (rows equal to the center); False fits on the sample only, as the
        paper does (with ``zeta=inf`` the centers' labels are then not asked at all).
    mix : float in [0, 1) or "auto", default="auto"
        Share of the sampling mass given to the compressed problem's sensitivity: each
        cluster gets mass in proportion to the leverage score ``h_c`` of its center in the
        matrix of centers weighted by ``sqrt(|C_c|)``, spread uniformly over its rows:
        ``p = (1 - mix) p_alg2 + mix q``, ``q_i = h_c / (|C_c| sum_c h_c)``. ``"auto"``:
        ``mix = r / (1 + r)`` with ``r = sum_c h_c`` (the rank of the weighted centers), i.e.
        ``p_i`` proportional to ``p_alg2_i + h_c / |C_c|``, the sum of the two sensitivity
        bounds. 0 is Algorithm 2 exactly as in the paper. When ``k <= d`` every ``h_c`` is 1
        and ``q`` spreads the mass evenly over the clusters (the classical k-median term
        ``1 / |C_i|``, Feldman and Langberg 2011). Any ``mix > 0`` bounds every weight by
        ``|C_c| r / (mix h_c s)`` and reaches rows that coincide with their center.
    clustering : "kmedian", "kmedoids" or Clustering, default="kmedian"
        "kmedian": our (k, z)-clustering with z = 1 (linear memory). "kmedoids": FasterPAM
        (``pip install coreselect[kmedoids]``; needs the n x n distance matrix in memory).
        A fitted :class:`~coreselect.Clustering` of the rows of A is used as is (its
        distances are taken to the power ``1/z``).
    projection_dim : int, "auto" or None, default="auto"
        Cluster a Gaussian projection of the rows to this many dimensions ("auto": 128 when
        d > 256, else none); the sampling distances are exact either way.
    seed : None, int or numpy.random.Generator
        The same seed gives the same selection.
    batch_size : int or None, default=1024
        Rows per oracle call.
    cache : LossCache, path or None
        Keep the labels in a file as they come (signed values): a rerun asks only for the
        missing ones, and when the label oracle fails, :class:`~coreselect.OracleError`
        carries the labels received.
    **fit_params
        Passed to :func:`~coreselect.kz_clustering` (``fit_sample_size``, ``max_iter``, ...).

    Returns
    -------
    RegressionSelection
        ``.selection`` (a :class:`~coreselect.Selection`), ``.coef``, ``.coef0``...

    Examples
    --------
    >>> import numpy as np
    >>> import coreselect as cs
    >>> rng = np.random.default_rng(0)
    >>> A = np.c_[rng.normal(size=(2000, 4)), np.ones(2000)]
    >>> b = A @ np.array([1.0, 0.0, -1.0, 2.0, 0.5]) + 0.1 * rng.normal(size=2000)
    >>> res = cs.regression_sample(A, b.__getitem__, 100, n_clusters=50, seed=0)
    >>> res.n_labels <= 150, bool(np.abs(res.coef - [1, 0, -1, 2, 0.5]).max() < 0.1)
    (True, True)
    """
    rng = check_random_state(seed)
    A = check_embeddings(A, name="A")
    n, d = A.shape
    size = check_size(size, n, replace=replace)
    zeta = _check_nonneg(zeta, "zeta", allow_inf=True)
    ridge = _check_nonneg(ridge, "ridge")
    mix = check_mix(mix, allowed=("auto",))
    mix_rule = "auto" if mix == "auto" else "given"
    check_oracle(label_oracle, name="label_oracle", what="labels")

    # 1. k-median (or k-medoids) on the rows
    dim = None
    if isinstance(clustering, Clustering):
        cl = clustering
        if cl.labels.shape[0] != n:
            raise ValueError(
                f"clustering has {cl.labels.shape[0]} labels; expected one per row of A ({n})."
            )
        if n_clusters is not None and int(n_clusters) != cl.n_clusters:
            raise ValueError(
                f"n_clusters={n_clusters} but the given clustering has {cl.n_clusters} centers."
            )
        dist = cl.distances if cl.z == 1.0 else cl.distances ** (1.0 / cl.z)
        method = "given"
    elif clustering == "kmedian":
        k = check_n_clusters(n_clusters, n)
        cl, dim = _kmedian(A, k, rng, projection_dim, fit_params)
        dist = cl.distances
        method = "kmedian"
    elif clustering == "kmedoids":
        k = check_n_clusters(n_clusters, n)
        cl = kmedoids_clustering(A, k, seed=rng)
        dist = cl.distances
        method = "kmedoids"
    else:
        raise ValueError(
            "clustering must be 'kmedian', 'kmedoids' or a fitted Clustering; "
            f"got {clustering!r}."
        )
    centers = cl.center_indices
    labels = cl.labels
    k = centers.shape[0]
    sizes = np.bincount(labels, minlength=k).astype(np.int64)

    # 2. labels of the centers, x0 on the centers weighted by cluster size. With zeta = inf
    # and use_centers=False neither p nor the fit depends on them: they are not asked.
    known = cache if isinstance(cache, LossCache) else LossCache(cache, signed=True)
    need_centers = use_centers or not np.isinf(zeta)
    if need_centers:
        b_c = ask_labels(label_oracle, centers, batch_size=batch_size, known=known)
        C = np.asarray(A[centers], dtype=np.float64)
        coef0 = weighted_lstsq(C, b_c, sizes, ridge=ridge)
        v_c = (C @ coef0 - b_c) ** 2
    else:
        b_c = np.empty(0)
        coef0 = np.full(d, np.nan)
        v_c = np.zeros(k)

    # 3. sampling mass: zeta ||a - a^|| + v(a, x0)
    if np.isinf(zeta):
        mass = dist.astype(np.float64, copy=True)
    else:
        mass = v_c[labels] if zeta == 0 else zeta * dist + v_c[labels]
    if use_centers:
        mass[centers] = 0.0  # their labels are known: they enter the fit exactly
    total = float(mass.sum())
    if not np.isfinite(total):
        raise ValueError("the sampling mass is not finite; are the rows or labels huge?")
    center_rank = None
    if mix_rule == "auto" or mix > 0:
        elig = np.ones(n, dtype=bool)
        if use_centers:
            elig[centers] = False
        q, center_rank = _center_term(A, centers, labels, sizes, elig)
        if center_rank <= 0:  # no row left to spread the mass over (every row is a center)
            mix = 0.0
        elif mix_rule == "auto":
            mix = center_rank / (1.0 + center_rank)
    if mix > 0:
        p = q if total <= 0 else (1.0 - mix) * (mass / total) + mix * q
    elif total > 0:
        p = mass / total
    elif use_centers:
        p = mass  # all zero: every row is represented by its center, nothing to draw
    else:
        logger.warning("all sampling masses are 0: sampling uniformly")
        p = np.full(n, 1.0 / n)
    npos = int(np.count_nonzero(p))
    mass = p  # rows with p = 0 are the ones their center stands for

    # 4. the draw
    if npos == 0:
        idx = np.empty(0, dtype=np.int64)
        prob = np.empty(0)
        weights = np.empty(0)
        s_eff = 0
    else:
        s_eff = size if replace else min(size, npos)
        if s_eff < size:
            logger.info("only %d rows have p > 0: drawing %d distinct rows, not %d",
                        npos, s_eff, size)
        idx, prob, weights = draw_sample(p, s_eff, replace, rng)

    # 5. labels of the sample, weighted least squares
    b_s = ask_labels(label_oracle, idx, batch_size=batch_size, known=known)
    uniq, inverse = np.unique(idx, return_inverse=True)
    w_u = np.bincount(inverse.reshape(-1), weights=weights, minlength=uniq.shape[0])
    fit_idx, fit_w = uniq, w_u
    if use_centers:
        zero = mass == 0
        c_weight = np.bincount(labels[zero], minlength=k).astype(np.float64)
        keep = c_weight > 0
        all_idx = np.concatenate([uniq, centers[keep]])
        all_w = np.concatenate([w_u, c_weight[keep]])
        fit_idx, inv = np.unique(all_idx, return_inverse=True)
        fit_w = np.bincount(inv.reshape(-1), weights=all_w, minlength=fit_idx.shape[0])
    fit_b = np.array([known[i] for i in fit_idx.tolist()], dtype=np.float64)
    coef = weighted_lstsq(np.asarray(A[fit_idx], dtype=np.float64), fit_b, fit_w, ridge=ridge)

    params = {
        "zeta": zeta, "ridge": ridge, "n_clusters": int(k), "clustering": method,
        "projection_dim": dim, "cost": float(dist.sum()), "size": int(s_eff),
        "use_centers": bool(use_centers), "mix": float(mix), "mix_rule": mix_rule,
        "z": 1.0,
    }
    diagnostics = {"n_labels": len(known), "rows_with_positive_p": npos,
                   "center_leverage_rank": center_rank,
                   "center_residual_total": float(np.dot(sizes, v_c))}
    sel = Selection(indices=idx, weights=weights, probabilities=prob, n=n,
                    centers=centers[labels[idx]], query_indices=centers,
                    query_losses=v_c if need_centers else None, cluster_sizes=sizes, replace=replace, method="regression", params=params,
                    diagnostics=diagnostics)
    return RegressionSelection(selection=sel, coef=coef, coef0=coef0, center_labels=b_c,
                               sample_labels=b_s, fit_indices=fit_idx.astype(np.int64),
                               fit_weights=fit_w, n_labels=len(known))
