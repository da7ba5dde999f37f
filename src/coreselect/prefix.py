"""Prefix (k, z)-clustering orders: orderings of the points whose every prefix is a clustering.

An ordering ``c_1, c_2, ...`` of the rows is an alpha-approximate *prefix (k, z)-clustering*
when, for every j, the first j rows are an alpha-approximate (j, z)-clustering of all rows
(paper, appendix A.2). Algorithm 3 (the r-round algorithm, :func:`coreselect.adaptive_sample`)
queries the loss of the next k rows of such an order in every round.

Two orders are offered:

``"dz"`` (default): D^z sampling, i.e. k-means++ (z=2) or k-median++ (z=1) run to the end.
    The first row is uniform; each next row is drawn with probability proportional to its
    current distance^z to the rows already chosen. Every prefix is an O(log j)-approximation
    in expectation (Arthur & Vassilvitskii 2007 for z=2; the same proof for any z), and it
    performs very well in practice.
``"farthest"``: farthest-first traversal (Gonzalez 1985), deterministic: the first row is the
    one closest to the mean, each next row is the one farthest from the rows chosen. Every
    prefix is a 2-approximation for the k-*center* objective, not for (k, z)-clustering:
    it picks outliers first, so its prefixes are usually worse (k, z)-clusterings than D^z
    sampling's. It is offered for comparison.

Mettu & Plaxton (2003) give an O(1)-approximation to prefix (k, z)-clustering, but their
algorithm needs, for every row, the "value" of balls around it whose radii depend on its
distances to *all* other rows, i.e. Theta(n^2) distance evaluations (O(n^2 d) time), and
every step re-examines all rows against all candidate balls. That does not fit the O(n k d)
time and O(n) memory budget of this module (n = 10^6 rows would need 10^12 distances), so it
is not implemented; D^z sampling costs O(n d) per chosen row.

Both orders are computed with an incrementally updated nearest-distance vector: adding a row
costs one chunked pass over X (O(n d) flops, O(chunk d) extra memory), exact in float64.
"""

from __future__ import annotations

import logging

import numpy as np

from ._progress import Progress
from ._validation import (
    check_choice,
    check_positive_int,
    check_random_state,
    check_z,
)
from .backends import NumpyBackend
from .kernels import CenterSet, nearest_centers, power_of_distance
from .pools import as_pool

__all__ = ["prefix_order", "IncrementalAssignment", "PREFIX_METHODS"]

logger = logging.getLogger(__name__)

PREFIX_METHODS = ("dz", "farthest")

# Budget (bytes) for the float64 difference block of one chunk.
_DIFF_BYTES = 16 * 2**20


