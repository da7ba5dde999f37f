"""Dask arrays as pools (``pip install coreselect[dask]``): the blocks stay on the workers.

A :class:`DaskPool` is a Pool like any other: the one fit gathers its fitting sample from the
partitions (the same rows as for an array, so the same centers), then runs the same per-block
assignment job on every block with ``map_blocks``; each row's center and ``v(e)`` stay on the
workers, persisted (:class:`DaskRows`), and one small reduction brings back each block's
per-center row counts and sum of ``v``. The one sample step then sends the same per-block
draw job to the blocks that received draws, so a Dask array gives the selection an array
gives, for the same seed.

Whatever scheduler is active is used: the threaded one by default, or a
``distributed.Client`` (see ``docs/dask.md`` for running on a real cluster).
"""

from __future__ import annotations

import logging

import numpy as np

from .._optional import require
from .._progress import Progress
from .base import PoolBase
from .shards import ShardedArray
from .state import RowState, block_summary

__all__ = ["DaskPool", "DaskRows", "from_npy_shards", "import_dask"]

logger = logging.getLogger(__name__)


def import_dask():
    """Import dask and dask.array, or say how to install them."""
    da = require("dask.array", "dask", "the Dask backend")
    return require("dask", "dask", "the Dask backend"), da


def from_npy_shards(paths, *, chunk_rows: int | None = None):
    """A Dask array over ``.npy`` shards, read by plain file reads on the workers.

    Only the file names travel in the graph (not the data, as a pickled memmap would).

    Parameters
    ----------
    paths : sequence of str or path
        The shards, concatenated in order (see :class:`coreselect.pools.ShardedArray`).
    chunk_rows : int, optional
        Rows per block; by default about 128 MiB of rows.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.ones((10, 2), np.float32))
    >>> x = from_npy_shards([path], chunk_rows=4)
    >>> x.chunks[0], float(x.sum().compute())
    ((4, 4, 2), 20.0)
    """
    _, da = import_dask()
    pool = ShardedArray(paths)
    n, d = pool.shape
    if chunk_rows is None:
        chunk_rows = max(1, (128 * 2**20) // max(1, d * pool.dtype.itemsize))
    X = da.from_array(pool, chunks=(int(chunk_rows), d), asarray=True,
                      meta=np.empty((0, d), dtype=pool.dtype))
    _SHARD_POOLS[X.name] = pool  # lets the fit read its sample rows alone (see DaskPool.take)
    return X


# Dask arrays made by from_npy_shards, by name: their sample rows can be read one by one.
_SHARD_POOLS: dict[str, ShardedArray] = {}


def _take_rows(pool: ShardedArray, rows: np.ndarray) -> np.ndarray:
    return pool.take(rows)


def _as_rows_array(X, name: str = "X"):
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features); got a "
                         f"{X.ndim}-D Dask array of shape {X.shape}.")
    if any(np.isnan(c) for dim in X.chunks for c in dim):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                         "first.")
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} has shape {X.shape}; at least 1 row and 1 column are required.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (bool, int or float); got dtype {X.dtype}.")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def _float_block(xb) -> np.ndarray:
    xb = np.asarray(xb)
    if xb.dtype.kind != "f" or xb.dtype not in (np.float32, np.float64):
        xb = xb.astype(np.float32 if xb.dtype == np.float16 else np.float64)
    return xb


def _assign_block(xb, job, block_info=None):
    """The fit's job on one block, as an (m, 2) float64 array (labels exact below 2**53)."""
    start = block_info[0]["array-location"][0][0] if block_info else 0
    lab, v = job(start, _float_block(xb))
    out = np.empty((lab.shape[0], 2))
    out[:, 0] = lab
    out[:, 1] = v
    return out


def _block_counts(out, k):
    counts, vs = block_summary(out[:, 0].astype(np.int64), out[:, 1], k)
    res = np.empty((1, k + 1))
    res[0, :k] = counts
    res[0, k] = vs
    return res


def _rewrite_block(out, mapping, local_rows, labels, v):
    out = np.array(out, dtype=np.float64)
    out[:, 0] = mapping[out[:, 0].astype(np.int64)]
    out[local_rows, 0] = labels
    out[local_rows, 1] = v
    return out


def _apply(fn, out, start, arg):
    out = np.asarray(out)
    return fn(out[:, 0].astype(np.int64), out[:, 1], start, arg)


