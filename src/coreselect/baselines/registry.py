"""Every selection strategy by name, behind one calling convention.

Experiments and the command line ask for a strategy by name::

    select = get_strategy("kcenter")
    sel = select(size, X=X, probs=probs, oracle=oracle, labelled=labelled, seed=seed, **options)

The convention: ``size`` first; then keyword-only inputs, of which each strategy uses the
ones it needs (``STRATEGIES[name]["requires"]``) and ignores the others:

- ``X``: (n, d) embeddings (k-center, BADGE's penultimate layer, Cluster-Margin's
  clustering, sensitivity, leverage);
- ``probs``: (n, C) class probabilities of the current model (margin, least confidence,
  entropy, BADGE, Cluster-Margin);
- ``oracle``: ``oracle(indices) -> losses`` (sensitivity);
- ``n``: the pool size, for uniform when neither ``X`` nor ``probs`` is given;
- ``labelled``: rows already labelled (distinct, in ``[0, n)``, not all of them; checked
  here, with errors that name ``labelled``). They are never selected again; k-center treats
  them as centers; sensitivity neither queries nor draws them;
- ``seed``: None, an int or a Generator;
- ``**options``: passed to the strategy's function (``replace``, ``outliers``,
  ``n_clusters``, ``margin_multiple``, ``chunk_size``, ...).

``size`` is the number of new labels, the same for every strategy: ``size`` distinct rows,
none of them in ``labelled``; for ``"sensitivity"`` the queried centers count (``size - k``
rows drawn without replacement besides the ``k`` centers); ``"leverage"`` draws ``size``
distinct rows (``replace=False``) unless ``replace=True`` is passed.

Every strategy returns a :class:`coreselect.Selection` whose ``method`` is its name.

Active learning in rounds (select -> label -> retrain) is a short loop over a strategy and
:func:`coreselect.ask_oracle` with a :class:`coreselect.LossCache`, which asks each label
once (``LossCache("labels.csv")`` keeps the answers on disk, so a stopped loop goes on
without asking again):

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from coreselect import LossCache, ask_oracle
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 5))
>>> y = (X[:, 0] + X[:, 1] > 0).astype(int)      # what the person who labels would say
>>> cache = LossCache()
>>> ask = lambda rows: ask_oracle(lambda i: y[i], rows, cache=cache).astype(int)
>>> labelled = rng.choice(500, 20, replace=False)  # the warm start
>>> ask(labelled).shape
(20,)
>>> select = get_strategy("cluster_margin")
>>> for r in range(3):
...     model = LogisticRegression().fit(X[labelled], ask(labelled))  # from the cache
...     sel = select(20, X=X, probs=model.predict_proba(X), labelled=labelled, seed=r)
...     _ = ask(sel.indices)                          # the round's 20 new labels
...     labelled = np.concatenate([labelled, sel.indices])
>>> len(cache), np.unique(labelled).size          # 80 labels, each asked once
(80, 80)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .._validation import check_exclude, check_positive_int
from ..selection import Selection

__all__ = ["STRATEGIES", "get_strategy"]

STRATEGIES: dict[str, dict] = {
    "uniform": {
        "description": "uniform random rows, weights N/s (unbiased)",
        "requires": ("n",),
        "function": "coreselect.baselines.uniform",
    },
    "kcenter": {
        "description": "k-center greedy core-set (Sener & Savarese 2018): farthest row first",
        "requires": ("X",),
        "function": "coreselect.baselines.k_center_greedy",
    },
    "margin": {
        "description": "smallest gap between the two most likely classes",
        "requires": ("probs",),
        "function": "coreselect.baselines.margin",
    },
    "least_confidence": {
        "description": "lowest probability of the most likely class",
        "requires": ("probs",),
        "function": "coreselect.baselines.least_confidence",
    },
    "entropy": {
        "description": "highest entropy of the class probabilities",
        "requires": ("probs",),
        "function": "coreselect.baselines.entropy",
    },
    "badge": {
        "description": "BADGE (Ash et al. 2020): k-means++ on gradient embeddings",
        "requires": ("probs", "X"),
        "function": "coreselect.baselines.badge",
    },
    "cluster_margin": {
        "description": "Cluster-Margin (Citovsky et al. 2021): lowest-margin rows, round-robin "
                       "over their k-means clusters, smallest first",
        "requires": ("probs", "X"),
        "function": "coreselect.baselines.cluster_margin",
    },
    "sensitivity": {
        "description": "sensitivity sampling (Algorithm 1): loss at k centers, then weighted draws",
        "requires": ("X", "oracle"),
        "function": "coreselect.sensitivity_sample",
    },
    "leverage": {
        "description": "leverage-score sampling of the rows of a regression design matrix",
        "requires": ("X",),
        "function": "coreselect.baselines.leverage_sample",
    },
}

_ALIASES = {
    "k_center_greedy": "kcenter",
    "k_center": "kcenter",
    "coreset": "kcenter",
    "sensitivity_sample": "sensitivity",
    "leverage_sample": "leverage",
    "cluster-margin": "cluster_margin",
    "clustermargin": "cluster_margin",
}

_INPUT_HELP = {
    "X": "X (an (n, d) embedding matrix)",
    "probs": "probs (an (n, C) class-probability matrix)",
    "oracle": "oracle (a callable indices -> losses)",
}


def _need(name: str, inputs: dict, *keys: str) -> None:
    for key in keys:
        if inputs.get(key) is None:
            raise ValueError(f"strategy {name!r} needs {_INPUT_HELP[key]}; got None.")


def _function(name: str) -> Callable:
    module, _, attr = STRATEGIES[name]["function"].rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _pool_size(n, X, probs, name: str = "uniform") -> int:
    for arr in (X, probs):
        if arr is not None:
            shape = getattr(arr, "shape", None)
            return int(shape[0]) if shape is not None else len(arr)
    if n is None:
        raise ValueError(
            f"strategy {name!r} needs the pool size: pass n, X or probs; got none of them."
        )
    return n


def _make(name: str) -> Callable[..., Selection]:
    fn = _function(name)

    def select(size: int, *, X=None, probs=None, oracle=None, n=None, labelled=None,
               seed=None, **options) -> Selection:
        inputs = {"X": X, "probs": probs, "oracle": oracle}
        for key in STRATEGIES[name]["requires"]:
            if key in inputs and not (key == "X" and options.get("clusters") is not None):
                _need(name, inputs, key)
        pool_n = _pool_size(n, X, probs, name)
        if "probs" in STRATEGIES[name]["requires"] and X is not None and probs is not None:
            rows = [int(getattr(a, "shape", (len(a),))[0]) for a in (X, probs)]
            if rows[0] != rows[1]:
                raise ValueError(f"X and probs must have one row per pool row; got {rows[0]} "
                                 f"rows in X and {rows[1]} in probs.")
        labelled = check_exclude(labelled, pool_n, name="labelled")
        if options.get("replace") is not True:  # size distinct new rows
            size = check_positive_int(size, "size")
            free = pool_n - (0 if labelled is None else labelled.shape[0])
            if size > free:
                raise ValueError(
                    f"size must be at most the {free} rows not labelled (n={pool_n}, "
                    f"{pool_n - free} labelled); got {size}.")
        if name == "uniform":
            return fn(pool_n, size, seed=seed, exclude=labelled, **options)
        if name == "kcenter":
            return fn(X, size, initial=labelled, seed=seed, **options)
        if name in ("margin", "least_confidence", "entropy"):
            return fn(probs, size, seed=seed, exclude=labelled, **options)
        if name in ("badge", "cluster_margin"):
            return fn(probs, X, size, seed=seed, exclude=labelled, **options)
        if name == "sensitivity":
            return _sensitivity(size, X, probs, oracle, labelled, seed, options)
        # leverage: size distinct new rows unless replace=True is asked for
        options.setdefault("replace", False)
        return fn(X, size, seed=seed, exclude=labelled, **options)

    select.__name__ = f"select_{name}"
    select.__qualname__ = select.__name__
    select.__doc__ = (
        f"Strategy {name!r}: {STRATEGIES[name]['description']}.\n\n"
        f"Calls ``{STRATEGIES[name]['function']}`` with the common convention of "
        "``coreselect.baselines.registry``; returns a Selection."
    )
    return select


# options of the sample step (the rest configure the fit)
_SAMPLE_OPTIONS = ("lam", "replace", "mix", "design", "surrogate", "proposal_power")
_ORACLE_OPTIONS = ("batch_size", "cache", "progress")


def _sensitivity(size, X, probs, oracle, labelled, seed, options) -> Selection:
    """size new labels in all: the k queried rows and size - k distinct rows drawn, none of
    them labelled already; k is what the fit placed (fewer than n_clusters on a pool with
    fewer distinct rows). With ``probs`` and no ``surrogate=``: a training set, drawn in
    proportion to ``margin_uncertainty(probs) ** TRAINING_PROPOSAL_POWER`` (the measured
    best, ``docs/which-method.md``); ``proposal_power=None`` (or ``design="stratified"``)
    instead uses the calibrated expected cross-entropy (the lowest-variance estimate of the
    loss)."""
    from .._validation import check_random_state
    from ..oracle import ask_oracle
    from ..sampler import SensitivitySampler
    from ..surrogates import (
        TRAINING_PROPOSAL_POWER,
        expected_cross_entropy,
        margin_uncertainty,
    )

    size = int(size)
    options = dict(options)
    n_clusters = options.pop("n_clusters", max(1, size // 5))
    options.setdefault("replace", False)
    if size <= n_clusters:
        raise ValueError(
            f"strategy 'sensitivity' spends size={size} new labels on "
            f"n_clusters={n_clusters} queried rows and the draws; size must exceed n_clusters.")
    draw = {k: options.pop(k) for k in _SAMPLE_OPTIONS if k in options}
    ask = {k: options.pop(k) for k in _ORACLE_OPTIONS if k in options}
    if draw.get("surrogate") is None and probs is not None:
        if "proposal_power" not in draw and draw.get("design") != "stratified":
            draw["proposal_power"] = TRAINING_PROPOSAL_POWER
        draw["surrogate"] = (expected_cross_entropy(probs) if draw.get("proposal_power") is None
                             else margin_uncertainty(probs))
    rng = check_random_state(seed)
    sampler = SensitivitySampler(n_clusters, seed=rng, design=draw.get("design", "auto"),
                                 progress=ask.get("progress", False), **options)
    sampler.fit(X, exclude=labelled)
    q = sampler.query_indices_
    losses = ask_oracle(oracle, q, batch_size=ask.get("batch_size", 1024),
                        cache=ask.get("cache"), progress=ask.get("progress", False),
                        state=sampler)
    return sampler.sample(losses, size - q.shape[0], **draw)  # validates the draw options


def get_strategy(name: str) -> Callable[..., Selection]:
    """The selection strategy called ``name``, with the common calling convention.

    Parameters
    ----------
    name : str
        A key of :data:`STRATEGIES` (``"uniform"``, ``"kcenter"``, ``"margin"``,
        ``"least_confidence"``, ``"entropy"``, ``"badge"``, ``"cluster_margin"``,
        ``"sensitivity"``, ``"leverage"``) or an alias (``"k_center_greedy"``, ``"sensitivity_sample"``, ...).

    Returns
    -------
    callable
        ``select(size, *, X=None, probs=None, oracle=None, n=None, labelled=None, seed=None,
        **options) -> Selection`` (see the module docstring). For ``"sensitivity"``,
        ``n_clusters`` defaults to ``max(1, size // 5)`` (the paper's k'' = 0.2 k).

    Examples
    --------
    >>> import numpy as np
    >>> select = get_strategy("kcenter")
    >>> X = np.array([[0.0], [1.0], [5.0], [9.0]])
    >>> select(1, X=X, labelled=[0]).indices.tolist()
    [3]
    >>> get_strategy("uniform")(2, n=10, seed=0).method
    'uniform'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__} {name!r}.")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in STRATEGIES:
        raise ValueError(f"name must be one of {sorted(STRATEGIES)}; got {name!r}.")
    return _make(key)
