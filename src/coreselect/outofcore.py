"""Pools larger than memory: shard lists, a ``memory_limit``, and chunked sampling.

The out-of-core path is what :class:`coreselect.SensitivitySampler` runs when the embeddings
are a memory-mapped ``.npy`` (``np.load(path, mmap_mode="r")``), a path or a list of paths of
``.npy`` shards, a :class:`ShardedArray`, or when a ``memory_limit`` is given. It never loads
the pool whole:

1. the (k, z)-clustering is fitted on a random sample of rows (the same rows, and so the same
   centers, as the in-memory path for the same seed);
2. one pass reads the pool in chunks with plain file reads (so that the page cache, not the
   process, holds what was read) and assigns every row to its nearest center; each chunk's
   per-center row counts and sum of ``v(e)`` are kept, and the per-row labels and ``v(e)``
   are kept in memory when they fit under the limit, or spilled to a temporary file;
3. ``sample`` gets the chunk masses ``sum_j count[c, j] l_j + lam V_c`` from those counts,
   draws the ``s`` uniforms of the in-memory draw, sends each to its chunk by the cumulative
   chunk masses, and reads back only the chunks that received a draw. The selection is that
   of the in-memory path for the same seed (equal up to the rounding of sums taken in another
   order, which moves a draw only if a uniform falls within ~1e-16 of a boundary).

Peak memory is bounded by ``memory_limit`` (default: half of the available RAM), whatever n:
the chunk sizes follow from it, and too small a limit is an error that says what one chunk
needs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._progress import Progress
from ._validation import check_memory_limit, iter_chunks
from .assign import _BLOCK_BYTES, default_chunk_size

__all__ = [
    "ShardedArray",
    "open_pool",
    "available_memory",
    "resolve_memory_limit",
    "plan_chunks",
    "ChunkPlan",
    "is_out_of_core_input",
]

logger = logging.getLogger(__name__)

# Fraction of the available memory used when memory_limit is None.
DEFAULT_MEMORY_FRACTION = 0.5
# Fewest rows one chunk may hold; a memory_limit that cannot give this much is an error.
MIN_CHUNK_ROWS = 64
# Most rows read per chunk (larger chunks do not read faster).
MAX_CHUNK_ROWS = 1 << 18


# --------------------------------------------------------------------------------------------
# Memory


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` on Linux).

    Falls back to psutil, then to the physical memory, then to 4 GiB.
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # pragma: no cover - non-Linux
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        pass
    try:  # pragma: no cover
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 4 * 2**30


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def resolve_memory_limit(memory_limit=None) -> int:
    """``memory_limit`` in bytes: None is half the available memory; strings like "1.5GB".

    Examples
    --------
    >>> resolve_memory_limit("1.5GB"), resolve_memory_limit("512MiB"), resolve_memory_limit(10**9)
    (1500000000, 536870912, 1000000000)
    """
    if memory_limit is None or memory_limit == "auto":
        return int(DEFAULT_MEMORY_FRACTION * available_memory())
    if isinstance(memory_limit, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", memory_limit)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(
                "memory_limit must be a number of bytes, a string such as '1.5GB' or '512MiB', "
                f"or None; got {memory_limit!r}."
            )
        memory_limit = float(m.group(1)) * _UNITS[unit]
    return check_memory_limit(memory_limit)


@dataclass(frozen=True)
class ChunkPlan:
    """How a pass over the pool is cut so as to stay under a memory limit.

    Attributes
    ----------
    memory_limit : int
        The limit, in bytes.
    chunk_rows : int
        Rows read from the pool at a time.
    assign_rows : int
        Rows per distance block inside a chunk (the ``chunk_size`` of the assignment).
    store_in_memory : bool
        Whether the per-row labels and distances (16 bytes a row) are kept in memory; if not,
        they are spilled to a temporary file.
    fixed_bytes : int
        Estimated memory that does not depend on the chunk size (fitting sample, centers).
    group_chunks : int
        Read chunks per group: the per-center row counts (``8 (k + 1)`` bytes) are kept per
        group, and ``sample`` reads back one group at a time; groups grow with n so that
        the counts stay under a sixth of the room.
    """

    memory_limit: int
    chunk_rows: int
    assign_rows: int
    store_in_memory: bool
    fixed_bytes: int
    group_chunks: int = 1

    @property
    def group_rows(self) -> int:
        return self.chunk_rows * self.group_chunks


def plan_chunks(memory_limit, *, n: int, d: int, k: int, itemsize: int = 4,
                fit_rows: int = 0, chunk_size: int | None = None) -> ChunkPlan:
    """Chunk sizes for a pass over an (n, d) pool with k centers under ``memory_limit``.

    The estimate counts the fitting sample (float64, three copies), the centers, the read
    buffer of a chunk (``d * itemsize`` a row plus its results), the float32 distance block
    of the assignment (``4 k`` a row) with its float32/float64 row copies, and the per-row
    labels and distances (16 bytes a row) when they stay in memory.

    Raises
    ------
    ValueError
        When the limit leaves no room for one chunk of ``MIN_CHUNK_ROWS`` rows; the message
        says how many bytes that needs.

    Examples
    --------
    >>> plan = plan_chunks("1GB", n=10**6, d=128, k=1000, fit_rows=40000)
    >>> plan.store_in_memory, plan.chunk_rows >= plan.assign_rows >= 64
    (True, True)
    """
    limit = resolve_memory_limit(memory_limit)
    # fitting sample (3 copies), centers, the clustering's distance blocks, 1 MiB of slack
    fixed = (3 * fit_rows * d * 8 + k * d * 24 + k * 64
             + min(_BLOCK_BYTES, fit_rows * (4 * k + 24 * d)) + 2**20)
    per_read = d * itemsize + 16 + 32  # raw row, its label/distance, sampling temporaries
    per_assign = 4 * k + 4 * d + 16 * d + 16  # distance block, float32 and float64 row copies
    need = fixed + MIN_CHUNK_ROWS * (per_read + per_assign)
    if limit < need:
        raise ValueError(
            f"memory_limit must leave room for one chunk of {MIN_CHUNK_ROWS} rows; got {limit} "
            f"bytes, but fitting k={k} centers on {fit_rows} rows of d={d} and one chunk need "
            f"about {need} bytes ({fixed} fixed + {per_read + per_assign} a row). Raise "
            "memory_limit or lower n_clusters / fit_sample_size."
        )
    room = limit - fixed
    store_in_memory = 16 * n <= room // 2
    if store_in_memory:
        room -= 16 * n
    assign_rows = int(min(default_chunk_size(k, d), max(MIN_CHUNK_ROWS, (room // 3) // per_assign)))
    if chunk_size:
        assign_rows = int(min(assign_rows, max(1, int(chunk_size))))
    chunk_rows = int(max(MIN_CHUNK_ROWS, (room // 3) // per_read))
    chunk_rows = int(max(assign_rows, min(chunk_rows, MAX_CHUNK_ROWS, max(n, 1))))
    if chunk_size:
        chunk_rows = int(max(1, min(chunk_rows, int(chunk_size))))
    # per-group center counts under room / 6; one group's rows read back under room / 2
    n_chunks = -(-max(n, 1) // chunk_rows)
    group = max(1, -(-(n_chunks * 8 * (k + 1)) // max(1, room // 6)))
    group = min(group, n_chunks)
    if group > 1 and group * chunk_rows * 40 > room // 2:
        raise ValueError(
            f"memory_limit is too small for n={n} rows with k={k} centers: the per-center row "
            f"counts of the chunks ({8 * (k + 1)} bytes a chunk) and the rows of one group of "
            f"chunks (40 bytes a row) do not both fit in the {room} bytes left after the fixed "
            f"{fixed}; got memory_limit={limit}. Raise memory_limit or lower n_clusters."
        )
    return ChunkPlan(memory_limit=limit, chunk_rows=chunk_rows, assign_rows=assign_rows,
                     store_in_memory=bool(store_in_memory), fixed_bytes=int(fixed),
                     group_chunks=int(group))


# --------------------------------------------------------------------------------------------
# Reading rows without mapping the whole file


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


class ShardedArray:
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


# --------------------------------------------------------------------------------------------
# Per-row labels and distances: in memory or spilled to a file


class _RowStore:
    """labels (int64) and v (float64) for every row, in memory or in two raw files."""

    def __init__(self, n: int, in_memory: bool, spill_dir: str | None = None):
        self.n = n
        self.in_memory = in_memory
        if in_memory:
            self._labels = np.empty(n, dtype=np.int64)
            self._dist = np.empty(n, dtype=np.float64)
            self.dir = None
        else:
            self.dir = tempfile.mkdtemp(prefix="coreselect-", dir=spill_dir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.dir, True)
            self._paths = (os.path.join(self.dir, "labels.i8"), os.path.join(self.dir, "dist.f8"))
            self._fh = [open(p, "wb") for p in self._paths]  # noqa: SIM115
            self._readers = None

    def write(self, start: int, labels: np.ndarray, dist: np.ndarray) -> None:
        if self.in_memory:
            self._labels[start:start + labels.shape[0]] = labels
            self._dist[start:start + dist.shape[0]] = dist
        else:  # written in order, chunk after chunk
            self._fh[0].write(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
            self._fh[1].write(np.ascontiguousarray(dist, dtype=np.float64).tobytes())

    def close_writing(self) -> None:
        if not self.in_memory and self._fh:
            for fh in self._fh:
                fh.close()
            self._fh = []

    def _reader(self, which: int) -> ShardedArray:
        if self._readers is None:
            self.close_writing()
            self._readers = (
                ShardedArray._from_segments([_Segment(self._paths[0], 0, self.n)], 1, np.int64),
                ShardedArray._from_segments([_Segment(self._paths[1], 0, self.n)], 1, np.float64),
            )
        return self._readers[which]

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        if self.in_memory:
            return self._labels[start:stop], self._dist[start:stop]
        return self._reader(0).read(start, stop)[:, 0], self._reader(1).read(start, stop)[:, 0]

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.in_memory:
            return self._labels[rows], self._dist[rows]
        return self._reader(0).take(rows)[:, 0], self._reader(1).take(rows)[:, 0]

    @property
    def labels(self) -> np.ndarray:
        if self.in_memory:
            return self._labels
        self.close_writing()
        return np.memmap(self._paths[0], dtype=np.int64, mode="r", shape=(self.n,))

    @property
    def dist(self) -> np.ndarray:
        if self.in_memory:
            return self._dist
        self.close_writing()
        return np.memmap(self._paths[1], dtype=np.float64, mode="r", shape=(self.n,))


# --------------------------------------------------------------------------------------------
# The out-of-core fit and draw


def fit_rows(n: int, k: int, fit_sample_size, rng: np.random.Generator) -> np.ndarray:
    """The rows the clustering is fitted on: the same rows as the in-memory path draws."""
    from .clustering import _default_fit_size

    if fit_sample_size == "auto":
        m = _default_fit_size(n, k)
    else:
        from ._validation import check_positive_int

        m = min(n, check_positive_int(fit_sample_size, "fit_sample_size", minimum=k))
    if m >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=m, replace=False))


def fit_centers_on_sample(xs: np.ndarray, rows: np.ndarray, k: int, *, z: float,
                          rng: np.random.Generator, max_iter: int, chunk_size, backend,
                          progress: bool):
    """Fit the clustering on the sample rows ``xs`` (pool rows ``rows``).

    Returns the Clustering of the sample, the sorted pool rows of the centers and their
    coordinates (float64).
    """
    from .clustering import kz_clustering

    k = min(k, xs.shape[0])
    cl = kz_clustering(xs, k, z=z, seed=rng, fit_sample_size=xs.shape[0], max_iter=max_iter,
                       chunk_size=chunk_size, progress=progress, backend=backend)
    center_rows = rows[cl.center_indices]  # rows is sorted, so center_rows is sorted too
    ccoords = np.asarray(xs[cl.center_indices], dtype=np.float64)
    return cl, center_rows, ccoords


class OutOfCoreState:
    """What the out-of-core fit keeps for ``sample``: the pool, the chunking and the counts."""

    def __init__(self, pool, plan: ChunkPlan, store: _RowStore, chunk_starts: np.ndarray,
                 chunk_counts: np.ndarray, chunk_v: np.ndarray):
        self.pool = pool
        self.plan = plan
        self.store = store
        self.chunk_starts = chunk_starts  # (C + 1,)
        self.chunk_counts = chunk_counts  # (C, k) rows per center in each chunk
        self.chunk_v = chunk_v  # (C,) sum of v in each chunk

    kind = "out-of-core"

    def take_labels(self, rows: np.ndarray) -> np.ndarray:
        """Labels of the given rows."""
        return self.store.take(rows)[0]

    def chunk_masses(self, losses: np.ndarray, lam: float) -> np.ndarray:
        """``sum_{e in chunk} l_hat(e) + lam v(e)`` for every chunk, from the counts."""
        return self.chunk_counts @ losses + lam * self.chunk_v

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.store.read(start, stop)

    def row_probabilities(self, start: int, stop: int, losses: np.ndarray, lam: float,
                          mix: float = 0.0) -> np.ndarray:
        """The sampling probabilities of rows ``start:stop`` alone."""
        total = float(self.chunk_masses(losses, lam).sum())
        n = int(self.chunk_starts[-1])
        if not total > 0:
            return np.full(max(0, min(stop, n) - start), 1.0 / n)
        lab, v = self._rows(start, stop)
        p = (losses[lab] + lam * v) / total
        if mix:
            p *= 1.0 - mix
            p += mix / n
        return p

    def probabilities(self, losses: np.ndarray, lam: float, mix: float = 0.0) -> np.ndarray:
        """The sampling probability of every row (8 bytes a row: for pools that fit)."""
        total = float(self.chunk_masses(losses, lam).sum())
        n = self.store.n
        if not total > 0:
            return np.full(n, 1.0 / n)
        p = np.empty(n)
        for start, stop in zip(self.chunk_starts[:-1], self.chunk_starts[1:], strict=True):
            lab, v = self.store.read(int(start), int(stop))
            p[start:stop] = losses[lab] + lam * v
        p /= total
        if mix:
            p *= 1.0 - mix
            p += mix / n
        return p

    def draw_with_replacement(self, losses: np.ndarray, lam: float, size: int,
                              rng: np.random.Generator, mix: float = 0.0,
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``size`` i.i.d. draws: (indices, their probabilities, their labels).

        The uniforms are those of :func:`coreselect.sensitivity.draw_with_replacement`; each is
        sent to its chunk by the cumulative chunk masses, and only chunks that got a draw are
        read back.
        """
        masses = self.chunk_masses(losses, lam)
        total = float(masses.sum())
        if not total > 0 or not math.isfinite(total):
            if not math.isfinite(total):
                raise ValueError("the sampling mass is not finite; are the losses or distances "
                                 "huge?")
            import warnings

            warnings.warn(
                "all query losses are 0 and all points coincide with their centers (total mass "
                "0): falling back to uniform sampling.", RuntimeWarning, stacklevel=4)
            n = self.store.n
            idx = rng.integers(n, size=size).astype(np.int64)
            lab, _ = self.store.take(idx)
            return idx, np.full(size, 1.0 / n), lab
        n = self.store.n
        shares = masses / total
        if mix:  # p = mix / n + (1 - mix) p, chunk by chunk
            shares = (1.0 - mix) * shares + mix * np.diff(self.chunk_starts) / n
        bounds = np.cumsum(shares)
        u = rng.random(size) * bounds[-1]
        chunk_of = np.minimum(np.searchsorted(bounds, u, side="right"), len(masses) - 1)
        idx = np.empty(size, dtype=np.int64)
        prob = np.empty(size)
        labs = np.empty(size, dtype=np.int64)
        for c in np.unique(chunk_of):
            sel = np.flatnonzero(chunk_of == c)
            start, stop = int(self.chunk_starts[c]), int(self.chunk_starts[c + 1])
            lab, v = self.store.read(start, stop)
            p = losses[lab] + lam * v
            p /= total
            if mix:
                p *= 1.0 - mix
                p += mix / n
            carry = 0.0 if c == 0 else float(bounds[c - 1])
            cdf = np.cumsum(np.concatenate([[carry], p]))[1:]
            pos = np.minimum(np.searchsorted(cdf, u[sel], side="right"), stop - start - 1)
            idx[sel] = start + pos
            prob[sel] = p[pos]
            labs[sel] = lab[pos]
        return idx, prob, labs