class DaskPool(PoolBase):
    """A 2-D Dask array as a :class:`~coreselect.pools.Pool` (checked on its workers)."""

    kind = "dask"
    checked = False

    def __init__(self, X, *, name: str = "X"):
        self.X = _as_rows_array(X, name)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        return int(self.X.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.d)

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def blocks(self, rows: int | None = None):
        """Yield ``(start, block)`` for Dask's own blocks, each computed in turn (``rows`` is
        not used: the blocks are where the data lives)."""
        start = 0
        for b, m in enumerate(self.X.chunks[0]):
            yield start, _float_block(self.X.blocks[b].compute())
            start += int(m)

    def take(self, rows) -> np.ndarray:
        """``X[rows]`` on the client. For arrays from :func:`from_npy_shards`, tasks on the
        workers read just those rows; for any other Dask array each block holding a row is
        computed."""
        dask, _ = import_dask()
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        pool = _SHARD_POOLS.get(self.X.name)
        if pool is None or pool.shape != self.X.shape:
            got = np.asarray(self.X[srt].compute())
        else:
            starts = np.concatenate([[0], np.cumsum(self.X.chunks[0])])
            cuts = np.searchsorted(srt, starts)
            tasks = [dask.delayed(_take_rows)(pool, srt[a:b])
                     for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
            got = np.concatenate(dask.compute(*tasks))
        out = np.empty_like(got)
        out[order] = got
        return out

    def assign_rows(self, job, plan=None, *, progress: bool = False,
                    spill_dir: str | None = None) -> DaskRows:
        """Run the fit's job on every block on the workers; the state stays there."""
        dask, _ = import_dask()
        bar = Progress(1, "assign (dask)", enabled=progress, unit="passes")
        job_d = dask.delayed(job, pure=True)  # one copy in the graph, sent to each worker
        out = self.X.map_blocks(_assign_block, job_d, chunks=(self.X.chunks[0], (2,)),
                                dtype=np.float64)
        (out,) = dask.persist(out)
        k = job.k
        agg = out.map_blocks(_block_counts, k, chunks=((1,) * out.numblocks[0], (k + 1,)),
                             dtype=np.float64).compute()
        bar.update(1)
        bar.close()
        starts = np.concatenate([[0], np.cumsum(self.X.chunks[0])]).astype(np.int64)
        rows = DaskRows(out, starts, k)
        rows.counts[:] = agg[:, :k].astype(np.int64)
        rows.vsum[:] = agg[:, k]
        logger.debug("dask pass: n=%d d=%d k=%d blocks=%d", self.n, self.d, k, out.numblocks[0])
        return rows


class DaskRows(RowState):
    """The per-row state as a persisted (n, 2) Dask array: label, v."""

    kind = "dask"

    def __init__(self, out, starts: np.ndarray, k: int):
        super().__init__(int(starts[-1]), k, starts)
        self.out = out

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.asarray(self.out[start:stop].compute())
        return out[:, 0].astype(np.int64), out[:, 1]

    def map_blocks(self, fn, args) -> list:
        """``fn`` on every block, on the workers; results gathered in block order."""
        dask, _ = import_dask()
        blocks = self.out.to_delayed().ravel()
        tasks = [dask.delayed(_apply)(fn, blocks[b], int(self.starts[b]), args[b])
                 for b in range(self.n_blocks)]
        return list(dask.compute(*tasks))

    def rewrite(self, mapping: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                v: np.ndarray) -> None:
        """:meth:`RowState.rewrite` on the workers: a new persisted state."""
        dask, _ = import_dask()
        k = int(max(int(mapping.max(initial=-1)), int(labels.max(initial=-1))) + 1)
        cuts = np.searchsorted(rows, self.starts)
        blocks = self.out.to_delayed().ravel()
        parts = []
        for b in range(self.n_blocks):
            sel = slice(int(cuts[b]), int(cuts[b + 1]))
            m = int(self.starts[b + 1] - self.starts[b])
            task = dask.delayed(_rewrite_block)(blocks[b], mapping, rows[sel] - self.starts[b],
                                                labels[sel], v[sel])
            parts.append(self._da.from_delayed(task, shape=(m, 2), dtype=np.float64))
        (self.out,) = dask.persist(self._da.concatenate(parts, axis=0))
        agg = self.out.map_blocks(_block_counts, k,
                                  chunks=((1,) * self.out.numblocks[0], (k + 1,)),
                                  dtype=np.float64).compute()
        self.k = k
        self.counts = agg[:, :k].astype(np.int64)
        self.vsum = agg[:, k].copy()

    @property
    def _da(self):
        return import_dask()[1]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.take_rows(rows)[0]

    def take_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        got = np.empty((rows.shape[0], 2))
        if rows.size:
            got[order] = np.asarray(self.out[rows[order]].compute())
        return got[:, 0].astype(np.int64), got[:, 1].copy()

    @property
    def labels(self):
        return self.out[:, 0].astype(np.int64)

    @property
    def distances(self):
        return self.out[:, 1]
