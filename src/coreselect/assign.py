"""Chunked nearest-center assignment: the hot loop of coreselect (numpy reference).

For each row ``x`` of ``X`` find ``argmin_c ||x - c||`` and ``v = ||x - A(x)||^z`` without
ever holding an ``n x k`` matrix: rows are taken in chunks, the argmin comes from a float32
GEMM (``-2 x.c + ||c||^2``; ``||x||^2`` does not change the argmin), and the distance to the
chosen center is then recomputed exactly in float64 from the difference vector, so that v is
not spoiled by cancellation and is never negative. Rows and centers whose magnitude would
overflow float32 squares are rescaled by a power of two first (exact, so the argmin does not
move).

Other backends (faiss, torch, dask) implement the same function and are tested against this.
"""

from __future__ import annotations

import math

import numpy as np

from ._progress import Progress
from ._validation import iter_chunks

__all__ = ["assign", "default_chunk_size", "pairwise_sq_dists", "power_of_distance"]

# Budget for the (chunk x k) float32 distance block of one chunk.
_BLOCK_BYTES = 32 * 2**20
# Beyond these magnitudes float32 squares over/underflow: rescale by a power of two.
_BIG = 2.0**40
_SMALL = 2.0**-40


def default_chunk_size(n_centers: int, n_features: int) -> int:
    """Rows per chunk so that one chunk's distance block and float32 copy stay near 32 MiB."""
    per_row = 4 * max(1, n_centers) + 12 * max(1, n_features)
    return int(max(64, min(65536, _BLOCK_BYTES // per_row)))


def power_of_distance(sq: np.ndarray, z: float) -> np.ndarray:
    """``||.||^z`` from squared distances ``sq`` (in place when possible)."""
    if z == 2.0:
        return sq
    if z == 1.0:
        return np.sqrt(sq, out=sq)
    return np.power(sq, z / 2.0, out=sq)


def _scale_for(maxabs: float) -> float:
    if maxabs > _BIG or (0.0 < maxabs < _SMALL):
        return math.ldexp(1.0, -math.frexp(maxabs)[1])  # 2**-e with maxabs = m * 2**e
    return 1.0


class _Centers:
    """Copies of the centers per dtype and scale factor, with float32 squared norms."""

    def __init__(self, centers: np.ndarray):
        self.c64 = np.ascontiguousarray(centers, dtype=np.float64)
        self.maxabs = _maxabs(self.c64)
        self.c32 = self.c64.astype(np.float32) if self.maxabs < _BIG else None
        self._cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def scaled(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        got = self._cache.get(scale)
        if got is None:
            c32 = (self.c64 * scale).astype(np.float32)
            cnorm = np.einsum("ij,ij->i", c32, c32, dtype=np.float32)
            got = (np.ascontiguousarray(c32.T), cnorm)
            self._cache[scale] = got
        return got


def _maxabs(a: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(max(a.max(), -a.min()))


def assign(X: np.ndarray, centers: np.ndarray, *, z: float = 2.0, chunk_size: int | None = None,
           progress: bool | Progress = False) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of every row of ``X`` and the distance to it raised to ``z``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Float rows (a memory-mapped array is read chunk by chunk).
    centers : ndarray of shape (k, d)
        The centers.
    z : float, default=2.0
        Power of the distance returned (2: squared Euclidean, 1: Euclidean).
    chunk_size : int, optional
        Rows per chunk; by default about 32 MiB of distances per chunk. It does not change
        the result.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        Index of the nearest center (the first one on ties).
    dist : ndarray of float64, shape (n,)
        ``||x - centers[label]||^z``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    >>> labels, dist = assign(X, np.array([[0.0, 0.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 0, 1], [0.0, 1.0, 0.0])
    """
    n, d = X.shape
    k = centers.shape[0]
    if centers.ndim != 2 or centers.shape[1] != d:
        raise ValueError(f"centers must have shape (k, {d}); got {centers.shape}.")
    if k == 0:
        raise ValueError("centers is empty; at least one center is required.")
    chunk = int(chunk_size) if chunk_size else default_chunk_size(k, d)
    cs = _Centers(centers)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    bar = progress if isinstance(progress, Progress) else Progress(n, "assign", enabled=bool(progress))
    buf = np.empty((min(chunk, n), k), dtype=np.float32)
    for start, stop in iter_chunks(n, chunk):
        xb = X[start:stop]
        m = stop - start
        scale = _scale_for(max(_maxabs(xb), cs.maxabs))
        ct, cnorm = cs.scaled(scale)
        if scale == 1.0:
            x32 = np.asarray(xb, dtype=np.float32)  # no copy for float32 input
        else:
            x32 = (np.asarray(xb, dtype=np.float64) * scale).astype(np.float32)
        block = np.matmul(x32, ct, out=buf[:m])
        block *= -2.0
        block += cnorm
        lab = np.argmin(block, axis=1)
        labels[start:stop] = lab
        # exact distance to the chosen center from the difference vector: float32 rows give a
        # float32 difference (exact for nearby values), float64 rows and rescaled ones float64
        if scale == 1.0 and xb.dtype == np.float32 and cs.c32 is not None:
            diff = xb - cs.c32[lab]
        else:
            diff = np.asarray(xb, dtype=np.float64) - cs.c64[lab]
        dist[start:stop] = np.einsum("ij,ij->i", diff, diff)
        bar.update(m)
    bar.close()
    return labels, power_of_distance(dist, z)


def pairwise_sq_dists(A: np.ndarray, B32T: np.ndarray, bnorm: np.ndarray,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Squared distances between rows of ``A`` and columns of ``B32T`` (float32, clamped >= 0).

    ``B32T`` is ``B.T`` as float32 and ``bnorm`` the squared norms of B's rows. Used where a
    small block of distances is needed (seeding); exactness is not required there.
    """
    a32 = np.asarray(A, dtype=np.float32)
    res = np.matmul(a32, B32T, out=out)
    res *= -2.0
    res += bnorm
    res += np.einsum("ij,ij->i", a32, a32)[:, None]
    np.maximum(res, 0.0, out=res)
    return res
