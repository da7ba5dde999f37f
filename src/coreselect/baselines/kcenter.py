"""k-center greedy (Sener & Savarese 2018; Gonzalez 1985), in O(n d) per step and O(n) memory.

The state is one vector ``mind`` of length n: each row's squared distance to the nearest
chosen center. A step adds the row farthest from the chosen set and lowers ``mind`` with the
distances to that one new center, so that no ``n x n`` or ``size x n`` matrix is ever held.

A step goes through the rows in chunks. A matrix-vector product in the array's own dtype
gives every row a lower bound on its distance to the new center (the expansion
``||x - mu||^2 - 2 (x - mu).(c - mu) + ||c - mu||^2`` about the mean ``mu`` minus a rounding
error bound); only the rows where that bound falls below ``mind`` (the new center's cell and
near ties) get their distance recomputed exactly in float64 from the difference vector.
``mind`` therefore always holds exact float64 distances, whatever the chunk size.
"""

from __future__ import annotations

import logging

import numpy as np

from .._progress import Progress
from .._validation import (
    check_embeddings,
    check_indices,
    check_positive_int,
    check_random_state,
    iter_chunks,
)
from ..selection import Selection
from .uniform import _nominal_selection

__all__ = ["k_center_greedy"]

logger = logging.getLogger(__name__)

# Labelled rows are folded in this many at a time (one GEMM per chunk of rows).
_INITIAL_BLOCK = 256
# Rows of larger norm would overflow the float64 squared distances.
_MAX_NORM = 1e150
# Exact distances of (row, center) pairs are computed this many pairs at a time.
_PAIR_BATCH = 16384
# Bytes of X per chunk of one step (small enough for the chunk's vectors to stay in cache).
_CHUNK_BYTES = 4 * 2**20


