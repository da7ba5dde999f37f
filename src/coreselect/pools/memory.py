"""How much memory a pass may use: the available memory, ``memory_limit`` strings, chunk plans.

One memory model for the pass over a pool (:func:`plan_chunks`): the fitting sample, the
centers, one read chunk and its distance block, and the per-row state (16 bytes a row) when it
stays in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .._validation import check_memory_limit
from ..kernels import BLOCK_BYTES, default_chunk_size

__all__ = ["available_memory", "resolve_memory_limit", "plan_chunks", "ChunkPlan",
           "DEFAULT_MEMORY_FRACTION", "MIN_CHUNK_ROWS", "MAX_CHUNK_ROWS"]

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


def resolve_memory_limit(memory_limit=None) -> int:
    """``memory_limit`` in bytes: None is half the available memory; strings like "1.5GB".

    Examples
    --------
    >>> resolve_memory_limit("1.5GB"), resolve_memory_limit("512MiB"), resolve_memory_limit(10**9)
    (1500000000, 536870912, 1000000000)
    """
    if memory_limit is None or memory_limit == "auto":
        return int(DEFAULT_MEMORY_FRACTION * available_memory())
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
             + min(BLOCK_BYTES, fit_rows * (4 * k + 24 * d)) + 2**20)
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
