"""Pools: where the rows live, behind one protocol (see :mod:`coreselect.pools.base`).

:func:`as_pool` is the one place where input is routed, at the public entry: a Dask array
becomes a :class:`~coreselect.pools.dask.DaskPool`; a ``.npy`` path, a list of shard paths, a
:class:`ShardedArray` or a memory-mapped array becomes a :class:`ShardedArray` (read with
plain file reads, never loaded whole); anything else is validated (one scan for NaN and inf)
and becomes an :class:`ArrayPool`. A Pool given again is passed through.
"""

from __future__ import annotations

from .._validation import check_embeddings
from .array import ArrayPool
from .base import LocalPool, Pool, PoolBase
from .memory import ChunkPlan, available_memory, plan_chunks, resolve_memory_limit
from .shards import ShardedArray, is_out_of_core_input, open_pool
from .state import MemoryRows, RowState, SpilledRows, memory_rows

__all__ = [
    "Pool",
    "as_pool",
    "ArrayPool",
    "ShardedArray",
    "open_pool",
    "is_out_of_core_input",
    "is_dask_array",
    "available_memory",
    "resolve_memory_limit",
    "plan_chunks",
    "ChunkPlan",
    "RowState",
    "MemoryRows",
    "SpilledRows",
    "memory_rows",
    "LocalPool",
    "PoolBase",
]


def is_dask_array(X) -> bool:
    """True for Dask arrays (duck-typed: no import of dask)."""
    return hasattr(X, "__dask_graph__") and hasattr(X, "chunks") and hasattr(X, "ndim")


def as_pool(X, *, name: str = "X"):
    """``X`` as a :class:`Pool`, validated once (see the module docs).

    Examples
    --------
    >>> import numpy as np
    >>> as_pool(np.zeros((3, 2))).kind, as_pool(np.zeros((3, 2), dtype=int)).dtype
    ('in-memory', dtype('float64'))
    """
    if isinstance(X, PoolBase):
        return X
    if is_dask_array(X):
        from .dask import DaskPool

        return DaskPool(X, name=name)
    if is_out_of_core_input(X):
        pool = open_pool(X)
        if isinstance(pool, ShardedArray):
            if pool.shape[0] == 0 or pool.shape[1] == 0:
                raise ValueError(f"{name} has shape {pool.shape}; at least 1 row and 1 column "
                                 "are required.")
            return pool
        return ArrayPool(check_embeddings(pool, name=name), kind="out-of-core")
    return ArrayPool(check_embeddings(X, name=name))