def _chunk_rows(d: int, chunk_size: int | None) -> int:
    if chunk_size:
        return int(chunk_size)
    return int(max(256, _DIFF_BYTES // (8 * max(1, d))))


def _dist_to_row(pool, c: np.ndarray, z: float, chunk: int, out: np.ndarray) -> None:
    """``out = min(out, ||X - c||^z)`` in place, block by block, exact in float64."""
    for start, xb in pool.blocks(chunk):
        stop = start + xb.shape[0]
        diff = np.asarray(xb, dtype=np.float64) - c
        sq = np.einsum("ij,ij->i", diff, diff)
        np.minimum(out[start:stop], power_of_distance(sq, z), out=out[start:stop])


def _nearest(pool, centers: np.ndarray, z: float, chunk_size: int | None):
    """Labels and ``v`` of every row of the pool against ``centers``, block by block."""
    labels = np.empty(pool.n, dtype=np.int64)
    dist = np.empty(pool.n, dtype=np.float64)
    cs = CenterSet(centers)
    for start, xb in pool.blocks(max(chunk_size or 0, 1 << 16)):
        stop = start + xb.shape[0]
        nearest_centers(xb, cs, backend=NumpyBackend, z=z, chunk_size=chunk_size,
                        labels=labels[start:stop], dist=dist[start:stop])
    return labels, dist


def prefix_order(X, length: int | None = None, *, z: float = 2.0, method: str = "dz",
                 seed=None, chunk_size: int | None = None, progress: bool = False) -> np.ndarray:
    """An ordering of the rows of ``X`` whose every prefix is a good (j, z)-clustering.

    Parameters
    ----------
    X : array-like of shape (n, d)
        The embeddings (a memory-mapped array is read chunk by chunk).
    length : int, optional
        How many rows of the order to compute (the first ``length``); all ``n`` by default.
        Each row costs one pass over ``X``, so ask only for what will be queried.
    z : float, default=2.0
        Power of the distance (2: k-means, 1: k-median).
    method : {"dz", "farthest"}, default="dz"
        D^z sampling (O(log j)-approximate prefixes in expectation) or the deterministic
        farthest-first traversal; see the module docs (and why Mettu-Plaxton is not offered).
    seed : None, int or numpy.random.Generator
        Randomness of the D^z draws (unused by "farthest").
    chunk_size : int, optional
        Rows per chunk of the distance pass; does not change the result.
    progress : bool, default=False
        A progress bar on stderr.

    Returns
    -------
    ndarray of int64, shape (length,)
        Distinct row numbers, in order. Once every remaining row coincides with a chosen
        one (distance 0), the rest follow in random order ("dz") or index order
        ("farthest").

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.2], [10.0], [10.1], [21.0]])
    >>> prefix_order(X, method="farthest").tolist()
    [2, 4, 0, 1, 3]
    >>> order = prefix_order(X, 3, seed=0)          # one row of each group, most likely
    >>> sorted(X[order].ravel().round().tolist())
    [0.0, 10.0, 21.0]
    """
    pool = as_pool(X)
    n = pool.n
    m = n if length is None else check_positive_int(length, "length", minimum=1, maximum=n,
                                                     maximum_name="n")
    z = check_z(z)
    method = check_choice(method, "method", PREFIX_METHODS)
    rng = check_random_state(seed)
    return _prefix_order(pool, m, z=z, method=method, rng=rng, chunk_size=chunk_size,
                         progress=progress)


def _prefix_order(pool, m: int, *, z: float, method: str, rng: np.random.Generator,
                  chunk_size: int | None, progress: bool) -> np.ndarray:
    """:func:`prefix_order` on a validated pool."""
    n, d = pool.n, pool.d
    chunk = _chunk_rows(d, chunk_size)

    order = np.empty(m, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    mind = np.full(n, np.inf)
    if method == "dz":
        first = int(rng.integers(n))
    else:
        mean = np.zeros(d)
        for _, xb in pool.blocks(chunk):
            mean += np.asarray(xb, dtype=np.float64).sum(axis=0)
        mean /= n
        _, dmean = _nearest(pool, mean[None, :], 2.0, chunk_size)
        first = int(np.argmin(dmean))
    order[0] = first
    taken[first] = True
    bar = Progress(m, f"prefix order ({method})", enabled=progress, unit="rows")
    bar.update(1)
    for t in range(1, m):
        last = np.asarray(pool.take(order[t - 1:t])[0], dtype=np.float64)
        _dist_to_row(pool, last, z, chunk, mind)
        mind[order[t - 1]] = 0.0
        total = float(mind.sum())
        if not total > 0:
            rest = np.flatnonzero(~taken)
            if method == "dz":
                rest = rng.permutation(rest)
            order[t:] = rest[: m - t]
            bar.update(m - t)
            logger.debug("prefix_order: all remaining rows coincide with chosen ones at t=%d", t)
            break
        if method == "dz":
            cdf = np.cumsum(mind)
            nxt = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            if nxt >= n or taken[nxt]:  # only possible through rounding at the very end
                nxt = int(np.argmax(mind))
        else:
            nxt = int(np.argmax(mind))
        order[t] = nxt
        taken[nxt] = True
        bar.update(1)
    bar.close()
    return order


class IncrementalAssignment:
    """Nearest chosen row of every row of ``X``, updated as centers are added in batches.

    Adding a batch of b centers costs one chunked assignment pass against those b only
    (O(n b d)), not a re-assignment against all centers so far; the result equals a full
    assignment against all centers (ties go to the earlier center).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The embeddings.
    z : float, default=2.0
        Power of the distance kept in ``distances``.
    chunk_size : int, optional
        Rows per chunk of the assignment pass.

    Attributes
    ----------
    centers : ndarray of int64
        The rows added so far, in order.
    labels : ndarray of int64, shape (n,)
        For each row, the position in ``centers`` of its nearest center (-1 before any).
    distances : ndarray of float64, shape (n,)
        ``||x - nearest center||^z`` (inf before any center); exactly 0 at the centers.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [5.0], [6.0]])
    >>> inc = IncrementalAssignment(X)
    >>> inc.add([0]).labels.tolist()
    [0, 0, 0, 0]
    >>> inc.add([3]).labels.tolist(), inc.distances.tolist()
    ([0, 0, 1, 1], [0.0, 1.0, 1.0, 0.0])
    """

    def __init__(self, X, *, z: float = 2.0, chunk_size: int | None = None):
        self.pool = as_pool(X)
        self.z = check_z(z)
        self.chunk_size = chunk_size
        n = self.pool.n
        self.labels = np.full(n, -1, dtype=np.int64)
        self.distances = np.full(n, np.inf)
        self.centers = np.empty(0, dtype=np.int64)

    @property
    def cost(self) -> float:
        """``Phi = sum(distances)``: the (k, z)-clustering cost of the centers so far."""
        return float(self.distances.sum())

    def cluster_sizes(self) -> np.ndarray:
        """Rows per center, in the order of ``centers``."""
        return np.bincount(self.labels, minlength=self.centers.shape[0]).astype(np.int64)

    def add(self, rows) -> IncrementalAssignment:
        """Add the rows ``rows`` as centers and update ``labels`` and ``distances``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return self
        start = self.centers.shape[0]
        coords = np.asarray(self.pool.take(rows), dtype=np.float64)
        lab, dist = _nearest(self.pool, coords, self.z, self.chunk_size)
        better = dist < self.distances
        self.labels[better] = start + lab[better]
        self.distances[better] = dist[better]
        # a center's own distance is exactly 0, and it is its own center (unless it
        # coincides with an earlier one, which keeps it: ties go to the earlier center)
        own = self.distances[rows] > 0
        own |= self.labels[rows] < 0
        self.distances[rows] = 0.0
        pos = start + np.arange(rows.shape[0])
        self.labels[rows[own]] = pos[own]
        self.centers = np.concatenate([self.centers, rows])
        return self
