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


# Hypothesis profiles (tests/test_properties.py): "ci" is the default of `make test`, few
# examples and derandomized, so that the suite is fast and gives the same verdict every run;
# "thorough" (`make test-all`, or `--hypothesis-profile=thorough`) explores many more, at
# random. Hypothesis is in the dev extra; without it only the property tests are missing.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    pass
else:
    settings.register_profile(
        "ci", max_examples=20, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
    settings.register_profile(
        "thorough", max_examples=300, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _no_inherited_thread_pools():
    """Under ``make mutation`` (mutmut sets MUTANT_UNDER_TEST), each mutant runs in a worker
    forked from a process that already ran the tests: a thread pool made there (Dask's
    threaded scheduler) lost its threads in the fork, and a task given to it would wait
    forever. There Dask computes in the calling thread instead."""
    import os
    import sys

    if not os.environ.get("MUTANT_UNDER_TEST") or "dask" not in sys.modules:
        yield
        return
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield
