"""Uniform sampling, the strategy registry and the baselines package's public names."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import coreselect as cs
from coreselect import Selection
from coreselect.baselines import STRATEGIES, get_strategy, uniform


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------- uniform
def test_uniform_without_replacement():
    sel = uniform(50, 10, seed=0)
    assert isinstance(sel, Selection) and sel.method == "uniform" and not sel.replace
    assert len(set(sel.indices.tolist())) == 10
    assert sel.indices.min() >= 0 and sel.indices.max() < 50
    np.testing.assert_array_equal(sel.weights, 5.0)
    np.testing.assert_array_equal(sel.probabilities, 0.2)
    assert sel.indices.tolist() == uniform(50, 10, seed=0).indices.tolist()
    assert sorted(uniform(7, 7, seed=1).indices.tolist()) == list(range(7))


def test_uniform_with_replacement():
    sel = uniform(4, 100, seed=0, replace=True)
    assert sel.replace and sel.size == 100
    np.testing.assert_array_equal(sel.weights, 0.04)
    np.testing.assert_array_equal(sel.probabilities, 0.25)
    assert set(sel.indices.tolist()) == {0, 1, 2, 3}


def test_uniform_exclude():
    sel = uniform(10, 8, seed=0, exclude=[2, 5])
    assert sorted(sel.indices.tolist()) == [0, 1, 3, 4, 6, 7, 8, 9]
    np.testing.assert_array_equal(sel.weights, 1.0)
    np.testing.assert_array_equal(sel.probabilities, 1.0)
    with pytest.raises(ValueError, match="size must be at most n=8"):
        uniform(10, 9, exclude=[2, 5])
    with pytest.raises(ValueError, match=r"exclude must lie in \[0, 10\); got -1"):
        uniform(10, 2, exclude=[-1])


@pytest.mark.parametrize("replace", [False, True])
def test_uniform_estimate_is_unbiased(replace):
    loss = np.random.default_rng(0).exponential(size=200)
    est = [uniform(200, 20, seed=s, replace=replace).estimate_total(loss).value
           for s in range(2000)]
    # 2000 repetitions: the mean is within ~4 standard errors of the truth
    assert abs(np.mean(est) - loss.sum()) < 4 * np.std(est) / np.sqrt(len(est))


def test_uniform_errors():
    with pytest.raises(ValueError, match="size must be at most n=5"):
        uniform(5, 6)
    with pytest.raises(ValueError, match="n must be an int >= 1; got 0"):
        uniform(0, 1)
    with pytest.raises(TypeError, match="n must be an int"):
        uniform(5.5, 1)
    with pytest.raises(ValueError, match="size must be an int"):
        uniform(5, 0, replace=True)


# ------------------------------------------------------------------------------ registry
@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    probs = softmax(rng.normal(size=(120, 3)))
    loss = (X ** 2).sum(axis=1)
    return X, probs, loss


NAMES = ["uniform", "kcenter", "margin", "least_confidence", "entropy", "badge", "sensitivity"]


def test_registry_lists_every_strategy():
    assert set(NAMES) <= set(STRATEGIES)
    for name, entry in STRATEGIES.items():
        assert entry["description"] and isinstance(entry["requires"], tuple)
        assert set(entry["requires"]) <= {"n", "X", "probs", "oracle"}, name


@pytest.mark.parametrize("name", NAMES)
def test_common_calling_convention(name, pool):
    X, probs, loss = pool
    select = get_strategy(name)
    sel = select(12, X=X, probs=probs, oracle=loss.__getitem__, seed=0)
    assert isinstance(sel, Selection) and sel.method == name and sel.n == 120
    # size new labels, the queried centers included (DESIGN.md's registry contract)
    assert np.union1d(sel.indices, sel.query_indices).size == 12
    again = select(12, X=X, probs=probs, oracle=loss.__getitem__, seed=0)
    assert sel.indices.tolist() == again.indices.tolist()
    assert select.__doc__ and name in select.__doc__


@pytest.mark.parametrize("name", ["uniform", "kcenter", "margin", "least_confidence",
                                  "entropy", "badge"])
def test_labelled_rows_are_never_selected(name, pool):
    X, probs, _ = pool
    labelled = np.arange(0, 120, 2)
    sel = get_strategy(name)(60, X=X, probs=probs, labelled=labelled, seed=1)
    assert sorted(sel.indices.tolist()) == list(range(1, 120, 2))


def test_registry_matches_the_functions(pool):
    X, probs, _ = pool
    assert (get_strategy("kcenter")(5, X=X, labelled=[3]).indices.tolist()
            == cs.baselines.k_center_greedy(X, 5, initial=[3]).indices.tolist())
    assert (get_strategy("margin")(5, probs=probs, seed=2).indices.tolist()
            == cs.baselines.margin(probs, 5, seed=2).indices.tolist())
    assert (get_strategy("uniform")(5, probs=probs, seed=2).indices.tolist()
            == uniform(120, 5, seed=2).indices.tolist())
    # options pass through; sensitivity's n_clusters defaults to size // 5
    sel = get_strategy("kcenter")(5, X=X, labelled=[3], outliers=1)
    assert sel.params["outliers"] == 1
    sel = get_strategy("sensitivity")(20, X=X, oracle=lambda i: np.ones(len(i)), seed=0)
    assert sel.n_queries == 4
    assert get_strategy("k_center_greedy")(3, X=X, seed=0).method == "kcenter"
    assert get_strategy("Sensitivity_Sample") is not None


def test_registry_errors(pool):
    X, probs, _ = pool
    with pytest.raises(ValueError, match="name must be one of .*got 'coresett'"):
        get_strategy("coresett")
    with pytest.raises(TypeError, match="name must be a str"):
        get_strategy(3)
    with pytest.raises(ValueError, match=r"strategy 'margin' needs probs \(an \(n, C\)"):
        get_strategy("margin")(3, X=X)
    with pytest.raises(ValueError, match=r"strategy 'badge' needs X"):
        get_strategy("badge")(3, probs=probs)
    with pytest.raises(ValueError, match=r"strategy 'sensitivity' needs oracle"):
        get_strategy("sensitivity")(3, X=X)
    with pytest.raises(ValueError, match=r"labelled must lie in \[0, 120\); got 120"):
        get_strategy("leverage")(3, X=X, labelled=[120])
    with pytest.raises(ValueError, match="needs the pool size"):
        get_strategy("uniform")(3)


def test_leverage_through_the_registry():
    # a contract name (DESIGN.md): a missing module or function must fail here, not skip
    from coreselect.baselines import leverage_sample
    from coreselect.baselines.leverage import leverage_scores

    assert cs.baselines.leverage_sample is leverage_sample
    A = np.random.default_rng(0).normal(size=(200, 3))
    sel = get_strategy("leverage")(20, X=A, seed=0)
    assert isinstance(sel, Selection) and sel.n == 200 and sel.method == "leverage"
    assert sel.size == 20 and np.all((sel.indices >= 0) & (sel.indices < 200))
    # the registry calls leverage_sample itself, without replacement (size new labels):
    # same seed, same draw, and inclusion probabilities pi = min(1, c h)
    assert np.unique(sel.indices).size == 20 and not sel.replace
    direct = leverage_sample(A, 20, seed=0, replace=False)
    np.testing.assert_array_equal(sel.indices, direct.indices)
    h = leverage_scores(A)
    np.testing.assert_allclose(sel.probabilities, np.minimum(1.0, 20 * h[sel.indices] / h.sum()))
    alias = get_strategy("leverage_sample")(20, X=A, seed=0)
    np.testing.assert_array_equal(alias.indices, direct.indices)
    # i.i.d. draws when asked for
    iid = get_strategy("leverage")(20, X=A, seed=0, replace=True)
    np.testing.assert_array_equal(iid.indices, leverage_sample(A, 20, seed=0).indices)
    np.testing.assert_allclose(iid.probabilities, h[iid.indices] / h.sum())


# --------------------------------------------------------------------------- public names
def test_every_public_name_exists_and_is_documented():
    for name in cs.baselines.__all__:
        obj = getattr(cs.baselines, name)
        if callable(obj):
            assert inspect.getdoc(obj), name
            assert not inspect.ismodule(obj), name
    assert cs.baselines.uniform is uniform and callable(cs.baselines.badge)
