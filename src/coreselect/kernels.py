"""The nearest-center kernel around any backend, written once: chunks, rescaling, exact v(e).

For each row ``x`` of a block find ``argmin_c ||x - c||`` and ``v = ||x - A(x)||^z`` without
ever holding an ``n x k`` matrix. The loop here cuts the block into chunks, rescales rows and
centers whose magnitude would overflow float32 squares by a power of two (exact, so the argmin
does not move), asks the backend for the nearest center of each chunk (a float32 GEMM
``-2 x.c + ||c||^2`` in the numpy reference), recomputes the distance to the chosen center
exactly from the difference vector (so that v is not spoiled by cancellation and is never
negative) unless the backend did that itself, and draws the progress bar.

A backend (:mod:`coreselect.backends`) implements one method, ``nearest(x, centers, scale)``;
it imports nothing of the pipeline. :func:`pairwise_sq_dists` is the small distance block used
where exactness is not needed (seeding, diagnostics, regression). The memory model of one
chunk (:func:`default_chunk_size`) lives here too.
"""

from __future__ import annotations

import math

import numpy as np

from ._progress import Progress

__all__ = [
    "CenterSet",
    "nearest_centers",
    "default_chunk_size",
    "pairwise_sq_dists",
    "power_of_distance",
    "exact_sq_dists",
    "BLOCK_BYTES",
]

# Budget for the (chunk x k) float32 distance block of one chunk.
BLOCK_BYTES = 32 * 2**20
# Beyond these magnitudes float32 squares over/underflow: rescale by a power of two.
_BIG = 2.0**40
_SMALL = 2.0**-40


