"""Assignment backends: leaves behind one protocol, numpy (the reference) and accelerated ones.

A backend answers one question for a chunk of rows: which center is nearest.
:class:`Backend` is the protocol: ``nearest(x, centers, scale) -> (labels, sq or None)``, with
``x`` the chunk's rows already multiplied by ``scale`` (a power of two, 1.0 almost always),
``centers`` a :class:`coreselect.kernels.CenterSet` and ``sq`` the exact float64 squared
distances to the chosen centers when the backend computes them (None: the kernel does). The
chunk loop, the rescaling, the exact recompute and the progress bar are written once, in
:func:`coreselect.kernels.nearest_centers`; every backend also has ``assign(X, centers, *, z,
chunk_size=None, progress=False) -> (labels, dist)`` on a whole array, through that loop.

Backends import nothing of the pipeline (only :mod:`coreselect.kernels`), and their library
lazily. Registered: "numpy" (the reference), "faiss" (:mod:`.faiss`), "torch"
(:mod:`.torch`, on "cuda" when available) and "auto" (torch on a GPU, else the faster of numpy
and faiss, measured on one block the first time). Where the rows live (in memory, in files,
on a Dask cluster) is a *pool* (:mod:`coreselect.pools`), not a backend.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..kernels import CenterSet, nearest_centers
from .numpy import BackendBase, NumpyBackend

__all__ = ["Backend", "get_backend", "available_backends", "register_backend", "NumpyBackend",
           "AutoBackend", "BackendBase"]


@runtime_checkable
class Backend(Protocol):
    """How the nearest centers of a chunk of rows are computed (see the module docs)."""

    name: str

    def nearest(self, x: np.ndarray, centers: CenterSet,
                scale: float) -> tuple[np.ndarray, np.ndarray | None]:
        ...


class _AssignOnly(BackendBase):
    """A user backend that only has the older ``assign(X, centers, z=...)`` method."""

    def __init__(self, obj):
        self._obj = obj
        self.name = getattr(obj, "name", type(obj).__name__)

    def nearest(self, x, centers, scale):
        lab, _ = self._obj.assign(x, centers.c64 * scale, z=2.0)
        return np.asarray(lab, dtype=np.int64), None


def _faiss_backend():
    from .faiss import FaissBackend

    return FaissBackend()


def _torch_backend():
    from .torch import TorchBackend

    return TorchBackend()


class AutoBackend(BackendBase):
    """torch on a visible GPU; otherwise the faster of numpy and faiss (when installed),
    measured once per (k, d) on one block of rows."""

    name = "auto"

    def __init__(self):
        self._choice: dict[tuple[int, int], object] = {}

    def choose(self, n_centers: int, n_features: int):
        key = (int(n_centers), int(n_features))
        got = self._choice.get(key)
        if got is None:
            got = self._choice[key] = _measure_fastest(*key)
        return got

    def chunk_rows(self, k: int, d: int) -> int:
        be = self.choose(k, d)
        hint = getattr(be, "chunk_rows", None)
        from ..kernels import default_chunk_size

        return int(hint(k, d)) if callable(hint) else default_chunk_size(k, d)

    def nearest(self, x, centers, scale):
        return self.choose(centers.k, centers.d).nearest(x, centers, scale)


def _measure_fastest(k: int, d: int):
    import importlib.util
    import time

    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return _torch_backend()
        except ImportError:  # pragma: no cover
            pass
    if importlib.util.find_spec("faiss") is None:
        return _NUMPY
    try:
        faiss_be = _faiss_backend()
    except ImportError:  # pragma: no cover
        return _NUMPY
    rng = np.random.default_rng(0)
    rows = int(min(16384, max(2048, (64 * 2**20) // (4 * max(k, 1) + 12 * d))))
    X = rng.standard_normal((rows, d), dtype=np.float32)
    C = rng.standard_normal((k, d))
    times = []
    for be in (_NUMPY, faiss_be):
        nearest_centers(X[:256], C, backend=be)  # warm up
        t0 = time.perf_counter()
        nearest_centers(X, C, backend=be)
        times.append(time.perf_counter() - t0)
    # faiss only when clearly faster: numpy is the reference
    return faiss_be if times[1] < 0.9 * times[0] else _NUMPY


_NUMPY = NumpyBackend  # stateless: the class is the backend
_AUTO = AutoBackend()

_REGISTRY: dict[str, object] = {
    "numpy": _NUMPY,
    "faiss": _faiss_backend,
    "torch": _torch_backend,
    "auto": _AUTO,
}


def register_backend(name: str, factory) -> None:
    """Register ``factory`` (a backend, or a callable returning one) under ``name``."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    """Names of the registered backends (whether or not their library is installed)."""
    return sorted(_REGISTRY)


def get_backend(backend=None):
    """Return the backend object for a name (or pass an object through).

    An object with a ``nearest`` method is used as it is; one with only the older
    ``assign(X, centers, z=...)`` method is wrapped (its distances are recomputed exactly).
    """
    if backend is None:
        return _NUMPY
    if not isinstance(backend, str):
        if callable(getattr(backend, "nearest", None)):
            return backend
        if not callable(getattr(backend, "assign", None)):
            raise TypeError(f"backend must be a name or have an assign method; got {backend!r}.")
        return _AssignOnly(backend)
    try:
        factory = _REGISTRY[backend]
    except KeyError:
        raise ValueError(
            f"backend must be one of {available_backends()}; got {backend!r}."
        ) from None
    return factory() if callable(factory) and not hasattr(factory, "assign") else factory
