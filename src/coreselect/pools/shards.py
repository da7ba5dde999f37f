"""Pools in files: ``.npy`` shards and memory-mapped arrays, read with plain file reads.

:class:`ShardedArray` sees the rows of one or more ``.npy`` files as one read-only (n, d)
array and is a :class:`~coreselect.pools.Pool`. Rows are read with ``preadv`` into buffers
the pass owns, so the page cache, not the process, holds what was read: a pass over the pool
does not grow the process's memory. A memory-mapped array is read through its file the same
way (:func:`open_pool`).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import LocalPool

__all__ = ["ShardedArray", "open_pool", "is_out_of_core_input"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Segment:
    path: str
    offset: int  # byte offset of row 0
    rows: int


def _npy_header(path: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        return shape, fortran, np.dtype(dtype), fh.tell()


class ShardedArray(LocalPool):
    """Rows of one or more ``.npy`` files seen as one read-only (n, d) array.

    Nothing is loaded until rows are asked for, and rows are read with plain file reads, so
    a pass over the pool does not grow the process's memory. Slicing with a step of 1 and
    indexing with an integer array of row numbers return numpy arrays; ``len``, ``shape``,
    ``dtype`` and ``ndim`` behave as for an ndarray.

    Parameters
    ----------
    paths : str, path or sequence of them
        ``.npy`` files holding C-ordered 2-D float32 or float64 arrays with the same number of
        columns and dtype; their rows are concatenated in the order given.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "a.npy"), np.zeros((2, 3), np.float32))
    >>> np.save(os.path.join(d, "b.npy"), np.ones((3, 3), np.float32))
    >>> pool = ShardedArray([os.path.join(d, "a.npy"), os.path.join(d, "b.npy")])
    >>> pool.shape, pool[1:3].tolist(), pool[np.array([4])].shape
    ((5, 3), [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], (1, 3))
    """

    ndim = 2
    kind = "out-of-core"
    checked = False  # the fit's pass scans each block for NaN and inf as it reads it

    def __init__(self, paths):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("paths must name at least one .npy file; got an empty list.")
        segments, d, dtype = [], None, None
        for p in paths:
            try:
                shape, fortran, dt, offset = _npy_header(p)
            except (OSError, ValueError) as exc:
                raise ValueError(f"paths: {p!r} is not a readable .npy file ({exc}).") from exc
            if len(shape) != 2:
                raise ValueError(f"paths: {p!r} holds a {len(shape)}-D array of shape {shape}; "
                                 "every shard must be 2-D (n_rows, n_features).")
            if fortran:
                raise ValueError(f"paths: {p!r} is Fortran-ordered; save shards in C order.")
            if dt not in (np.float32, np.float64):
                raise TypeError(f"paths: {p!r} holds dtype {dt}; shards must be float32 or "
                                "float64.")
            if d is None:
                d, dtype = shape[1], dt
            elif shape[1] != d or dt != dtype:
                raise ValueError(
                    f"paths: {p!r} has shape {shape} and dtype {dt}; the first shard has "
                    f"{d} columns and dtype {dtype}: all shards must agree."
                )
            segments.append(_Segment(p, offset, int(shape[0])))
        self._init(segments, int(d), np.dtype(dtype))

    @classmethod
    def _from_segments(cls, segments, d: int, dtype) -> ShardedArray:
        self = cls.__new__(cls)
        self._init(list(segments), int(d), np.dtype(dtype))
        return self

    def _init(self, segments, d: int, dtype: np.dtype) -> None:
        self._segments = segments
        self._d = d
        self._dtype = dtype
        self._row_bytes = d * dtype.itemsize
        self._starts = np.concatenate([[0], np.cumsum([s.rows for s in segments])]).astype(np.int64)
        self._fds: dict[str, int] = {}
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    # ndarray-like attributes
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self._starts[-1]), self._d)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.size * self._dtype.itemsize

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self._segments]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"ShardedArray(shape={self.shape}, dtype={self._dtype}, "
                f"shards={len(self._segments)})")

    def __getstate__(self):
        return {"segments": self._segments, "d": self._d, "dtype": self._dtype.str}

    def __setstate__(self, state):
        self._init(state["segments"], state["d"], np.dtype(state["dtype"]))

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            self._fds[path] = fd
        return fd

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` as an array (into ``out`` when given, which must be C-ordered)."""
        n = self.shape[0]
        start, stop = max(0, int(start)), min(n, int(stop))
        m = max(0, stop - start)
        if out is None:
            out = np.empty((m, self._d), dtype=self._dtype)
        else:
            out = out[:m]
        if m == 0:
            return out
        buf = memoryview(out.reshape(-1).view(np.uint8))
        pos = 0
        seg = int(np.searchsorted(self._starts, start, side="right")) - 1
        row = start
        while row < stop:
            s = self._segments[seg]
            first = row - int(self._starts[seg])
            take = min(stop - row, s.rows - first)
            nbytes = take * self._row_bytes
            _pread_into(self._fd(s.path), buf[pos:pos + nbytes], s.offset + first * self._row_bytes)
            pos += nbytes
            row += take
            seg += 1
        return out

    def take(self, rows) -> np.ndarray:
        """The given rows (any order, repeats allowed) as an (len(rows), d) array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if rows.size and (rows.min() < -n or rows.max() >= n):
            bad = rows[(rows < -n) | (rows >= n)][0]
            raise IndexError(f"index {int(bad)} is out of bounds for a pool of {n} rows.")
        rows = np.where(rows < 0, rows + n, rows)
        out = np.empty((rows.shape[0], self._d), dtype=self._dtype)
        if rows.size == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        # read runs of consecutive rows at once
        breaks = np.flatnonzero(np.diff(srt) > 1) + 1
        got = np.empty_like(out)
        pos = 0
        for run in np.split(srt, breaks):
            lo, hi = int(run[0]), int(run[-1]) + 1
            block = self.read(lo, hi)
            got[pos:pos + run.shape[0]] = block[run - lo]
            pos += run.shape[0]
        out[order] = got
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, cols = key[0], key[1:]
            return self[rows][(slice(None),) + tuple(cols)] if cols else self[rows]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:
                return self.read(start, stop)
            return self.take(np.arange(start, stop, step))
        if isinstance(key, (int, np.integer)):
            return self.take([int(key)])[0]
        arr = np.asarray(key)
        if arr.dtype == bool:
            arr = np.flatnonzero(arr)
        return self.take(arr)

    def __array__(self, dtype=None, copy=None):
        logger.debug("ShardedArray: loading all %d rows into memory", self.shape[0])
        out = self.read(0, self.shape[0])
        return out if dtype is None else out.astype(dtype, copy=False)


def _close_all(fds: dict) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:  # pragma: no cover
            pass
    fds.clear()


def _pread_into(fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    total = len(buf)
    while done < total:
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got <= 0:
            raise OSError(f"unexpected end of file while reading {total} bytes at {offset}")
        done += got


def _memmap_segment(X: np.memmap) -> ShardedArray | None:
    """A reader over the file behind a C-ordered memmap, or None when that cannot be done."""
    mm = getattr(X, "_mmap", None)
    fname = getattr(X, "filename", None)
    if mm is None or not fname or X.ndim != 2 or not X.flags.c_contiguous:
        return None
    if X.dtype not in (np.float32, np.float64):
        return None
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError, BufferError):
        return None
    import mmap as _mmap

    map_start = X.offset - X.offset % _mmap.ALLOCATIONGRANULARITY
    offset = map_start + (X.ctypes.data - base)
    if offset < 0 or not os.path.exists(fname):
        return None
    seg = _Segment(os.fspath(fname), int(offset), int(X.shape[0]))
    return ShardedArray._from_segments([seg], X.shape[1], X.dtype)


def open_pool(source) -> ShardedArray | np.ndarray:
    """The embeddings named by ``source`` as an array-like that is read in chunks.

    ``source`` may be a path or a list of paths of ``.npy`` shards, a :class:`ShardedArray`,
    or a memory-mapped array (read through its file, so that a pass does not keep the pages
    it read in the process). Other arrays are returned as they are.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(6, dtype=np.float32).reshape(3, 2))
    >>> open_pool(path)[2:].tolist(), open_pool(np.load(path, mmap_mode="r")).shape
    ([[4.0, 5.0]], (3, 2))
    """
    if isinstance(source, ShardedArray):
        return source
    if isinstance(source, (str, os.PathLike)):
        return ShardedArray([source])
    if isinstance(source, Sequence) and source and all(
            isinstance(p, (str, os.PathLike)) for p in source):
        return ShardedArray(list(source))
    if isinstance(source, np.memmap):
        reader = _memmap_segment(source)
        return reader if reader is not None else source
    return source


def is_out_of_core_input(X) -> bool:
    """True for inputs the out-of-core path reads in chunks (paths, shard lists, memmaps)."""
    if isinstance(X, (ShardedArray, np.memmap, str, os.PathLike)):
        return True
    return (isinstance(X, Sequence) and not isinstance(X, (bytes, bytearray)) and len(X) > 0
            and all(isinstance(p, (str, os.PathLike)) for p in X))
