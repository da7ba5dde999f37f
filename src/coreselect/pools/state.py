"""Per-row state of a fitted pool: each row's center and ``v(e)``, with per-block summaries.

The one fit writes, for every row, the position of its nearest queried row (``labels``) and
``v(e) = ||e - A(e)||^z`` (``distances``), block after block; every block also keeps its
per-center row counts and its sum of ``v``. From those summaries the sample step gets each
block's sampling mass ``sum_j count[b, j] l_j + lam V_b`` without reading a row, and it reads a
block back only to draw inside it (:func:`coreselect.sensitivity.sample_selection`).

:class:`MemoryRows` keeps the state in memory (16 bytes a row), :class:`SpilledRows` in two
raw files under a temporary folder (removed with the object), and
:class:`coreselect.pools.dask.DaskRows` on the workers of a Dask cluster. They share one
interface: ``n``, ``k``, ``starts``, ``counts``, ``vsum``, ``sizes``, ``cost``,
``map_blocks(fn, args)``, ``take(rows)``, ``labels``, ``distances``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import numpy as np

__all__ = ["RowState", "MemoryRows", "SpilledRows", "open_row_store", "block_summary",
           "memory_rows"]


def block_summary(labels: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Per-center row counts and the sum of ``v`` of one block."""
    return np.bincount(labels, minlength=k).astype(np.int64), float(v.sum())


