"""coreselect: coreset-based data selection by sensitivity sampling.

Pick which rows of a large pool to label or train on, with weights, after running the model
on very few of them; estimate the pool's total loss with an interval.

Examples
--------
>>> import numpy as np
>>> import coreselect as cs
>>> X = np.random.default_rng(0).normal(size=(500, 4))
>>> loss = np.abs(X[:, 0])
>>> sel = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=10, seed=1)
>>> sel.params["design"], sel.n_queries, len(sel)   # the 10 queried rows + 50 new ones
('stratified', 10, 60)
"""

from __future__ import annotations

from . import baselines, surrogates
from ._version import __version__
from .adaptive import adaptive_sample
from .clustering import Clustering, kz_clustering
from .oracle import LossCache, OracleError, ask_oracle
from .regression import RegressionSelection, regression_sample
from .sampler import SensitivitySampler, sensitivity_sample
from .selection import Estimate, Selection

__all__ = [
    "surrogates",
    "sensitivity_sample",
    "SensitivitySampler",
    "adaptive_sample",
    "regression_sample",
    "RegressionSelection",
    "Selection",
    "Estimate",
    "kz_clustering",
    "Clustering",
    "ask_oracle",
    "LossCache",
    "OracleError",
    "baselines",
    "__version__",
]
