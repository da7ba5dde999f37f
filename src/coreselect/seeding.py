"""(k, z)-clustering of an in-memory fitting sample: D^z seeding, power-mean steps, snapping.

z = 2 is k-means (Lloyd steps), z = 1 is k-median (Weiszfeld steps); any other z >= 1 uses
the same iteratively re-weighted step, ``c <- sum_i w_i x_i / sum_i w_i`` with
``w_i = ||x_i - c||^(z-2)``, which for z in [1, 2] never increases a cluster's cost. Each
center is then snapped to its nearest row of the sample (the oracle can only be asked about
real points, paper section 5.2). :func:`fit_centers` is that whole step; the pass over the
pool that follows is :func:`coreselect.clustering.fit_pool`'s.
"""

from __future__ import annotations

import numpy as np

from ._progress import Progress
from ._validation import check_random_state
from .kernels import maxabs, nearest_centers, pairwise_sq_dists, power_of_distance, scale_for

__all__ = ["dz_seeding", "fit_centers", "default_fit_size", "distinct_rows"]

# Relative rounding error of a float32 GEMM distance (||a||^2 + ||b||^2 units) below which a
# distance is recomputed exactly (64 float32 epsilons).
_GEMM_TOL = 64 * float(np.finfo(np.float32).eps)


