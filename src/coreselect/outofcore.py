"""Pools larger than memory (kept for older imports): see :mod:`coreselect.pools`.

A memory-mapped ``.npy`` (``np.load(path, mmap_mode="r")``), a path or a list of paths of
``.npy`` shards, a :class:`ShardedArray`, or any array with a ``memory_limit`` go through the
one pipeline like every pool: the clustering is fitted on a random sample of rows (the same
rows, and so the same centers, as for an array), one pass reads the pool in chunks with plain
file reads and assigns every row, keeping per-chunk center counts and the per-row state in
memory or spilled to a temporary file under ``memory_limit``, and ``sample`` reads back only
the chunks that received a draw. Peak memory is bounded by ``memory_limit`` (default: half of
the available RAM), whatever n. The names below live in :mod:`coreselect.pools`.
"""

from __future__ import annotations

from .pools import (
    ChunkPlan,
    ShardedArray,
    available_memory,
    is_out_of_core_input,
    open_pool,
    plan_chunks,
    resolve_memory_limit,
)
from .pools.memory import DEFAULT_MEMORY_FRACTION, MAX_CHUNK_ROWS, MIN_CHUNK_ROWS

__all__ = [
    "ShardedArray",
    "open_pool",
    "available_memory",
    "resolve_memory_limit",
    "plan_chunks",
    "ChunkPlan",
    "is_out_of_core_input",
    "DEFAULT_MEMORY_FRACTION",
    "MIN_CHUNK_ROWS",
    "MAX_CHUNK_ROWS",
]