def default_chunk_size(n_centers: int, n_features: int) -> int:
    """Rows per chunk so that one chunk's distance block and float32 copy stay near 32 MiB."""
    per_row = 4 * max(1, n_centers) + 12 * max(1, n_features)
    return int(max(64, min(65536, BLOCK_BYTES // per_row)))


def power_of_distance(sq: np.ndarray, z: float) -> np.ndarray:
    """``||.||^z`` from squared distances ``sq`` (in place when possible)."""
    if z == 2.0:
        return sq
    if z == 1.0:
        return np.sqrt(sq, out=sq)
    return np.power(sq, z / 2.0, out=sq)


def scale_for(maxabs: float) -> float:
    """The power of two that brings ``maxabs`` into float32's comfortable range (1.0 if it is)."""
    if maxabs > _BIG or (0.0 < maxabs < _SMALL):
        return math.ldexp(1.0, -math.frexp(maxabs)[1])  # 2**-e with maxabs = m * 2**e
    return 1.0


def maxabs(a: np.ndarray) -> float:
    """``max |a|`` (0 for an empty array)."""
    if a.size == 0:
        return 0.0
    return float(max(a.max(), -a.min()))


class CenterSet:
    """The centers of one pass: float64 copy, float32 copies per scale factor, and a place
    where a backend keeps what it builds from them (a faiss index, device tensors).

    One CenterSet serves one thread: the distance buffer it lends is reused chunk after chunk.
    """

    def __init__(self, centers: np.ndarray):
        c64 = np.ascontiguousarray(centers, dtype=np.float64)
        if c64.ndim != 2:
            raise ValueError(f"centers must be a 2-D array (k, d); got shape {c64.shape}.")
        if c64.shape[0] == 0:
            raise ValueError("centers is empty; at least one center is required.")
        self.c64 = c64
        self.k, self.d = c64.shape
        self.maxabs = maxabs(c64)
        self.c32 = c64.astype(np.float32) if self.maxabs < _BIG else None
        self._scaled: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._buffer: np.ndarray | None = None
        self.extra: dict = {}  # backend-specific objects, keyed by the backend

    def scaled(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """``(-2 c32.T, ||c32||^2)`` of the centers times ``scale``, as float32.

        The factor -2 is exact in floating point, so ``x @ (-2 c32.T)`` is bit for bit
        ``-2 (x @ c32.T)``: folding it into the centers saves a pass over the distance
        block (about 15% of an assignment pass at k = 10,000)."""
        got = self._scaled.get(scale)
        if got is None:
            c32 = (self.c64 * scale).astype(np.float32)
            cnorm = np.einsum("ij,ij->i", c32, c32, dtype=np.float32)
            ct2 = np.ascontiguousarray(c32.T)  # a copy: scaled in place
            ct2 *= np.float32(-2.0)
            got = (ct2, cnorm)
            self._scaled[scale] = got
        return got

    def block_buffer(self, rows: int) -> np.ndarray:
        """A reusable float32 (rows, k) buffer for a distance block."""
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = np.empty((rows, self.k), dtype=np.float32)
        return self._buffer[:rows]


# rows per block of exact_sq_dists (a 512 x 128 float32 block is 256 KiB)
_EXACT_BLOCK = 512


def exact_sq_dists(xb: np.ndarray, centers: CenterSet, labels: np.ndarray, *,
                   allow_float32: bool = True) -> np.ndarray:
    """``||x - c_label||^2`` from the difference vector (float64 result).

    float32 rows give a float32 difference (exact for nearby values) unless
    ``allow_float32`` is False (rows that needed rescaling); other rows float64.
    """
    if allow_float32 and xb.dtype == np.float32 and centers.c32 is not None:
        c = centers.c32
    else:
        c = centers.c64
        xb = np.asarray(xb, dtype=np.float64)
    m = xb.shape[0]
    out = np.empty(m, dtype=np.float64)
    # by blocks that stay in cache: the gathered centers and the difference are written and
    # read once there (about 3x faster than whole-chunk temporaries); the same values
    buf = np.empty((min(m, _EXACT_BLOCK), xb.shape[1]), dtype=c.dtype)
    for a in range(0, m, _EXACT_BLOCK):
        b = min(m, a + _EXACT_BLOCK)
        diff = buf[:b - a]
        np.take(c, labels[a:b], axis=0, out=diff)
        np.subtract(xb[a:b], diff, out=diff)
        out[a:b] = np.einsum("ij,ij->i", diff, diff)
    return out


def _backend_chunk(backend, k: int, d: int) -> int:
    hint = getattr(backend, "chunk_rows", None)
    if callable(hint):
        return int(hint(k, d))
    return default_chunk_size(k, d)


def nearest_centers(X, centers, *, backend, z: float = 2.0, chunk_size: int | None = None,
                    progress: bool | Progress = False, labels: np.ndarray | None = None,
                    dist: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of every row of ``X`` and the distance to it raised to ``z``.

    Parameters
    ----------
    X : array of shape (m, d)
        Float rows (anything that slices into arrays: a memory-mapped array is read chunk by
        chunk).
    centers : CenterSet or ndarray of shape (k, d)
        The centers.
    backend : object with ``nearest(x, centers, scale) -> (labels, sq or None)``
        Computes the nearest center of a chunk of (rescaled) rows.
    z : float, default=2.0
        Power of the distance returned.
    chunk_size : int, optional
        Rows per chunk (default: the backend's ``chunk_rows(k, d)``, else about 32 MiB of
        distances); does not change the result.
    progress : bool or Progress, default=False
        A progress bar on stderr (or one to advance).
    labels, dist : ndarray, optional
        Where to write the result.

    Returns
    -------
    labels : ndarray of int64, shape (m,)
        Index of the nearest center (the first one on ties).
    dist : ndarray of float64, shape (m,)
        ``||x - centers[label]||^z``.
    """
    cs = centers if isinstance(centers, CenterSet) else CenterSet(centers)
    n, d = X.shape
    if cs.d != d:
        raise ValueError(f"centers must have shape (k, {d}); got {cs.c64.shape}.")
    chunk = int(chunk_size) if chunk_size else _backend_chunk(backend, cs.k, d)
    chunk = max(1, chunk)
    if labels is None:
        labels = np.empty(n, dtype=np.int64)
    if dist is None:
        dist = np.empty(n, dtype=np.float64)
    bar = progress if isinstance(progress, Progress) else Progress(
        n, "assign", enabled=bool(progress))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        xb = X[start:stop]
        if not isinstance(xb, np.ndarray):
            xb = np.asarray(xb)
        scale = scale_for(max(maxabs(xb), cs.maxabs))
        if scale == 1.0:
            xs = xb if xb.dtype in (np.float32, np.float64) else xb.astype(np.float64)
        else:
            xs = np.asarray(xb, dtype=np.float64) * scale
        lab, sq = backend.nearest(xs, cs, scale)
        labels[start:stop] = lab
        if sq is None or scale != 1.0:  # exact distance from the unscaled rows
            sq = exact_sq_dists(xb, cs, labels[start:stop], allow_float32=scale == 1.0)
        dist[start:stop] = sq
        bar.update(stop - start)
    if not isinstance(progress, Progress):
        bar.close()
    return labels, power_of_distance(dist, z)


def pairwise_sq_dists(A: np.ndarray, B: np.ndarray, *, anorm: np.ndarray | None = None,
                      bnorm: np.ndarray | None = None, dtype=np.float32,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Squared distances between the rows of ``A`` and of ``B`` from one GEMM, clamped >= 0.

    ``||a||^2 - 2 a.b + ||b||^2`` in ``dtype`` (float32 by default; pass the squared norms
    when they are known). Used where a block of distances between few rows is needed
    (seeding, diagnostics, k-medoids); exactness is not required there: callers that need
    exact distances recompute them from the differences.

    Examples
    --------
    >>> import numpy as np
    >>> pairwise_sq_dists(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])).tolist()
    [[0.0], [25.0]]
    """
    a = np.asarray(A, dtype=dtype)
    b = np.asarray(B, dtype=dtype)
    if anorm is None:
        anorm = np.einsum("ij,ij->i", a, a)
    if bnorm is None:
        bnorm = np.einsum("ij,ij->i", b, b)
    res = np.matmul(a, b.T, out=out)
    res *= -2.0
    res += anorm[:, None]
    res += bnorm[None, :]
    np.maximum(res, 0.0, out=res)
    return res