def distinct_rows(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The sorted ``positions`` whose rows of ``x`` are distinct vectors (first of each)."""
    if positions.shape[0] < 2:
        return positions
    _, first = np.unique(x[positions], axis=0, return_index=True)
    return np.sort(positions[first])


def default_fit_size(n: int, k: int) -> int:
    """Rows the centers are fitted on by default: ``min(n, max(20000, 40 k))``."""
    return int(min(n, max(20_000, 40 * k)))


def _default_seed_size(m: int, k: int) -> int:
    return int(min(m, max(4_000, 8 * k)))


def dz_seeding(X: np.ndarray, n_clusters: int, *, z: float = 2.0, seed=None,
               n_candidates: int | None = None, progress: bool = False) -> np.ndarray:
    """Greedy D^z seeding (k-means++ generalised to any z): returns the chosen row numbers.

    Fewer than ``n_clusters`` rows are returned only when ``X`` has fewer distinct rows.

    The first row is uniform; each next one is the best (lowest resulting cost) of
    ``n_candidates`` rows drawn with probability proportional to their current distance^z
    to the chosen ones (``2 + log k`` candidates by default, as scikit-learn does).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> sorted(np.asarray(X[dz_seeding(X, 2, seed=0)]).ravel().round().tolist())
    [0.0, 10.0]
    """
    rng = check_random_state(seed)
    X = np.asarray(X)
    m = X.shape[0]
    k = int(n_clusters)
    L = int(n_candidates) if n_candidates else 2 + int(np.log(max(k, 2)))
    # rescale by a power of two (exact) when float32 squares would over- or underflow, judged
    # on the float64 values: the float32 copy of huge or tiny rows is already inf or 0
    scale = scale_for(maxabs(np.asarray(X, dtype=np.float64)))
    if scale == 1.0:
        x32 = np.ascontiguousarray(X, dtype=np.float32)
    else:
        x32 = np.ascontiguousarray(np.asarray(X, dtype=np.float64) * scale, dtype=np.float32)
    xnorm = np.einsum("ij,ij->i", x32, x32)
    chosen = np.empty(k, dtype=np.int64)
    first = int(rng.integers(m))
    chosen[0] = first

    def dz(rows: np.ndarray) -> np.ndarray:
        # (m, L) distances^z to the candidate rows, from one small GEMM and the known norms
        sq = pairwise_sq_dists(x32, x32[rows], anorm=xnorm, bnorm=xnorm[rows])
        # below the GEMM's rounding error the distance is recomputed from the difference, so
        # that a row equal to a chosen one has exactly 0 (and is never chosen again)
        tiny = sq <= _GEMM_TOL * (xnorm[:, None] + xnorm[rows][None, :])
        ii, jj = np.nonzero(tiny)
        if ii.size:
            diff = x32[ii] - x32[rows[jj]]
            sq[ii, jj] = np.einsum("ij,ij->i", diff, diff)
        return power_of_distance(sq, z)

    mind = dz(np.array([first]))[:, 0].copy()
    with _one_blas_thread():  # k small GEMMs: thread start-up costs more than it gains
        chosen = _seeding_loop(dz, mind, chosen, k, L, m, rng, progress)
    return chosen


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings threadpoolctl; without it, leave BLAS as it is
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _seeding_loop(dz, mind, chosen, k, L, m, rng, progress):
    bar = Progress(k, "seeding", enabled=progress, unit="centers")
    bar.update(1)
    for t in range(1, k):
        cdf = np.cumsum(mind, dtype=np.float64)
        if not cdf[-1] > 0:
            # every row coincides with a chosen one: fewer than k distinct rows
            chosen = chosen[:t]
            break
        cand = np.searchsorted(cdf, rng.random(L) * cdf[-1], side="right")
        cand = np.unique(np.minimum(cand, m - 1))
        dcand = dz(cand)
        np.minimum(dcand, mind[:, None], out=dcand)
        best = int(np.argmin(dcand.sum(axis=0, dtype=np.float64)))
        chosen[t] = cand[best]
        mind = dcand[:, best].copy()
        bar.update(1)
    bar.close()
    return chosen


def _update_centers(xs: np.ndarray, labels: np.ndarray, dist: np.ndarray, k: int, z: float,
                    centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One weighted power-mean step; returns the new centers and the empty-cluster mask.

    z = 2: the mean. Otherwise the re-weighted mean with weights ``r^(z-2)``, where rows that
    coincide with their center are left out (their weight is unbounded for z < 2); for z = 1
    the Vardi-Zhang correction then moves a center off a data row only when that lowers
    the cost, so that Weiszfeld's iteration cannot get stuck on a row.
    """
    from scipy import sparse

    m = xs.shape[0]
    rows = np.arange(m)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    empty = counts == 0
    if z == 2.0:
        agg = sparse.csr_matrix((np.ones(m), (labels, rows)), shape=(k, m))
        new = centers.copy()
        new[~empty] = np.asarray(agg @ xs)[~empty] / counts[~empty, None]
        return new, empty
    r = dist ** (1.0 / z)  # Euclidean distance
    scale = float(r.max()) if r.size else 0.0
    coincide = r <= 1e-12 * scale
    w = np.zeros(m)
    w[~coincide] = r[~coincide] ** (z - 2.0)
    agg = sparse.csr_matrix((w, (labels, rows)), shape=(k, m))
    wsum = np.bincount(labels, weights=w, minlength=k)
    has = wsum > 0
    new = centers.copy()
    t = np.asarray(agg @ xs)
    new[has] = t[has] / wsum[has, None]
    if z == 1.0:
        eta = np.bincount(labels, weights=coincide.astype(np.float64), minlength=k)
        stuck = has & (eta > 0)
        if stuck.any():
            # ||R|| = ||T - y|| * sum(1/r): the pull of the other rows on the center
            pull = np.linalg.norm(new[stuck] - centers[stuck], axis=1) * wsum[stuck]
            frac = np.minimum(1.0, eta[stuck] / np.maximum(pull, 1e-300))
            new[stuck] = (1.0 - frac)[:, None] * new[stuck] + frac[:, None] * centers[stuck]
    return new, empty


def _snap(centers: np.ndarray, xs: np.ndarray, labels: np.ndarray,
          dist: np.ndarray) -> np.ndarray:
    """For each center, its member row (under ``labels``) nearest to it: distinct rows.

    ``labels``/``dist`` are the assignment of ``xs`` to ``centers``, so this costs no extra
    distance computation. A center without members (rare) gets the nearest row not yet taken.
    Returns -1 for a center left without a row (fewer rows than centers).
    """
    k = centers.shape[0]
    out = np.full(k, -1, dtype=np.int64)
    order = np.lexsort((dist, labels))  # by cluster, then by distance
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = labels[order[1:]] != labels[order[:-1]]
    heads = order[first]
    out[labels[heads]] = heads
    lonely = np.flatnonzero(out < 0)
    if lonely.size:
        used = np.zeros(xs.shape[0], dtype=bool)
        used[heads] = True
        for j in lonely:
            if used.all():
                break
            diff = np.asarray(xs, dtype=np.float64) - centers[j]
            dd = np.einsum("ij,ij->i", diff, diff)
            dd[used] = np.inf
            p = int(np.argmin(dd))
            used[p] = True
            out[j] = p
    return out


def fit_centers(xs: np.ndarray, k: int, *, z: float, rng: np.random.Generator, backend,
                max_iter: int = 20, tol: float = 1e-4, chunk_size: int | None = None,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit k centers on the float64 sample ``xs`` and snap them to its rows.

    Returns the sorted positions in ``xs`` of the snapped centers, distinct vectors (fewer
    than k when ``xs`` has fewer distinct vectors, or when two centers snapped to copies of
    one vector), the centers before snapping, and the number of improvement steps run.
    """
    m = xs.shape[0]
    ms = _default_seed_size(m, k)
    seed_rows = np.arange(m) if ms >= m else np.sort(rng.choice(m, size=ms, replace=False))
    init = dz_seeding(xs[seed_rows], k, z=z, seed=rng, progress=progress)
    centers = xs[seed_rows[init]].copy()
    k_fit = centers.shape[0]

    best_cost, best_centers, best_fit, n_iter = np.inf, centers, None, 0
    prev = np.inf
    bar = Progress(max_iter, "fitting", enabled=progress, unit="steps")
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported after the loop)
        labels, dist = nearest_centers(xs, centers, backend=backend, z=z, chunk_size=chunk_size)
        with np.errstate(over="ignore"):
            cost = float(dist.sum())
        if not np.isfinite(cost):
            raise ValueError(
                f"X holds values so large (up to {maxabs(xs):.3g}) that their distances "
                f"raised to z={z:g} overflow float64; rescale X (e.g. divide it by its largest "
                "absolute value) first."
            )
        if cost < best_cost:
            best_cost, best_centers, best_fit = cost, centers, (labels, dist)
        bar.update(1)
        if cost == 0 or (prev - cost) <= tol * cost:
            break
        prev = cost
        centers, empty = _update_centers(xs, labels, dist, k_fit, z, centers)
        if empty.any():
            # re-seed empty clusters at the rows farthest from their centers
            far = np.argsort(dist)[::-1][: int(empty.sum())]
            centers[np.flatnonzero(empty)] = xs[far]
    bar.close()
    snapped = _snap(best_centers, xs, *best_fit)
    # distinct rows may hold equal vectors: never ask the oracle twice about one point
    return distinct_rows(xs, np.unique(snapped[snapped >= 0])), best_centers, int(n_iter)