def _default_chunk(n_features: int, itemsize: int) -> int:
    return int(max(256, _CHUNK_BYTES // (n_features * itemsize)))


class _MinDistance:
    """Squared distance of every row to its nearest center, lowered one center at a time."""

    def __init__(self, X: np.ndarray, chunk: int):
        self.X = X
        n, d = X.shape
        self.chunk = chunk
        self.work = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        # a bound on the relative rounding error of a length-d dot product in the work dtype,
        # with room to spare (the rounding of the center and the float64 terms included)
        self.tol = 4.0 * (d + 4) * float(np.finfo(self.work).eps)
        mu = np.zeros(d)
        for a, b in iter_chunks(n, chunk):
            mu += np.asarray(X[a:b], dtype=np.float64).sum(axis=0)
        self.mu = mu / n
        self.xnorm = np.empty(n)  # ||x||
        self.base = np.empty(n)  # (1 - tol) ||x - mu||^2
        for a, b in iter_chunks(n, chunk):
            xb = np.asarray(X[a:b], dtype=np.float64)
            self.xnorm[a:b] = np.sqrt(np.einsum("ij,ij->i", xb, xb))
            xc = xb - self.mu  # a new array: X itself (maybe a view of xb) stays as it is
            self.base[a:b] = np.einsum("ij,ij->i", xc, xc)
        big = float(self.xnorm.max())
        if not big < _MAX_NORM:
            raise ValueError(
                f"X has a row of norm {big:.3g}; squared distances would overflow float64. "
                "Rescale X (e.g. divide it by its largest absolute value) first."
            )
        self.base *= 1.0 - self.tol
        self.mind = np.full(n, np.inf)
        m = min(chunk, n)
        self._t = np.empty(m)
        self._u = np.empty(m)

    @np.errstate(over="ignore", invalid="ignore")  # float32 overflow: the row is recomputed
    def add(self, j: int) -> None:
        """Lower ``mind`` with the distances to row ``j``."""
        X, mind, tol = self.X, self.mind, self.tol
        c64 = np.asarray(X[j], dtype=np.float64)
        cp = c64 - self.mu
        cpn2 = float(cp @ cp)
        s = float(self.mu @ cp)
        cw = cp.astype(self.work)
        slope = 2.0 * tol * np.sqrt(cpn2)  # error bound: slope ||x|| + tol ||x-mu||^2 + const
        const = 2.0 * s + cpn2 - tol * (2.0 * abs(s) + cpn2)
        for a, b in iter_chunks(X.shape[0], self.chunk):
            m = b - a
            t, u = self._t[:m], self._u[:m]
            # numpy's own dot loop: as fast as a BLAS GEMV here (memory bound), and free of
            # BLAS thread start-up and contention on a busy machine
            g = np.einsum("ij,j->i", X[a:b], cw)
            np.multiply(g, -2.0, out=t)
            t += self.base[a:b]
            np.multiply(self.xnorm[a:b], slope, out=u)
            t -= u
            t += const
            # t is a lower bound on ||x - c||^2: only rows where it beats mind can change
            rows = np.flatnonzero(~(t >= mind[a:b]))  # NaN (float32 overflow) counts too
            if rows.size:
                rows += a
                diff = np.asarray(X[rows], dtype=np.float64)
                diff -= c64
                np.minimum(mind[rows], np.einsum("ij,ij->i", diff, diff), out=t[: rows.size])
                mind[rows] = t[: rows.size]


    @np.errstate(over="ignore", invalid="ignore")  # float32 overflow: the row is recomputed
    def add_many(self, J: np.ndarray) -> None:
        """Lower ``mind`` with the distances to the rows ``J`` (a GEMM per chunk of rows)."""
        X, mind, tol = self.X, self.mind, self.tol
        J = np.asarray(J, dtype=np.int64)
        c64 = np.asarray(X[J], dtype=np.float64)
        cp = c64 - self.mu
        cpn2 = np.einsum("ij,ij->i", cp, cp)
        s = cp @ self.mu
        cw = np.ascontiguousarray(cp.astype(self.work).T)
        slope = 2.0 * tol * np.sqrt(cpn2)
        const = 2.0 * s + cpn2 - tol * (2.0 * np.abs(s) + cpn2)
        for a, b in iter_chunks(X.shape[0], max(1, self.chunk // max(1, J.size // 16))):
            lb = np.matmul(X[a:b], cw).astype(np.float64)  # lower bounds on ||x - c||^2
            lb *= -2.0
            lb += self.base[a:b, None]
            lb -= self.xnorm[a:b, None] * slope
            lb += const
            mb = mind[a:b]
            # first the most likely nearest center of every row, then every pair whose bound
            # still beats the row's (now lowered) distance: near ties only
            best = np.argmin(lb, axis=1)
            rows = np.flatnonzero(~(lb[np.arange(b - a), best] >= mb))
            self._exact_pairs(rows, best[rows], a, c64, mb)
            rows, cols = np.nonzero(~(lb >= mb[:, None]))
            self._exact_pairs(rows, cols, a, c64, mb)

    def _exact_pairs(self, rows, cols, a, c64, mb) -> None:
        for lo in range(0, rows.size, _PAIR_BATCH):
            r, c = rows[lo:lo + _PAIR_BATCH], cols[lo:lo + _PAIR_BATCH]
            diff = np.asarray(self.X[a + r], dtype=np.float64)
            diff -= c64[c]
            np.minimum.at(mb, r, np.einsum("ij,ij->i", diff, diff))


def _pick(mind: np.ndarray, outliers: int) -> int:
    """The row at rank ``outliers`` by decreasing ``mind`` (ties: smallest index first)."""
    if outliers == 0:
        return int(np.argmax(mind))
    n = mind.shape[0]
    v = np.partition(mind, n - 1 - outliers)[n - 1 - outliers]
    greater = int(np.count_nonzero(mind > v))
    return int(np.flatnonzero(mind == v)[outliers - greater])


def _radius(mind: np.ndarray, rank: int = 0) -> float:
    """sqrt of the (rank+1)-th largest squared distance of a row that is not a center."""
    free = mind[mind >= 0]
    if free.size <= rank:
        return 0.0
    if rank == 0:
        return float(np.sqrt(free.max()))
    return float(np.sqrt(np.partition(free, free.size - 1 - rank)[free.size - 1 - rank]))


def k_center_greedy(X, size: int, *, initial=None, seed=None, outliers: int = 0,
                    chunk_size: int | None = None, progress: bool = False) -> Selection:
    """Greedy k-center selection: repeatedly add the row farthest from the chosen set.

    The core-set strategy of Sener & Savarese (2018): starting from the labelled rows
    ``initial`` (or from one uniformly random row), each step selects the row whose Euclidean
    distance to its nearest chosen row is largest. The covering radius is at most twice the
    best possible one with ``size`` centers added to ``initial`` (Gonzalez 1985).

    Parameters
    ----------
    X : array-like of shape (n, d)
        Embeddings (a memory-mapped array is read chunk by chunk, once per step).
    size : int
        Rows to select, at most ``n - len(initial)``.
    initial : array-like of int, optional
        Rows already labelled. They count as centers from the start and are never selected.
        Without it the first selected row is drawn uniformly at random.
    seed : None, int or numpy.random.Generator
        Used only for the first row when ``initial`` is empty.
    outliers : int, default=0
        Robust variant: each step takes the row of rank ``outliers + 1`` by distance instead
        of the farthest, so that up to ``outliers`` isolated rows are never spent a center on.
    chunk_size : int, optional
        Rows per chunk (about 4 MiB of X by default). It does not change the result.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    Selection
        ``indices`` in the order they were selected; ``method="kcenter"``. The selection is
        deterministic given the first row (ties go to the smallest row index), so its
        ``weights`` (``N / size`` with ``N = n - len(initial)``) and ``probabilities``
        (``size / N``) are nominal, as for a uniform sample of the same size: they make no
        unbiasedness claim. ``diagnostics`` holds ``radius`` (the final covering radius over
        all rows), ``pick_distances`` (each selected row's distance to the centers chosen
        before it) and, with ``outliers``, ``radius_excluding_outliers``.

    Notes
    -----
    Each step costs O(n d) (one GEMV over X) plus exact float64 distances for the rows the
    new center may move; memory is O(n + chunk_size d). The labelled rows are folded in by
    blocks of 256 (one GEMM per chunk of rows, then the same exact recomputation).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    >>> sel = k_center_greedy(X, 2, initial=[0])
    >>> sel.indices.tolist(), sel.diagnostics["radius"]
    ([4, 2], 1.0)
    """
    X = check_embeddings(X)
    n, d = X.shape
    rng = check_random_state(seed)
    init = np.unique(check_indices([] if initial is None else initial, n, name="initial"))
    avail = n - init.size
    if avail == 0:
        raise ValueError(f"initial covers all n={n} rows of X; nothing is left to select.")
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > avail:
        raise ValueError(
            f"size must be at most n - len(initial) = {avail}; got {int(size)}."
        )
    size = check_positive_int(size, "size", minimum=1, maximum=avail,
                              maximum_name="n - len(initial)")
    outliers = check_positive_int(outliers, "outliers", minimum=0, maximum=avail - size,
                                  maximum_name="n - len(initial) - size")
    if chunk_size is None:
        chunk = _default_chunk(d, X.dtype.itemsize)
    else:
        chunk = check_positive_int(chunk_size, "chunk_size", minimum=1)
    state = _MinDistance(X, chunk)
    mind = state.mind
    if init.size == 1:
        state.add(int(init[0]))
    for lo in range(0, init.size if init.size > 1 else 0, _INITIAL_BLOCK):
        state.add_many(init[lo:lo + _INITIAL_BLOCK])
    mind[init] = -1.0
    initial_radius = _radius(mind) if init.size else None

    picks = np.empty(size, dtype=np.int64)
    pick_dist = np.empty(size)
    bar = Progress(size, "k-center", enabled=progress, unit="centers")
    for t in range(size):
        j = int(rng.integers(n)) if (t == 0 and init.size == 0) else _pick(mind, outliers)
        picks[t] = j
        pick_dist[t] = np.sqrt(mind[j]) if np.isfinite(mind[j]) else np.inf
        mind[j] = -1.0
        state.add(j)
        bar.update(1)
    bar.close()

    diagnostics = {
        "radius": _radius(mind),
        "pick_distances": [float(v) for v in pick_dist],
    }
    if initial_radius is not None:
        diagnostics["initial_radius"] = initial_radius
    if outliers:
        diagnostics["radius_excluding_outliers"] = _radius(mind, outliers)
    logger.debug("k-center greedy: %d centers, radius %.6g", size, diagnostics["radius"])
    return _nominal_selection(picks, avail, n, "kcenter",
                             {"size": size, "n_initial": int(init.size), "outliers": outliers},
                             diagnostics)
