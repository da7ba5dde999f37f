"""Pools held as numpy arrays (and memory-mapped arrays that cannot be read through a file)."""

from __future__ import annotations

import numpy as np

from .base import LocalPool

__all__ = ["ArrayPool"]


class ArrayPool(LocalPool):
    """A validated (n, d) float array as a :class:`~coreselect.pools.Pool`.

    Blocks are views of the array (no copy); ``checked`` is True because the public entry
    scanned every row for NaN and inf when it made the pool.

    Examples
    --------
    >>> import numpy as np
    >>> pool = ArrayPool(np.arange(6.0).reshape(3, 2))
    >>> pool.n, pool.d, [start for start, _ in pool.blocks(2)], pool.take([2, 0]).tolist()
    (3, 2, [0, 2], [[4.0, 5.0], [0.0, 1.0]])
    """

    _buffered = False

    def __init__(self, X: np.ndarray, *, kind: str = "in-memory", checked: bool = True):
        self.X = X
        self.kind = kind
        self.checked = checked

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.X.shape[0]), int(self.X.shape[1]))

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        return self.X[start:stop]

    def take(self, rows) -> np.ndarray:
        return np.asarray(self.X[np.asarray(rows, dtype=np.int64)])

    def __repr__(self) -> str:
        return f"ArrayPool(shape={self.shape}, dtype={self.dtype}, kind={self.kind!r})"
