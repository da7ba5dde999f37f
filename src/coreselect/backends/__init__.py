"""Assignment backends: numpy (the reference) and optional accelerated ones.

A backend is an object with ``name`` and ``assign(X, centers, *, z, chunk_size=None,
progress=False) -> (labels, dist)`` that returns what :func:`coreselect.assign.assign`
returns. Only the backend modules import their library, lazily.
"""

from __future__ import annotations

from .. import assign as _assign_mod

__all__ = ["get_backend", "available_backends", "register_backend", "NumpyBackend"]


class NumpyBackend:
    """The reference backend: chunked float32 GEMM with exact float64 distances."""

    name = "numpy"

    @staticmethod
    def assign(X, centers, *, z=2.0, chunk_size=None, progress=False):
        return _assign_mod.assign(X, centers, z=z, chunk_size=chunk_size, progress=progress)


_REGISTRY: dict[str, object] = {"numpy": NumpyBackend}


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
