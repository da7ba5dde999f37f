"""Moved: Dask arrays are a pool, not a backend; see :mod:`coreselect.pools.dask`.

``from coreselect.backends.dask import from_npy_shards`` keeps working, with a
``DeprecationWarning``; a Dask array given as ``X`` goes to :class:`coreselect.pools.dask.DaskPool`
by itself.
"""

from __future__ import annotations

import warnings

__all__: list[str] = []  # the names are reached through __getattr__ (deprecated)


def __getattr__(name: str):
    if name in ("from_npy_shards", "import_dask", "DaskPool", "DaskRows"):
        warnings.warn("coreselect.backends.dask has moved to coreselect.pools.dask; import "
                      f"{name} from there.", DeprecationWarning, stacklevel=2)
        from ..pools import dask as _pools_dask

        return getattr(_pools_dask, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
