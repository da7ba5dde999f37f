"""Chunked nearest-center assignment with the numpy reference backend (the hot loop).

:func:`assign` is :func:`coreselect.kernels.nearest_centers` with
:class:`coreselect.backends.NumpyBackend`: for each row ``x`` of ``X`` it finds
``argmin_c ||x - c||`` from a float32 GEMM without ever holding an ``n x k`` matrix, and
``v = ||x - A(x)||^z`` exactly from the difference vector. Other backends (faiss, torch) are
tested against it.
"""

from __future__ import annotations

import numpy as np

from ._progress import Progress
from .backends.numpy import NumpyBackend
from .kernels import BLOCK_BYTES as _BLOCK_BYTES  # noqa: F401 (memory model of one block)
from .kernels import default_chunk_size, nearest_centers, pairwise_sq_dists, power_of_distance

__all__ = ["assign", "default_chunk_size", "pairwise_sq_dists", "power_of_distance"]


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
    return nearest_centers(X, centers, backend=NumpyBackend, z=z, chunk_size=chunk_size,
                           progress=progress)
