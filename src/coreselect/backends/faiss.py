"""faiss backend (``pip install coreselect[faiss]``): flat-index search for the assignment.

faiss finds the nearest center of each row (an exhaustive ``IndexFlatL2`` search, which is a
float32 GEMM plus an argmin in faiss's own kernels, threaded with OpenMP); the distance to the
chosen center is then recomputed exactly in float64, as the numpy reference does, so ``v(e)``
is the same to the last bits whenever the two agree on the nearest center (they can differ
only on near-ties, where either choice is as good). :func:`kmeans` wraps ``faiss.Kmeans`` for
the benchmarks' "faiss k-means + search" pipeline.
"""

from __future__ import annotations

import numpy as np

from .._optional import require
from .._progress import Progress
from .._validation import iter_chunks
from ..assign import _scale_for, default_chunk_size, power_of_distance

__all__ = ["FaissBackend", "kmeans", "import_faiss"]


def import_faiss():
    """Import faiss, or say how to install it."""
    return require("faiss", "faiss", "the faiss backend")


class FaissBackend:
    """Nearest-center assignment by a faiss flat index; distances exact in float64.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    >>> labels, dist = FaissBackend().assign(X, np.array([[0.0, 0.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 0, 1], [0.0, 1.0, 0.0])
    """

    name = "faiss"

    def __init__(self):
        self._faiss = import_faiss()

    def _index(self, centers64: np.ndarray, scale: float):
        c32 = np.ascontiguousarray(centers64 * scale, dtype=np.float32)
        index = self._faiss.IndexFlatL2(c32.shape[1])
        index.add(c32)
        return index

    def assign(self, X, centers, *, z: float = 2.0, chunk_size: int | None = None,
               progress=False) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as :func:`coreselect.assign.assign`."""
        n, d = X.shape
        c64 = np.ascontiguousarray(centers, dtype=np.float64)
        if c64.ndim != 2 or c64.shape[1] != d:
            raise ValueError(f"centers must have shape (k, {d}); got {c64.shape}.")
        if c64.shape[0] == 0:
            raise ValueError("centers is empty; at least one center is required.")
        cmax = float(np.max(np.abs(c64)))
        chunk = int(chunk_size) if chunk_size else max(default_chunk_size(c64.shape[0], d), 4096)
        indexes: dict[float, object] = {}
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float64)
        bar = progress if isinstance(progress, Progress) else Progress(
            n, "assign (faiss)", enabled=bool(progress))
        for start, stop in iter_chunks(n, chunk):
            xb = np.asarray(X[start:stop])
            scale = _scale_for(max(float(np.max(np.abs(xb))), cmax))
            index = indexes.get(scale)
            if index is None:
                index = indexes[scale] = self._index(c64, scale)
            x32 = np.ascontiguousarray(xb if scale == 1.0 else xb * scale, dtype=np.float32)
            _, ids = index.search(x32, 1)
            lab = ids[:, 0].astype(np.int64)
            labels[start:stop] = lab
            diff = np.asarray(xb, dtype=np.float64) - c64[lab]
            dist[start:stop] = np.einsum("ij,ij->i", diff, diff)
            bar.update(stop - start)
        bar.close()
        return labels, power_of_distance(dist, z)


def kmeans(X: np.ndarray, n_clusters: int, *, n_iter: int = 20, seed: int = 0,
           max_points_per_centroid: int = 256) -> np.ndarray:
    """faiss's k-means (Lloyd on a subsample of ``max_points_per_centroid * k`` rows).

    Returns the (k, d) float32 centers. Used by the benchmarks as the "faiss k-means + search"
    pipeline users would otherwise write.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.vstack([np.zeros((50, 2)), np.full((50, 2), 9.0)]).astype(np.float32)
    >>> sorted(kmeans(X, 2, seed=1)[:, 0].round().tolist())
    [0.0, 9.0]
    """
    faiss = import_faiss()
    x32 = np.ascontiguousarray(X, dtype=np.float32)
    km = faiss.Kmeans(x32.shape[1], int(n_clusters), niter=int(n_iter), seed=int(seed),
                      max_points_per_centroid=int(max_points_per_centroid), verbose=False)
    km.train(x32)
    return np.asarray(km.centroids)
