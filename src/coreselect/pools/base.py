"""The data side of the pipeline: the :class:`Pool` protocol and what local pools share.

A *pool* is where the rows live. It says how many rows and columns it has and their dtype,
yields its rows in blocks, and takes given rows; the one fit
(:func:`coreselect.clustering.fit_pool`) and the one sample step
(:func:`coreselect.sensitivity.sample_selection`) use nothing else. The per-row state a fit
leaves behind (each row's center and ``v(e)``) lives where the pool puts it: in memory,
spilled to a file, or on the workers of a Dask cluster (:mod:`coreselect.pools.state`).

Implementations: :class:`~coreselect.pools.ArrayPool` (numpy arrays, memory-mapped arrays that
cannot be read through their file), :class:`~coreselect.pools.ShardedArray` (``.npy`` paths,
shard lists and memory-mapped arrays, read with plain file reads), and
:class:`~coreselect.pools.dask.DaskPool` (Dask arrays, whose blocks stay on the workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from .._progress import Progress
from .state import RowState, open_row_store

__all__ = ["Pool", "PoolBase", "LocalPool"]


@runtime_checkable
class Pool(Protocol):
    """Where the rows live: ``n``, ``d``, ``dtype``, ``blocks(rows)``, ``take(rows)``.

    ``kind`` names it in a selection's provenance ("in-memory", "out-of-core", "dask");
    ``checked`` says whether every row was already scanned for NaN and inf at the public
    entry (else the fit's one pass scans each block as it reads it).
    """

    kind: str
    checked: bool

    @property
    def n(self) -> int: ...

    @property
    def d(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, array)`` covering the pool in order, about ``rows`` rows at a time.

        A block is valid until the next one is read (a pool may reuse one buffer); copy it
        to keep it."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed) as an (len(rows), d) array."""
        ...

    def assign_rows(self, job, plan, *, progress: bool = False,
                    spill_dir: str | None = None) -> RowState:
        """Run ``job(start, block) -> (labels, v)`` over every block; the per-row state."""
        ...


class PoolBase:
    """The base of coreselect's own pools (:func:`coreselect.pools.as_pool` passes them
    through)."""

    kind = "out-of-core"
    checked = False


class LocalPool(PoolBase):
    """What pools read on this machine share: blocks through ``read`` and the local pass.

    Subclasses give ``shape``, ``dtype`` and ``read(start, stop, out=None)``.
    """

    kind = "out-of-core"
    checked = False

    @property
    def n(self) -> int:
        return int(self.shape[0])

    @property
    def d(self) -> int:
        return int(self.shape[1])

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        n = self.n
        rows = max(1, int(rows))
        buf = None
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            if self._buffered:
                if buf is None:
                    buf = np.empty((min(rows, n), self.d), dtype=self.dtype)
                yield start, self.read(start, stop, out=buf)
            else:
                yield start, self.read(start, stop)

    _buffered = True  # reads copy into a buffer the pass owns (False: views of an array)

    def assign_rows(self, job, plan, *, progress: bool = False,
                    spill_dir: str | None = None) -> RowState:
        """The local pass: every block through ``job``, written to an in-memory or spilled
        store with its per-block center counts and sum of ``v``."""
        store = open_row_store(self.n, job.k, plan, spill_dir=spill_dir)
        bar = Progress(self.n, "assign", enabled=progress)
        try:
            for start, xb in self.blocks(plan.chunk_rows):
                lab, v = job(start, xb)
                store.write(start, lab, v)
                bar.update(xb.shape[0])
        finally:
            bar.close()
        store.close_writing()
        return store