def fit_out_of_core(X, n_clusters: int, *, z: float, rng: np.random.Generator,
                    fit_sample_size="auto", max_iter: int = 20, chunk_size: int | None = None,
                    backend=None, memory_limit=None, spill_dir: str | None = None,
                    progress: bool = False):
    """The out-of-core fit: returns (Clustering-like fields dict, OutOfCoreState).

    Used by :meth:`coreselect.SensitivitySampler.fit`; see the module docstring.
    """
    from ._validation import check_n_clusters
    from .backends import get_backend
    from .clustering import Clustering

    pool = open_pool(X)
    if getattr(pool, "ndim", None) != 2:
        from ._validation import check_embeddings

        pool = check_embeddings(pool)
    n, d = pool.shape
    if n == 0 or d == 0:
        raise ValueError(f"X has shape {pool.shape}; at least 1 row and 1 column are required.")
    k = check_n_clusters(n_clusters, n)
    itemsize = np.dtype(pool.dtype).itemsize
    rows = fit_rows(n, k, fit_sample_size, rng)
    plan = plan_chunks(memory_limit, n=n, d=d, k=k, itemsize=itemsize, fit_rows=rows.shape[0],
                       chunk_size=chunk_size)
    xs = np.asarray(pool[rows], dtype=np.float64)
    _check_finite_block(xs, rows, "X")
    cl, center_rows, ccoords = fit_centers_on_sample(
        xs, rows, k, z=z, rng=rng, max_iter=max_iter, chunk_size=chunk_size, backend=backend,
        progress=progress)
    del xs
    kc = center_rows.shape[0]
    be = get_backend(backend)
    store = _RowStore(n, plan.store_in_memory, spill_dir)
    starts = np.array([s for s, _ in iter_chunks(n, plan.chunk_rows)] + [n], dtype=np.int64)
    g = plan.group_chunks
    groups = np.append(starts[:-1][::g], n).astype(np.int64)  # group boundaries
    counts = np.zeros((len(groups) - 1, kc), dtype=np.int64)
    vsum = np.zeros(len(groups) - 1)
    buf = np.empty((min(plan.chunk_rows, n), d), dtype=pool.dtype)
    bar = Progress(n, "assign", enabled=progress)
    read = pool.read if isinstance(pool, ShardedArray) else None
    logger.debug("out-of-core fit: n=%d d=%d k=%d chunk=%d assign=%d in_memory=%s limit=%d",
                 n, d, kc, plan.chunk_rows, plan.assign_rows, plan.store_in_memory,
                 plan.memory_limit)
    for c, (start, stop) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
        start, stop = int(start), int(stop)
        xb = read(start, stop, out=buf) if read is not None else np.asarray(pool[start:stop])
        _check_finite_block(xb, np.arange(start, stop), "X")
        lab, v = be.assign(xb, ccoords, z=z, chunk_size=plan.assign_rows)
        # a center's own row: its own label, distance exactly 0 (ties between equal rows)
        lo, hi = np.searchsorted(center_rows, [start, stop])
        if hi > lo:
            own = center_rows[lo:hi] - start
            lab[own] = np.arange(lo, hi)
            v[own] = 0.0
        store.write(start, lab, v)
        counts[c // g] += np.bincount(lab, minlength=kc)
        vsum[c // g] += float(v.sum())
        bar.update(stop - start)
    bar.close()
    store.close_writing()
    sizes = counts.sum(axis=0)
    cost = float(vsum.sum())
    state = OutOfCoreState(pool, plan, store, groups, counts, vsum)
    state.query_points = ccoords
    clustering = Clustering(
        center_indices=center_rows, labels=store.labels, distances=store.dist, cost=cost,
        cluster_sizes=sizes.astype(np.int64), fitted_centers=cl.fitted_centers, z=float(z),
        fit_sample_size=int(rows.shape[0]), n_iter=int(cl.n_iter))
    return clustering, state


def _check_finite_block(block: np.ndarray, rows: np.ndarray, name: str) -> None:
    finite = np.isfinite(block)
    if not finite.all():
        r, col = np.argwhere(~finite)[0]
        what = "NaN" if np.isnan(block[r, col]) else "inf"
        raise ValueError(f"{name} contains {what} at row {int(rows[r])}, column {int(col)}; "
                         "remove or impute non-finite values first.")


def sample_out_of_core(sampler, losses: np.ndarray, size: int, *, lam, replace: bool,
                       rng: np.random.Generator, mix: float = 0.0):
    """``SensitivitySampler.sample`` for a sampler fitted out of core (or on Dask)."""
    from .selection import Selection
    from .sensitivity import draw_without_replacement, inclusion_probabilities, resolve_lam

    state = sampler._ooc
    hat_total = float(np.dot(sampler.cluster_sizes_.astype(np.float64), losses))
    lam_value, lam_rule = resolve_lam(lam, hat_total, sampler.cost_)
    if replace:
        idx, prob, labs = state.draw_with_replacement(losses, lam_value, size, rng, mix)
        weights = 1.0 / (size * prob)
    else:
        p = state.probabilities(losses, lam_value, mix)
        pi = inclusion_probabilities(p, size)
        del p
        idx = draw_without_replacement(pi, rng)
        prob = pi[idx]
        labs = state.take_labels(idx)
        weights = 1.0 / prob
    centers = sampler.query_indices_[labs]
    params = {
        "lam": lam_value, "lam_rule": lam_rule, "z": float(sampler.z),
        "n_clusters": int(sampler.n_clusters), "cost": float(sampler.cost_),
        "hat_total": hat_total, "size": int(size), "mix": float(mix),
        "path": state.kind,
    }
    return Selection(
        indices=idx, weights=weights, probabilities=prob, n=sampler.n_samples_, centers=centers,
        query_indices=sampler.query_indices_, query_losses=losses,
        cluster_sizes=sampler.cluster_sizes_, replace=replace, method="sensitivity",
        params=params,
    )


def _is_dask_array(X) -> bool:
    return hasattr(X, "__dask_graph__") and hasattr(X, "chunks") and hasattr(X, "ndim")


def routed_input(X, memory_limit=None):
    """Validate ``X`` for :func:`coreselect.sensitivity_sample` without loading a large pool.

    A Dask array is returned as is (checked on its cluster), a memmap, path or shard list as
    a :class:`ShardedArray`; anything else goes through ``check_embeddings``.
    """
    from ._validation import check_embeddings

    if _is_dask_array(X):
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array of shape (n_samples, n_features); got a "
                             f"{X.ndim}-D Dask array of shape {X.shape}.")
        return X
    if is_out_of_core_input(X):
        pool = open_pool(X)
        if isinstance(pool, ShardedArray):
            if pool.shape[0] == 0 or pool.shape[1] == 0:
                raise ValueError(f"X has shape {pool.shape}; at least 1 row and 1 column are "
                                 "required.")
            return pool
        return check_embeddings(pool)
    return check_embeddings(X)


def fit_sampler_routed(sampler, X) -> bool:
    """Fit ``sampler`` out of core or on Dask when ``X`` asks for it; False otherwise.

    Called first by :meth:`coreselect.SensitivitySampler.fit`: a Dask array goes to
    :mod:`coreselect.backends.dask`; a memmap, a path, a shard list, a :class:`ShardedArray`
    or any array with ``memory_limit`` set goes to :func:`fit_out_of_core`.
    """
    from ._validation import check_n_clusters, check_random_state, check_z

    if _is_dask_array(X):
        from .backends.dask import fit_sampler

        fit_sampler(sampler, X)
        return True
    if getattr(sampler, "memory_limit", None) is None and not is_out_of_core_input(X):
        return False
    pool = routed_input(X)
    check_n_clusters(sampler.n_clusters, pool.shape[0])
    z = check_z(sampler.z)
    sampler._rng = check_random_state(sampler.seed)
    cl, state = fit_out_of_core(
        pool, sampler.n_clusters, z=z, rng=sampler._rng, fit_sample_size=sampler.fit_sample_size,
        max_iter=sampler.max_iter, chunk_size=sampler.chunk_size, backend=sampler.backend,
        memory_limit=sampler.memory_limit, progress=sampler.progress)
    _set_fitted(sampler, cl, state, pool.shape, getattr(state, "query_points", None))
    return True


def _set_fitted(sampler, cl, state, shape, query_points=None) -> None:
    sampler.query_indices_ = cl.center_indices
    sampler.labels_ = cl.labels
    sampler.distances_ = cl.distances
    sampler.cost_ = cl.cost
    sampler.cluster_sizes_ = cl.cluster_sizes
    sampler.n_samples_, sampler.n_features_in_ = int(shape[0]), int(shape[1])
    sampler.clustering_ = cl
    sampler._ooc = state
    sampler._query_points = query_points  # coordinates of the queried rows (diagnostics)
