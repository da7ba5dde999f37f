from __future__ import annotations

import numpy as np
import pytest


def make_blobs(n: int = 600, d: int = 4, k: int = 6, spread: float = 0.3, seed: int = 0,
               dtype=np.float64):
    """A Gaussian mixture with well separated centers; returns (X, component)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 10, size=(k, d))
    comp = rng.integers(k, size=n)
    X = means[comp] + rng.normal(0, spread, size=(n, d))
    return X.astype(dtype), comp


@pytest.fixture
def blobs():
    return make_blobs()
