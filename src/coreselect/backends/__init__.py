"""Assignment backends: numpy (the reference) and optional accelerated ones.

A backend is an object with ``name`` and ``assign(X, centers, *, z, chunk_size=None,
progress=False) -> (labels, dist)`` that returns what :func:`coreselect.assign.assign`
returns. Only the backend modules import their library, lazily. Registered: "numpy" (the
reference), "faiss" (:mod:`.faiss`), "torch" (:mod:`.torch`, on "cuda" when available),
"dask" (:mod:`.dask`; a Dask array given as X goes there by itself) and "auto" (torch on a
GPU, else the faster of numpy and faiss, measured on one block the first time).
"""

from __future__ import annotations

from .. import assign as _assign_mod

__all__ = ["get_backend", "available_backends", "register_backend", "NumpyBackend", "AutoBackend"]


class NumpyBackend:
    """The reference backend: chunked float32 GEMM with exact float64 distances."""

    name = "numpy"

    @staticmethod
    def assign(X, centers, *, z=2.0, chunk_size=None, progress=False):
        return _assign_mod.assign(X, centers, z=z, chunk_size=chunk_size, progress=progress)


def _faiss_backend():
    from .faiss import FaissBackend

    return FaissBackend()


def _torch_backend():
    from .torch import TorchBackend

    return TorchBackend()


def _dask_backend():
    from .dask import DaskBackend

    return DaskBackend()


class AutoBackend:
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

    def assign(self, X, centers, *, z=2.0, chunk_size=None, progress=False):
        be = self.choose(centers.shape[0], X.shape[1])
        return be.assign(X, centers, z=z, chunk_size=chunk_size, progress=progress)


def _measure_fastest(k: int, d: int):
    import importlib.util
    import time

    import numpy as np

    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return _torch_backend()
        except ImportError:  # pragma: no cover
            pass
    if importlib.util.find_spec("faiss") is None:
        return NumpyBackend
    try:
        faiss_be = _faiss_backend()
    except ImportError:  # pragma: no cover
        return NumpyBackend
    rng = np.random.default_rng(0)
    rows = int(min(16384, max(2048, (64 * 2**20) // (4 * max(k, 1) + 12 * d))))
    X = rng.standard_normal((rows, d), dtype=np.float32)
    C = rng.standard_normal((k, d))
    times = []
    for be in (NumpyBackend, faiss_be):
        be.assign(X[:256], C)  # warm up
        t0 = time.perf_counter()
        be.assign(X, C)
        times.append(time.perf_counter() - t0)
    # faiss only when clearly faster: numpy is the reference
    return faiss_be if times[1] < 0.9 * times[0] else NumpyBackend


_AUTO = AutoBackend()

_REGISTRY: dict[str, object] = {
    "numpy": NumpyBackend,
    "faiss": _faiss_backend,
    "torch": _torch_backend,
    "dask": _dask_backend,
    "auto": _AUTO,
}


def register_backend(name: str, factory) -> None:
    """Register ``factory`` (a backend, or a callable returning one) under ``name``."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    """Names of the registered backends (whether or not their library is installed)."""
    return sorted(_REGISTRY)


def get_backend(backend=None):
    """Return the backend object for a name (or pass an object through)."""
    if backend is None:
        return NumpyBackend
    if not isinstance(backend, str):
        if not callable(getattr(backend, "assign", None)):
            raise TypeError(f"backend must be a name or have an assign method; got {backend!r}.")
        return backend
    try:
        factory = _REGISTRY[backend]
    except KeyError:
        raise ValueError(
            f"backend must be one of {available_backends()}; got {backend!r}."
        ) from None
    return factory() if callable(factory) and not hasattr(factory, "assign") else factory