class RowState:
    """What every per-row store offers (see the module docs)."""

    kind = "in-memory"

    def __init__(self, n: int, k: int, starts: np.ndarray):
        self.n = int(n)
        self.k = int(k)
        self.starts = np.asarray(starts, dtype=np.int64)  # (B + 1,) block boundaries
        self.counts = np.zeros((self.starts.shape[0] - 1, self.k), dtype=np.int64)
        self.vsum = np.zeros(self.starts.shape[0] - 1)

    @property
    def n_blocks(self) -> int:
        return int(self.starts.shape[0] - 1)

    @property
    def sizes(self) -> np.ndarray:
        """Rows per center."""
        return self.counts.sum(axis=0).astype(np.int64)

    @property
    def cost(self) -> float:
        """``Phi = sum(v)``."""
        return float(self.vsum.sum())

    def _add(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:
        b = int(np.searchsorted(self.starts, start, side="right")) - 1
        counts, vs = block_summary(labels, v, self.k)
        self.counts[b] += counts
        self.vsum[b] += vs

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def map_blocks(self, fn, args) -> list:
        """``[fn(labels_b, v_b, start_b, args[b]) for every block b]``, in block order."""
        out = []
        for b in range(self.n_blocks):
            start, stop = int(self.starts[b]), int(self.starts[b + 1])
            lab, v = self.read(start, stop)
            out.append(fn(lab, v, start, args[b]))
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover
        """The labels of the given rows."""
        raise NotImplementedError

    def take_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labels and ``v`` of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.labels[rows], dtype=np.int64), np.asarray(self.distances[rows],
                                                                          dtype=np.float64)

    def close_writing(self) -> None:
        pass

    def rewrite(self, mapping: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                v: np.ndarray) -> None:
        """Relabel every row through ``mapping`` (old label -> new label), then give the
        sorted ``rows`` the labels and ``v`` given; the summaries follow (``k`` becomes
        ``mapping.max() + 1`` or more)."""
        k = int(max(int(mapping.max(initial=-1)), int(labels.max(initial=-1))) + 1)
        counts = np.zeros((self.n_blocks, k), dtype=np.int64)
        vsum = np.zeros(self.n_blocks)
        cuts = np.searchsorted(rows, self.starts)
        for b in range(self.n_blocks):
            start, stop = int(self.starts[b]), int(self.starts[b + 1])
            lab, vb = self.read(start, stop)
            lab, vb = mapping[lab], np.array(vb, dtype=np.float64)
            sel = slice(int(cuts[b]), int(cuts[b + 1]))
            lab[rows[sel] - start] = labels[sel]
            vb[rows[sel] - start] = v[sel]
            self._write_block(start, lab, vb)
            counts[b], vsum[b] = block_summary(lab, vb, k)
        self.k, self.counts, self.vsum = k, counts, vsum

    def _write_block(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError


class MemoryRows(RowState):
    """The per-row state in memory."""

    def __init__(self, n: int, k: int, starts: np.ndarray, labels=None, dist=None):
        super().__init__(n, k, starts)
        self._labels = np.empty(n, dtype=np.int64) if labels is None else labels
        self._dist = np.empty(n, dtype=np.float64) if dist is None else dist

    def write(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:
        self._labels[start:start + labels.shape[0]] = labels
        self._dist[start:start + v.shape[0]] = v
        self._add(start, labels, v)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self._labels[start:stop], self._dist[start:stop]

    def _write_block(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:
        self._labels[start:start + labels.shape[0]] = labels
        self._dist[start:start + v.shape[0]] = v

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self._labels[rows]

    @property
    def cost(self) -> float:
        return float(self._dist.sum())

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def distances(self) -> np.ndarray:
        return self._dist


def memory_rows(labels: np.ndarray, dist: np.ndarray, k: int, block_rows: int = 1 << 18,
                starts: np.ndarray | None = None) -> MemoryRows:
    """A :class:`MemoryRows` over given labels and distances (their summaries computed), in
    blocks of ``block_rows`` or at the given block boundaries ``starts``."""
    n = int(labels.shape[0])
    if starts is None:
        starts = np.append(np.arange(0, max(n, 1), block_rows), n).astype(np.int64)
    if n == 0:
        starts = np.array([0, 0], dtype=np.int64)
    rows = MemoryRows(n, k, starts, np.asarray(labels, dtype=np.int64),
                      np.asarray(dist, dtype=np.float64))
    for b in range(rows.n_blocks):
        a, e = int(starts[b]), int(starts[b + 1])
        rows.counts[b], rows.vsum[b] = block_summary(rows._labels[a:e], rows._dist[a:e], k)
    return rows


class SpilledRows(RowState):
    """labels (int64) and v (float64) for every row in two raw files, written in order."""

    kind = "spilled"

    def __init__(self, n: int, k: int, starts: np.ndarray, spill_dir: str | None = None):
        super().__init__(n, k, starts)
        self.dir = tempfile.mkdtemp(prefix="coreselect-", dir=spill_dir)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.dir, True)
        self._paths = (os.path.join(self.dir, "labels.i8"), os.path.join(self.dir, "dist.f8"))
        self._fh = [open(p, "wb") for p in self._paths]  # noqa: SIM115

    def write(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:
        self._fh[0].write(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        self._fh[1].write(np.ascontiguousarray(v, dtype=np.float64).tobytes())
        self._add(start, labels, v)

    def close_writing(self) -> None:
        if self._fh:
            for fh in self._fh:
                fh.close()
            self._fh = []

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        self.close_writing()
        m = max(0, stop - start)
        lab = np.fromfile(self._paths[0], dtype=np.int64, count=m, offset=8 * start)
        v = np.fromfile(self._paths[1], dtype=np.float64, count=m, offset=8 * start)
        return lab, v

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.labels[np.asarray(rows, dtype=np.int64)])

    def _write_block(self, start: int, labels: np.ndarray, v: np.ndarray) -> None:
        self.close_writing()
        for path, arr in zip(self._paths, (np.asarray(labels, dtype=np.int64),
                                           np.asarray(v, dtype=np.float64)), strict=True):
            with open(path, "r+b") as fh:
                fh.seek(8 * start)
                fh.write(np.ascontiguousarray(arr).tobytes())

    @property
    def labels(self) -> np.ndarray:
        self.close_writing()
        return np.memmap(self._paths[0], dtype=np.int64, mode="r", shape=(self.n,))

    @property
    def distances(self) -> np.ndarray:
        self.close_writing()
        return np.memmap(self._paths[1], dtype=np.float64, mode="r", shape=(self.n,))


def open_row_store(n: int, k: int, plan, *, spill_dir: str | None = None) -> RowState:
    """An empty store for n rows cut as ``plan`` says: block boundaries every
    ``plan.group_rows`` rows, in memory when ``plan.store_in_memory``."""
    starts = np.append(np.arange(0, max(n, 1), plan.group_rows), n).astype(np.int64)
    if plan.store_in_memory:
        return MemoryRows(n, k, starts)
    return SpilledRows(n, k, starts, spill_dir)
