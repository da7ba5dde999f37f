"""(k, z)-clustering of an in-memory fitting sample: seeding, power-mean steps, snapping.

z = 2 is k-means (Lloyd steps), z = 1 is k-median (Weiszfeld steps); any other z >= 1 uses
the same iteratively re-weighted step, ``c <- sum_i w_i x_i / sum_i w_i`` with
``w_i = ||x_i - c||^(z-2)``, which for z in [1, 2] never increases a cluster's cost. Each
center is then snapped to its nearest row of the sample (the oracle can only be asked about
real points, paper section 5.2). :func:`fit_centers` is that whole step; the pass over the
pool that follows is :func:`coreselect.clustering.fit_pool`'s.

Two fits (``init``):

- ``"scalable"`` (the default): k-means|| seeding (:func:`parallel_seeding`: a few
  oversampling rounds, each one GEMM pass over the seed rows, then a weighted greedy
  reclustering of the ~2k candidates on their nearest-neighbour graph) on
  ``max(10000, 10 k)`` rows, improvement steps there worth about half a pass over the
  fitting rows, then one step on all the fitting rows and the snap to each cluster's member
  nearest to its new center. Its cost is a few passes over the fitting rows at any k.
- ``"greedy"``: greedy D^z seeding (:func:`dz_seeding`, k sequential steps over
  ``max(4000, 8 k)`` rows) and up to ``max_iter`` steps on all the fitting rows: the fit of
  the earlier releases, whose cost grows as k^2.
"""

from __future__ import annotations

import math

import numpy as np

from ._progress import Progress
from ._validation import check_random_state
from .kernels import (
    BLOCK_BYTES,
    maxabs,
    nearest_centers,
    pairwise_sq_dists,
    power_of_distance,
    scale_for,
)

__all__ = ["dz_seeding", "parallel_seeding", "fit_centers", "default_fit_size", "distinct_rows",
           "INITS"]

# The fits ``init`` chooses between (see the module docs); the first is the default.
INITS = ("scalable", "greedy")
# init="scalable": improvement steps on the seed rows worth about this many passes over the
# fitting rows, at least 2 (then one assignment of all the fitting rows, a step, and the snap).
_SEED_PASSES = 0.5

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


def _scalable_seed_size(m: int, k: int) -> int:
    """Rows the scalable fit seeds and first improves on: ``min(m, max(10000, 10 k))``."""
    return int(min(m, max(10_000, 10 * k)))


