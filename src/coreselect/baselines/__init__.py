"""Baseline selection strategies; every one returns a :class:`coreselect.Selection`.

Names are imported lazily from their modules, so that importing coreselect stays cheap.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "uniform": ".uniform",
    "k_center_greedy": ".kcenter",
    "margin": ".uncertainty",
    "least_confidence": ".uncertainty",
    "entropy": ".uncertainty",
    "badge": ".badge",
    "cluster_margin": ".cluster_margin",
    "leverage_scores": ".leverage",
    "sketched_leverage_scores": ".leverage",
    "leverage_sample": ".leverage",
    "get_strategy": ".registry",
    "STRATEGIES": ".registry",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'coreselect.baselines' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))


# These submodules share their function's name: importing one (from any module) would leave
# the module object under that name, so the functions are bound now (all are light).
from .badge import badge  # noqa: E402, F401
from .cluster_margin import cluster_margin  # noqa: E402, F401
from .uniform import uniform  # noqa: E402, F401
