"""Margin, least confidence and entropy: hand-made matrices, ties, exclusion and validation."""

from __future__ import annotations

import numpy as np
import pytest

from coreselect.baselines import entropy, least_confidence, margin
from coreselect.baselines.uncertainty import uncertainty_scores

STRATEGIES = {"margin": margin, "least_confidence": least_confidence, "entropy": entropy}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_hand_made_matrix():
    probs = np.array([
        [0.98, 0.01, 0.01],  # 0: confident
        [0.40, 0.35, 0.25],  # 1: margin 0.05, max 0.40, entropy 1.0805
        [0.34, 0.33, 0.33],  # 2: margin 0.01, max 0.34, entropy 1.0986 (near uniform)
        [0.50, 0.50, 0.00],  # 3: margin 0.00, max 0.50, entropy 0.6931
        [0.60, 0.20, 0.20],  # 4: margin 0.40, max 0.60, entropy 0.9503
    ])
    assert margin(probs, 3).indices.tolist() == [3, 2, 1]
    assert least_confidence(probs, 3).indices.tolist() == [2, 1, 3]
    assert entropy(probs, 3).indices.tolist() == [2, 1, 4]
    np.testing.assert_allclose(
        uncertainty_scores(probs, "entropy"),
        [-(p[p > 0] * np.log(p[p > 0])).sum() for p in probs],
    )
    np.testing.assert_allclose(uncertainty_scores(probs, "least_confidence"),
                               [0.02, 0.6, 0.66, 0.5, 0.4])
    np.testing.assert_allclose(uncertainty_scores(probs, "margin"),
                               [-0.97, -0.05, -0.01, 0.0, -0.4], atol=1e-12)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_selection_fields(name):
    probs = softmax(np.random.default_rng(0).normal(size=(50, 4)))
    sel = STRATEGIES[name](probs, 10, seed=0)
    assert sel.method == name and sel.n == 50 and not sel.replace
    np.testing.assert_allclose(sel.weights, 5.0)
    np.testing.assert_allclose(sel.probabilities, 0.2)
    assert len(set(sel.indices.tolist())) == 10
    assert sel.diagnostics["score_max"] >= sel.diagnostics["score_min"]


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("seed", range(5))
def test_selects_the_top_scores_in_order(name, seed):
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(300, 6)) * 2).astype(np.float32)
    sel = STRATEGIES[name](probs, 40, seed=seed)
    scores = uncertainty_scores(probs, name)
    chosen = scores[sel.indices]
    rest = np.delete(scores, sel.indices)
    assert chosen.min() >= rest.max()
    assert np.all(np.diff(chosen) <= 0)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_ties_are_broken_by_the_seed(name):
    # rows 1..6 are the same distribution with the classes permuted: equal scores
    base = np.array([0.5, 0.3, 0.2])
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    probs = np.vstack([[0.9, 0.05, 0.05]] + [base[list(p)] for p in perms] + [[0.9, 0.1, 0.0]])
    scores = uncertainty_scores(probs, name)
    assert np.all(scores[1:7] == scores[1])
    seen = set()
    for seed in range(30):
        sel = STRATEGIES[name](probs, 3, seed=seed)
        assert set(sel.indices.tolist()) <= set(range(1, 7))
        assert sel.indices.tolist() == STRATEGIES[name](probs, 3, seed=seed).indices.tolist()
        seen.add(tuple(sel.indices.tolist()))
    assert len(seen) > 10  # different seeds break the tie differently
    # with every row selected, the order is still by score
    full = STRATEGIES[name](probs, 8, seed=0).indices.tolist()
    assert set(full[:6]) == set(range(1, 7))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_exclude(name):
    probs = softmax(np.random.default_rng(1).normal(size=(40, 3)))
    top = STRATEGIES[name](probs, 5, seed=0).indices
    sel = STRATEGIES[name](probs, 5, seed=0, exclude=top[:2])
    assert not set(top[:2].tolist()) & set(sel.indices.tolist())
    assert sel.indices[:3].tolist() == top[2:].tolist()
    np.testing.assert_allclose(sel.weights, 38 / 5)
    with pytest.raises(ValueError, match="size must be at most n=38"):
        STRATEGIES[name](probs, 39, exclude=[0, 1])
    with pytest.raises(ValueError, match="exclude covers all n=40 rows"):
        STRATEGIES[name](probs, 1, exclude=np.arange(40))


def test_invalid_probabilities_are_rejected():
    good = np.array([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match="rows must sum to 1 .*row 1 sums to 1.1"):
        margin(np.array([[0.5, 0.5], [0.3, 0.8]]), 1)
    bad = good.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="probs contains NaN at row 1, column 0"):
        entropy(bad, 1)
    with pytest.raises(ValueError, match="probs must lie in"):
        least_confidence(np.array([[1.5, -0.5]]), 1)
    with pytest.raises(ValueError, match="at least 2 columns"):
        margin(np.ones((3, 1)), 1)
    with pytest.raises(ValueError, match="2-D array"):
        margin(np.array([0.5, 0.5]), 1)
    with pytest.raises(TypeError, match="must hold numbers"):
        margin(np.array([["a", "b"]]), 1)
    with pytest.raises(ValueError, match="size must be at most n=2"):
        margin(good, 3)
    with pytest.raises(ValueError, match="kind must be one of"):
        uncertainty_scores(good, "variance")
    # rounding within the tolerance is accepted (float32 softmax output)
    near = np.array([[0.50004, 0.5], [0.2, 0.8]])
    assert margin(near, 1).indices.tolist() == [0]


def test_float32_and_list_input_agree():
    probs = softmax(np.random.default_rng(2).normal(size=(30, 5)))
    a = entropy(probs, 7, seed=0).indices
    b = entropy(probs.astype(np.float32), 7, seed=0).indices
    c = entropy(probs.tolist(), 7, seed=0).indices
    assert a.tolist() == b.tolist() == c.tolist()
