"""The one fit: a (k, z)-clustering of any pool, snapped to data rows, and one pass over it.

1. The fitting rows are drawn from the pool (``fit_sample_size``, the same rows for every
   kind of pool for the same seed) and read with ``pool.take``, as float64 whatever the
   input, so every pool finds the same centers.
2. :func:`coreselect.seeding.fit_centers` seeds, improves and snaps the k centers on them.
3. One pass over the pool's blocks assigns every row to its nearest snapped center with the
   backend (:func:`coreselect.kernels.nearest_centers`), sets a center's own row to distance
   exactly 0 (ties between equal rows), scans each block for NaN and inf when the entry did
   not, and leaves the per-row state where the pool keeps it (in memory, spilled to a file
   under ``memory_limit``, or on Dask workers) with each block's per-center counts.
4. Rows far from every center, which the fitting sample missed, become centers of their own
   within the budget k (:func:`isolate_far_rows`).

:func:`fit_pool` returns a :class:`FittedState`; :func:`kz_clustering` is the same fit on an
array, returning its :class:`Clustering`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ._validation import (
    check_choice,
    check_finite_rows,
    check_n_clusters,
    check_positive_int,
    check_random_state,
    check_z,
)
from ._warnings import warn_user
from .backends import get_backend
from .kernels import CenterSet, nearest_centers
from .pools import ArrayPool, as_pool, plan_chunks
from .pools.state import RowState
from .seeding import INITS, default_fit_size, dz_seeding, fit_centers

__all__ = ["Clustering", "FittedState", "kz_clustering", "fit_pool", "fit_rows", "dz_seeding",
           "cluster_array"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Clustering:
    """The result of :func:`kz_clustering`.

    Attributes
    ----------
    center_indices : ndarray of int64, shape (k,)
        Pool rows used as centers (distinct).
    labels : ndarray of int64, shape (n,)
        For each row, the position in ``center_indices`` of its nearest center.
    distances : ndarray of float64, shape (n,)
        ``v(e) = ||e - A(e)||^z``.
    cost : float
        ``Phi = sum(distances)``.
    cluster_sizes : ndarray of int64, shape (k,)
        Rows per center.
    fitted_centers : ndarray of float64, shape (k0, d)
        The centers before snapping (k0 >= k; k < k0 only when rows coincide).
    z : float
        The power of the distance.
    fit_sample_size : int
        Rows the centers were fitted on.
    n_iter : int
        Improvement steps run.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.0], [10.0], [10.0]])
    >>> c = kz_clustering(X, 2, seed=0)
    >>> c.cost, sorted(c.cluster_sizes.tolist())
    (0.0, [2, 2])
    """

    center_indices: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    cost: float
    cluster_sizes: np.ndarray
    fitted_centers: np.ndarray
    z: float
    fit_sample_size: int
    n_iter: int

    @property
    def n_clusters(self) -> int:
        return int(self.center_indices.shape[0])


@dataclass(frozen=True, eq=False)
class FittedState:
    """Everything a fit leaves for sampling (and what :mod:`coreselect.persist` saves).

    Attributes
    ----------
    clustering : Clustering
        The centers, labels, distances, cost and sizes.
    rows : RowState
        The per-row state with its per-block summaries (in memory, spilled or on Dask).
    query_points : ndarray of float64, shape (k, d)
        The embeddings of the queried rows (the diagnostics use them).
    path : str
        "in-memory", "out-of-core" or "dask": how the pool was read.
    n, d : int
        The shape of the pool.
    exclude : ndarray of int64 or None
        Rows that are never centers and never drawn (already labelled), sorted.
    representatives : ndarray of int64 or None
        When the queried rows are not the centers: one uniformly random row of each
        cluster, in cluster order (``queries="random"``); None: the centers are queried.
    """

    clustering: Clustering
    rows: RowState
    query_points: np.ndarray
    path: str
    n: int
    d: int
    exclude: np.ndarray | None = None
    representatives: np.ndarray | None = None


def fit_rows(n: int, k: int, fit_sample_size, rng: np.random.Generator,
             exclude: np.ndarray | None = None) -> np.ndarray:
    """The sorted pool rows the clustering is fitted on (``fit_sample_size`` checked), none of
    them in ``exclude`` (so that no excluded row becomes a center)."""
    avail = None
    if exclude is not None and exclude.size:
        keep = np.ones(n, dtype=bool)
        keep[exclude] = False
        avail = np.flatnonzero(keep)
        n = avail.shape[0]
    if fit_sample_size == "auto":
        m = default_fit_size(n, k)
    else:
        m = min(n, check_positive_int(fit_sample_size, "fit_sample_size", minimum=k))
    rows = np.arange(n) if m >= n else np.sort(rng.choice(n, size=m, replace=False))
    return rows if avail is None else avail[rows]


class AssignJob:
    """The fit's per-block job: nearest snapped center and ``v(e)`` of each row of a block.

    Picklable (it travels to Dask workers): it holds the centers, their pool rows, z, the
    backend (as given) and whether to scan blocks for NaN and inf.
    """

    def __init__(self, centers: np.ndarray, center_rows: np.ndarray, *, z: float, backend,
                 chunk_size: int | None, check: bool, shared: bool):
        self.centers = centers
        self.center_rows = center_rows
        self.z = z
        self.backend = backend
        self.chunk_size = chunk_size
        self.check = check
        self.shared = shared  # one CenterSet for every block (a single thread runs them)
        self.k = int(centers.shape[0])
        self._cs = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cs"] = None
        return state

    def __call__(self, start: int, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.check:
            check_finite_rows(xb, start, "X")
        cs = self._cs if self._cs is not None else CenterSet(self.centers)
        if self.shared:
            self._cs = cs
        lab, v = nearest_centers(xb, cs, backend=get_backend(self.backend), z=self.z,
                                 chunk_size=self.chunk_size)
        # a center's own row: its own label, distance exactly 0 (ties between equal rows)
        lo, hi = np.searchsorted(self.center_rows, [start, start + xb.shape[0]])
        if hi > lo:
            own = self.center_rows[lo:hi] - start
            lab[own] = np.arange(lo, hi)
            v[own] = 0.0
        return lab, v


# A row is far when its own v(e) is at least this share of the cost Phi (and at least the mean
# cost of a cluster, Phi / k): under lam="auto" distance alone would give it >= 2.5% of the draws.
FAR_SHARE = 0.05
# Rounds of isolating far rows (each one may reveal the next far row, once Phi has shrunk).
_FAR_ROUNDS = 3


def _far_candidates(labels, v, start, arg):
    thr, most, out = arg
    idx = np.flatnonzero(v > thr)
    if out.size:
        idx = np.setdiff1d(idx, out)
    if idx.size > most:
        idx = idx[np.argsort(v[idx])[::-1][:most]]
    return start + idx, np.asarray(v[idx], dtype=np.float64)


def _cluster_costs(labels, v, start, k):
    return np.bincount(labels, weights=v, minlength=k)


def _rows_with_label(labels, v, start, mask):
    return start + np.flatnonzero(mask[labels])


def isolate_far_rows(pool, state: RowState, center_rows: np.ndarray, ccoords: np.ndarray, *,
                     k: int, z: float, backend, chunk_size: int | None = None,
                     exclude: np.ndarray | None = None):
    """Make the rows that are far from every center centers of their own, within k.

    The fitting sample can miss a row far from everything (one row in a million); the pass
    sees it. A row is *far* when its ``v(e) >= max(Phi / k, FAR_SHARE * Phi)``: it alone costs
    more than an average cluster and at least 5% of the whole clustering cost. Up to
    ``max(1, k // 10)`` far rows (the farthest first) become centers; when that would exceed
    k centers, the clusters of least cost give up their center and their rows go to their
    nearest remaining center. Repeated while far rows appear (at most 3 rounds). Returns the
    new ``(center_rows, ccoords)``; ``state`` is rewritten in place.
    """
    most = max(1, k // 10)
    isolated = 0
    ex = np.empty(0, dtype=np.int64) if exclude is None else exclude
    cuts = np.searchsorted(ex, state.starts)
    local = [ex[cuts[b]:cuts[b + 1]] - state.starts[b] for b in range(state.n_blocks)]
    for _ in range(_FAR_ROUNDS):
        cost = state.cost
        kc = center_rows.shape[0]
        thr = max(cost / k, FAR_SHARE * cost)
        if not cost > 0 or isolated >= most:
            break
        got = state.map_blocks(_far_candidates, [(thr, most, local[b])
                                                  for b in range(state.n_blocks)])
        far = np.concatenate([g[0] for g in got]).astype(np.int64)
        if far.size == 0:
            break
        fv = np.concatenate([g[1] for g in got])
        far = np.sort(far[np.argsort(fv)[::-1][: most - isolated]])
        n_drop = max(0, kc + far.shape[0] - k)
        drop = np.zeros(kc, dtype=bool)
        if n_drop:
            costs = np.sum(state.map_blocks(_cluster_costs, [kc] * state.n_blocks), axis=0)
            drop[np.argsort(costs, kind="stable")[:n_drop]] = True
        keep_rows = center_rows[~drop]
        new_rows = np.union1d(keep_rows, far)
        new_coords = np.asarray(pool.take(new_rows), dtype=np.float64)
        mapping = np.full(kc, -1, dtype=np.int64)
        mapping[~drop] = np.searchsorted(new_rows, keep_rows)
        moved = np.concatenate(state.map_blocks(_rows_with_label, [drop] * state.n_blocks))
        affected = np.union1d(moved.astype(np.int64), far)
        xa = np.asarray(pool.take(affected))
        if xa.dtype not in (np.float32, np.float64):
            xa = xa.astype(np.float64)
        lab, v = nearest_centers(xa, CenterSet(new_coords), backend=get_backend(backend), z=z,
                                 chunk_size=chunk_size)
        own = np.searchsorted(new_rows, affected)
        is_center = (own < new_rows.shape[0]) & (new_rows[np.minimum(own, new_rows.shape[0] - 1)]
                                                  == affected)
        lab[is_center] = own[is_center]
        v[is_center] = 0.0
        state.rewrite(mapping, affected, lab, v)
        logger.info("isolate_far_rows: %d far row(s) became centers (%d dropped); Phi %.6g -> "
                    "%.6g", far.shape[0], n_drop, cost, state.cost)
        center_rows, ccoords = new_rows, new_coords
        isolated += far.shape[0]
    return center_rows, ccoords


def fit_pool(pool, n_clusters: int, *, z: float, rng: np.random.Generator,
             fit_sample_size="auto", max_iter: int = 20, tol: float = 1e-4,
             chunk_size: int | None = None, backend=None, memory_limit=None,
             progress: bool = False, spill_dir: str | None = None,
             far_rows: bool = True, exclude: np.ndarray | None = None,
             init: str = "scalable") -> FittedState:
    """Fit the (k, z)-clustering of a validated pool and assign every row (see the module
    docs). Inputs are trusted: the public entries check them."""
    n, d = pool.n, pool.d
    k = n_clusters
    rows = fit_rows(n, k, fit_sample_size, rng, exclude)
    in_memory = pool.kind == "in-memory" and memory_limit is None
    xs = np.asarray(pool.take(rows), dtype=np.float64)
    if not pool.checked:
        check_finite_rows(xs, 0, "X", rows=rows)
    positions, fitted, n_iter = fit_centers(
        xs, min(k, xs.shape[0]), z=z, rng=rng, backend=get_backend(backend), max_iter=max_iter,
        tol=tol, chunk_size=chunk_size, progress=progress, init=init)
    center_rows = rows[positions]  # rows is sorted, so center_rows is sorted too
    ccoords = xs[positions].copy()
    kc = center_rows.shape[0]
    if kc < k:
        distinct = np.unique(xs, axis=0).shape[0]
        warn_user(
            f"only {kc} distinct centers could be placed for n_clusters={k}: the "
            f"{xs.shape[0]} rows the clustering was fitted on hold {distinct} distinct "
            f"vector(s); querying {kc}.")
    del xs
    plan = plan_chunks(2**62 if in_memory else memory_limit, n=n, d=d, k=kc,
                       itemsize=np.dtype(pool.dtype).itemsize, fit_rows=rows.shape[0],
                       chunk_size=None if in_memory else chunk_size)
    job = AssignJob(ccoords, center_rows, z=z, backend=backend,
                    chunk_size=chunk_size if in_memory else plan.assign_rows,
                    check=not pool.checked, shared=pool.kind != "dask")
    state = pool.assign_rows(job, plan, progress=progress, spill_dir=spill_dir)
    if far_rows:
        center_rows, ccoords = isolate_far_rows(
            pool, state, center_rows, ccoords, k=k, z=z, backend=backend,
            chunk_size=chunk_size if in_memory else plan.assign_rows, exclude=exclude)
    path = "dask" if pool.kind == "dask" else ("in-memory" if in_memory else "out-of-core")
    logger.debug("fit_pool: n=%d d=%d k=%d path=%s chunk=%d blocks=%d", n, d, kc, path,
                 plan.chunk_rows, state.n_blocks)
    clustering = Clustering(
        center_indices=center_rows, labels=state.labels, distances=state.distances,
        cost=state.cost, cluster_sizes=state.sizes, fitted_centers=fitted, z=float(z),
        fit_sample_size=int(rows.shape[0]), n_iter=int(n_iter))
    return FittedState(clustering=clustering, rows=state, query_points=ccoords, path=path,
                       n=int(n), d=int(d), exclude=exclude)


def kz_clustering(X, n_clusters: int, *, z: float = 2.0, seed=None,
                  fit_sample_size: int | str = "auto", max_iter: int = 20, tol: float = 1e-4,
                  chunk_size: int | None = None, progress: bool = False,
                  backend=None, far_rows: bool = True, init: str = "scalable") -> Clustering:
    """Fit a (k, z)-clustering, snap its centers to data rows, assign every row.

    Parameters
    ----------
    X : array-like of shape (n, d)
        The embeddings (memory-mapped arrays are read in chunks).
    n_clusters : int
        k, in [1, n].
    z : float, default=2.0
        Power of the distance: 2 for k-means, 1 for k-median, any real >= 1.
    seed : None, int or numpy.random.Generator
        Randomness of the row sample and the seeding.
    fit_sample_size : int or "auto", default="auto"
        Rows the centers are fitted on; "auto" is ``min(n, max(20000, 40 k))``.
    max_iter : int, default=20
        Improvement steps at most (each one pass over the fitting sample, or over the
        smaller seed sample of ``init="scalable"``).
    tol : float, default=1e-4
        Stop when the sample cost improves by less than this fraction.
    chunk_size : int, optional
        Rows per chunk of the assignment pass; does not change the result.
    progress : bool, default=False
        Progress bars on stderr.
    backend : str or object, optional
        Assignment backend (see :mod:`coreselect.backends`); numpy by default.
    far_rows : bool, default=True
        Rows far from every center after the pass become centers of their own, within
        ``n_clusters`` (:func:`isolate_far_rows`).
    init : {"scalable", "greedy"}, default="scalable"
        How the centers are fitted (:func:`coreselect.seeding.fit_centers`). "scalable":
        k-means|| seeding and steps on ``max(10000, 10 k)`` of the fitting rows, then one
        step on all of them: a few passes over the fitting rows at any k. "greedy": the
        earlier fit, greedy D^z seeding (k sequential steps) and up to ``max_iter`` steps on
        all the fitting rows, whose cost grows as k^2 (kept for comparison).

    Returns
    -------
    Clustering

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 10.0]])
    >>> cl = kz_clustering(X, 2, seed=0)
    >>> sorted(cl.cluster_sizes.tolist()), cl.cost
    ([2, 2], 2.0)
    """
    pool = as_pool(X)
    k = check_n_clusters(n_clusters, pool.n)
    z = check_z(z)
    rng = check_random_state(seed)
    check_positive_int(max_iter, "max_iter")
    init = check_choice(init, "init", INITS)
    return fit_pool(pool, k, z=z, rng=rng, fit_sample_size=fit_sample_size, max_iter=max_iter,
                    tol=tol, chunk_size=chunk_size, backend=backend, progress=progress,
                    far_rows=bool(far_rows), init=init).clustering


def cluster_array(X: np.ndarray, n_clusters: int, *, z: float, rng: np.random.Generator,
                  fit_sample_size="auto", max_iter: int = 20, tol: float = 1e-4,
                  chunk_size: int | None = None, progress: bool = False,
                  backend=None, far_rows: bool = True, init: str = "scalable") -> Clustering:
    """:func:`kz_clustering` on an array its caller already validated (no second scan)."""
    return fit_pool(ArrayPool(X), n_clusters, z=z, rng=rng, fit_sample_size=fit_sample_size,
                    max_iter=max_iter, tol=tol, chunk_size=chunk_size, backend=backend,
                    progress=progress, far_rows=far_rows, init=init).clustering
