"""Readers and locators for the data sets of the paper's experiments.

Image sets (:mod:`coreselect.datasets.images`): Fashion-MNIST, MNIST, CIFAR-10, read from
their official file formats. Regression tables (:mod:`coreselect.datasets.regression`).
Names are imported lazily.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "read_idx": ".images",
    "load_fashion_mnist": ".images",
    "load_mnist": ".images",
    "load_cifar10": ".images",
    "read_cifar10_binary": ".images",
    "DatasetNotFoundError": ".images",
    "load_diamonds": ".regression",
    "load_randhie": ".regression",
    "load_cps1988": ".regression",
    "load_gas_sensor": ".regression",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'coreselect.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
