"""The reference backend: the nearest center of each row from one float32 GEMM and an argmin."""

from __future__ import annotations

import numpy as np

from ..kernels import CenterSet, nearest_centers

__all__ = ["NumpyBackend", "BackendBase"]


class BackendBase:
    """What every backend offers on top of ``nearest``: ``assign`` over a whole array.

    ``assign(X, centers, *, z, chunk_size=None, progress=False) -> (labels, dist)`` runs the
    one chunk loop of :func:`coreselect.kernels.nearest_centers` around this backend's
    ``nearest``; it returns what :func:`coreselect.assign.assign` returns.
    """

    name = "base"

    def nearest(self, x: np.ndarray, centers: CenterSet, scale: float):  # pragma: no cover
        raise NotImplementedError

    def assign(self, X, centers, *, z: float = 2.0, chunk_size: int | None = None,
               progress=False) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X) if not hasattr(X, "shape") else X
        return nearest_centers(X, centers, backend=self, z=z, chunk_size=chunk_size,
                               progress=progress)


class NumpyBackend:
    """The reference backend: chunked float32 GEMM, exact float64 distances (by the kernel).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    >>> labels, dist = NumpyBackend().assign(X, np.array([[0.0, 0.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 0, 1], [0.0, 1.0, 0.0])
    """

    name = "numpy"

    @staticmethod
    def assign(X, centers, *, z: float = 2.0, chunk_size: int | None = None,
               progress=False) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centers(X, centers, backend=NumpyBackend, z=z, chunk_size=chunk_size,
                               progress=progress)

    @staticmethod
    def nearest(x: np.ndarray, centers: CenterSet, scale: float):
        """Labels of the nearest centers of the (already rescaled) rows ``x``; distances are
        left to the kernel (None)."""
        ct2, cnorm = centers.scaled(scale)  # ct2 = -2 c.T
        x32 = np.asarray(x, dtype=np.float32)  # no copy for float32 input
        block = np.matmul(x32, ct2, out=centers.block_buffer(x32.shape[0]))
        block += cnorm
        return np.argmin(block, axis=1), None
