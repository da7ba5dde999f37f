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
from ..kernels import CenterSet, default_chunk_size
from .numpy import BackendBase

__all__ = ["FaissBackend", "kmeans", "import_faiss"]


def import_faiss():
    """Import faiss, or say how to install it."""
    return require("faiss", "faiss", "the faiss backend")


class FaissBackend(BackendBase):
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

    @staticmethod
    def chunk_rows(k: int, d: int) -> int:
        return max(default_chunk_size(k, d), 4096)

    def nearest(self, x: np.ndarray, centers: CenterSet, scale: float):
        """Labels from an exhaustive ``IndexFlatL2`` search (one index per scale factor)."""
        key = ("faiss", scale)
        index = centers.extra.get(key)
        if index is None:
            c32 = np.ascontiguousarray(centers.c64 * scale, dtype=np.float32)
            index = self._faiss.IndexFlatL2(c32.shape[1])
            index.add(c32)
            centers.extra[key] = index
        _, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
        return ids[:, 0].astype(np.int64), None


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