def _float32_rows(X: np.ndarray, *, center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A float32 copy of ``X`` (rescaled by a power of two when float32 squares would over- or
    underflow, judged on the float64 values) and its squared norms. ``center``: minus the
    mean first (distances do not change; the GEMM's rounding error shrinks)."""
    x64 = np.asarray(X, dtype=np.float64)
    if center and x64.shape[0]:
        x64 = x64 - x64.mean(axis=0)
    scale = scale_for(maxabs(x64))
    if scale == 1.0:
        x32 = np.ascontiguousarray(x64, dtype=np.float32)
    else:
        x32 = np.ascontiguousarray(x64 * scale, dtype=np.float32)
    return x32, np.einsum("ij,ij->i", x32, x32)


def dz_seeding(X: np.ndarray, n_clusters: int, *, z: float = 2.0, seed=None,
               n_candidates: int | None = None, progress: bool = False) -> np.ndarray:
    """Greedy D^z seeding (k-means++ generalised to any z): returns the chosen row numbers.

    Fewer than ``n_clusters`` rows are returned only when ``X`` has fewer distinct rows.

    The first row is uniform; each next one is the best (lowest resulting cost) of
    ``n_candidates`` rows drawn with probability proportional to their current distance^z
    to the chosen ones (``2 + log k`` candidates by default, as scikit-learn does). This is
    ``init="greedy"``'s seeding: k sequential steps, each over every row.

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
    x32, xnorm = _float32_rows(X)
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


def parallel_seeding(X: np.ndarray, n_clusters: int, *, z: float = 2.0, seed=None,
                     backend=None, rounds: int = 5, oversampling: float = 2.0,
                     n_candidates: int | None = None, n_neighbors: int = 32,
                     chunk_size: int | None = None, progress: bool = False) -> np.ndarray:
    """k-means|| seeding (Bahmani et al., "Scalable k-means++"), for any z: the chosen rows.

    Fewer than ``n_clusters`` rows are returned only when ``X`` has fewer distinct rows.

    The first row is uniform. Each of ``rounds`` rounds draws every row independently with
    probability ``min(1, l v(x) / Phi)``, ``l = oversampling * k / rounds``, where ``v(x)`` is
    its distance^z to the candidates so far (exact, from one assignment pass of all rows
    against the new candidates with ``backend``). The ~``oversampling * k`` candidates, each
    weighted by the rows nearest to it, are then reclustered to k by greedy weighted D^z
    seeding (``n_candidates`` trials a step, ``2 + log k`` by default) on their
    ``n_neighbors``-nearest-neighbour graph: a chosen center lowers the distance of its
    neighbours only, so a step costs no pass over the candidates. Copies of one vector are one
    candidate. When the rounds find fewer than k distinct candidates (few distinct rows),
    :func:`dz_seeding` on all rows is used instead.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [10.0], [10.1], [20.0], [20.1]])
    >>> sorted(np.asarray(X[parallel_seeding(X, 3, seed=0)]).ravel().round().tolist())
    [0.0, 10.0, 20.0]
    """
    from .backends import get_backend

    rng = check_random_state(seed)
    be = get_backend(backend) if backend is None or isinstance(backend, str) else backend
    X = np.asarray(X, dtype=np.float64)
    top = maxabs(X)
    if top > 0:  # by a power of two (exact): the same draws for X and X * 2**e
        X = X * math.ldexp(1.0, -math.frexp(top)[1])
    m = X.shape[0]
    k = int(n_clusters)
    first = int(rng.integers(m))
    _, mind = nearest_centers(X, X[[first]], backend=be, z=z, chunk_size=chunk_size)
    mind[first] = 0.0
    near = np.zeros(m, dtype=np.int64)
    found = [np.array([first], dtype=np.int64)]
    count = 1
    ell = float(oversampling) * k / max(1, int(rounds))
    for _ in range(int(rounds)):
        with np.errstate(over="ignore"):
            phi = float(mind.sum())
        if not (phi > 0 and np.isfinite(phi)):
            break
        # draw x with probability min(1, l v(x) / Phi): u < l v / Phi
        new = np.flatnonzero(rng.random(m) * phi < ell * mind)
        if new.size == 0:
            continue
        lab, dist = nearest_centers(X, X[new], backend=be, z=z, chunk_size=chunk_size)
        better = dist < mind
        mind[better] = dist[better]
        near[better] = count + lab[better]
        mind[new] = 0.0
        near[new] = count + np.arange(new.size)
        found.append(new)
        count += new.size
    cand = np.concatenate(found)
    weights = np.bincount(near, minlength=count).astype(np.float64)
    # copies of one vector drawn in one round: one candidate, with their weights summed
    _, keep, inverse = np.unique(X[cand], axis=0, return_index=True, return_inverse=True)
    if keep.shape[0] < cand.shape[0]:
        order = np.argsort(keep)  # the groups in the order of their first candidate
        group = np.empty_like(order)
        group[order] = np.arange(order.shape[0])
        weights = np.bincount(group[inverse.ravel()], weights=weights, minlength=order.shape[0])
        cand = cand[keep[order]]
    if cand.shape[0] < k or not np.isfinite(mind).all():
        return dz_seeding(X, k, z=z, seed=rng, n_candidates=n_candidates, progress=progress)
    L = int(n_candidates) if n_candidates else 2 + int(np.log(max(k, 2)))
    bar = Progress(k, "seeding", enabled=progress, unit="centers")
    picked = _graph_greedy(X[cand], weights, k, z=z, rng=rng, n_trials=L,
                           n_neighbors=int(n_neighbors), bar=bar)
    bar.close()
    return cand[picked]


def _knn_graph(xc: np.ndarray, n_neighbors: int, z: float):
    """The symmetrised ``n_neighbors``-nearest-neighbour graph of the rows of ``xc`` in CSR
    form ``(ptr, cols, dz)``, self-edges left out; ``dz`` are distances^z (float64).

    Neighbours and their distances come from float32 GEMM blocks of the centered rows, of a
    size fixed by the shape (so the graph depends only on ``xc``); distances below the GEMM's
    rounding error are recomputed from the differences (equal rows: exactly 0).
    """
    c = xc.shape[0]
    t = min(c, n_neighbors + 1)  # + 1: a row's own entry
    x32, xn = _float32_rows(xc, center=True)
    step = max(1, min(c, BLOCK_BYTES // (4 * c)))
    nbr = np.empty((c, t), dtype=np.int64)
    sqs = np.empty((c, t), dtype=np.float64)
    for a in range(0, c, step):
        b = min(c, a + step)
        sq = pairwise_sq_dists(x32[a:b], x32, anorm=xn[a:b], bnorm=xn)
        if t < c:
            idx = np.argpartition(sq, t - 1, axis=1)[:, :t]
        else:
            idx = np.broadcast_to(np.arange(c), (b - a, c))
        nbr[a:b] = idx
        sqs[a:b] = np.take_along_axis(sq, idx, axis=1)
    tiny = sqs <= _GEMM_TOL * (xn[:, None] + xn[nbr])
    ii, jj = np.nonzero(tiny)
    if ii.size:
        diff = xc[ii] - xc[nbr[ii, jj]]
        sqs[ii, jj] = np.einsum("ij,ij->i", diff, diff)
    src = np.repeat(np.arange(c, dtype=np.int64), t)
    dst = nbr.ravel()
    keep = src != dst
    src, dst, dd = src[keep], dst[keep], power_of_distance(sqs.ravel()[keep], z)
    keys, first = np.unique(np.concatenate([src * c + dst, dst * c + src]), return_index=True)
    dd = np.concatenate([dd, dd])[first]
    rows = keys // c
    return np.searchsorted(rows, np.arange(c + 1)), keys % c, dd


def _graph_greedy(xc: np.ndarray, weights: np.ndarray, k: int, *, z: float,
                  rng: np.random.Generator, n_trials: int, n_neighbors: int,
                  bar: Progress) -> np.ndarray:
    """Greedy weighted D^z seeding of the rows ``xc`` (weights ``weights``) on their
    nearest-neighbour graph: k positions (fewer only when the weighted cost reaches 0)."""
    c = xc.shape[0]
    ptr, cols, dd = _knn_graph(xc, n_neighbors, z)
    w = weights
    first = int(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"))
    first = min(first, c - 1)
    diff = xc - xc[first]
    mind = power_of_distance(np.einsum("ij,ij->i", diff, diff), z)
    mind[first] = 0.0
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = first
    bar.update(1)
    for t in range(1, k):
        cdf = np.cumsum(w * mind)
        if not cdf[-1] > 0:
            return chosen[:t]
        trial = np.unique(np.minimum(
            np.searchsorted(cdf, rng.random(n_trials) * cdf[-1], side="right"), c - 1))
        lo, hi = ptr[trial], ptr[trial + 1]
        lens = hi - lo
        idx = np.repeat(hi - lens.cumsum(), lens) + np.arange(lens.sum())
        nb = cols[idx]
        gain = np.bincount(np.repeat(np.arange(trial.shape[0]), lens),
                           weights=w[nb] * np.maximum(mind[nb] - dd[idx], 0.0),
                           minlength=trial.shape[0]) + w[trial] * mind[trial]
        j = int(np.argmax(gain))
        best = int(trial[j])
        chosen[t] = best
        s, e = ptr[best], ptr[best + 1]
        mind[cols[s:e]] = np.minimum(mind[cols[s:e]], dd[s:e])
        mind[best] = 0.0
        bar.update(1)
    return chosen


def _improve(xs: np.ndarray, centers: np.ndarray, steps: int, *, z: float, backend, tol: float,
             chunk_size: int | None, bar: Progress):
    """At most ``steps`` assignments of ``xs`` with a power-mean step between two; stops when
    the cost improves by less than ``tol`` of itself. Returns the best centers, their
    assignment ``(labels, dist)`` and the steps run."""
    k = centers.shape[0]
    best_cost, best_centers, best_fit, n_iter = np.inf, centers, None, 0
    prev = np.inf
    for n_iter in range(1, steps + 1):  # noqa: B007 (n_iter is reported after the loop)
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
        if cost == 0 or (prev - cost) <= tol * cost or n_iter == steps:
            break
        prev = cost
        centers, empty = _update_centers(xs, labels, dist, k, z, centers)
        if empty.any():
            # re-seed empty clusters at the rows farthest from their centers
            far = np.argsort(dist)[::-1][: int(empty.sum())]
            centers[np.flatnonzero(empty)] = xs[far]
    return best_centers, best_fit, int(n_iter)


def fit_centers(xs: np.ndarray, k: int, *, z: float, rng: np.random.Generator, backend,
                max_iter: int = 20, tol: float = 1e-4, chunk_size: int | None = None,
                progress: bool = False, init: str = "scalable"
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit k centers on the float64 sample ``xs`` and snap them to its rows.

    ``init="greedy"``: :func:`dz_seeding` on ``max(4000, 8 k)`` rows, then up to
    ``max_iter`` steps on all of ``xs``. ``init="scalable"``: :func:`parallel_seeding` on
    ``m1 = max(10000, 10 k)`` rows, up to ``max(2, m / (2 m1))`` steps on them (at most
    ``max_iter``; about half a pass over ``xs``), then one assignment of
    all of ``xs``, one step on them and the snap to each cluster's member nearest to its new
    center (when ``m1 < m``; otherwise up to ``max_iter`` steps on ``xs``): about 2 passes
    over ``xs`` and the seeding's at large k.

    Returns the sorted positions in ``xs`` of the snapped centers, distinct vectors (fewer
    than k when ``xs`` has fewer distinct vectors, or when two centers snapped to copies of
    one vector), the centers before snapping, and the number of improvement steps run.
    """
    m = xs.shape[0]
    if init == "greedy":
        ms = _default_seed_size(m, k)
        seed_rows = np.arange(m) if ms >= m else np.sort(rng.choice(m, size=ms, replace=False))
        first = dz_seeding(xs[seed_rows], k, z=z, seed=rng, progress=progress)
        centers = xs[seed_rows[first]].copy()
        bar = Progress(max_iter, "fitting", enabled=progress, unit="steps")
        best, fit, n_iter = _improve(xs, centers, max_iter, z=z, backend=backend, tol=tol,
                                     chunk_size=chunk_size, bar=bar)
    else:
        m1 = _scalable_seed_size(m, k)
        sub = np.arange(m) if m1 >= m else np.sort(rng.choice(m, size=m1, replace=False))
        x1 = xs if m1 >= m else xs[sub]
        first = parallel_seeding(x1, k, z=z, seed=rng, backend=backend, chunk_size=chunk_size,
                                 progress=progress)
        centers = x1[first].copy()
        steps1 = max_iter if m1 >= m else min(max_iter, max(2, int(_SEED_PASSES * m // m1)))
        bar = Progress(steps1 + (0 if m1 >= m else 1), "fitting", enabled=progress,
                       unit="steps")
        best, fit, n_iter = _improve(x1, centers, steps1, z=z, backend=backend, tol=tol,
                                     chunk_size=chunk_size, bar=bar)
        if m1 < m:
            # one assignment of all the fitting rows, one step on them, and the snap to the
            # member of each cluster nearest to its new center (no second assignment)
            labels, dist = nearest_centers(xs, best, backend=backend, z=z,
                                           chunk_size=chunk_size)
            bar.update(1)
            best, _ = _update_centers(xs, labels, dist, best.shape[0], z, best)
            near = np.empty(m, dtype=np.float64)
            for a in range(0, m, 65_536):  # by blocks: no second copy of xs
                diff = xs[a:a + 65_536] - best[labels[a:a + 65_536]]
                near[a:a + 65_536] = np.einsum("ij,ij->i", diff, diff)
            fit = (labels, near)
            n_iter += 1
    bar.close()
    snapped = _snap(best, xs, *fit)
    # distinct rows may hold equal vectors: never ask the oracle twice about one point
    return distinct_rows(xs, np.unique(snapped[snapped >= 0])), best, int(n_iter)
