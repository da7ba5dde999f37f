"""Cluster-Margin: hand-made margins and clusters, the round-robin order, exclusion, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from coreselect import Selection, kz_clustering
from coreselect.baselines import cluster_margin, get_strategy, margin
from coreselect.baselines.cluster_margin import round_robin


def _two_class(margins):
    """Two-class probabilities whose margin |p1 - p0| is ``margins``."""
    m = np.asarray(margins, dtype=float)
    return np.column_stack([(1 + m) / 2, (1 - m) / 2])


# 14 rows in four well-separated clusters of the plane:
#   A: rows 0-4 (margins 0.00-0.04, the five smallest), B: rows 5-7, C: rows 8-10, D: 11-13.
# The candidates (m = 8 lowest margins): A's five rows, and one row each of B (5), C (8), D (11).
MARGINS = [0.00, 0.01, 0.02, 0.03, 0.04,   # A
           0.10, 0.60, 0.70,               # B
           0.11, 0.65, 0.75,               # C
           0.12, 0.68, 0.80]               # D
CLUSTERS = np.array([0] * 5 + [1] * 3 + [2] * 3 + [3] * 3)
CENTERS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    X = CENTERS[CLUSTERS] + rng.normal(0, 0.1, (14, 2))
    return _two_class(MARGINS), X


def test_hand_made_case_smallest_clusters_first(case):
    probs, X = case
    # size 3: round 1 visits the three one-candidate clusters first (B, C, D) and never
    # reaches A, whose rows have the smallest margins; plain margin takes three rows of A
    for seed in range(5):
        sel = cluster_margin(probs, None, 3, margin_multiple=8 / 3, clusters=CLUSTERS, seed=seed)
        assert sorted(sel.indices.tolist()) == [5, 8, 11]
    assert sorted(margin(probs, 3).indices.tolist()) == [0, 1, 2]
    # size 5: round 1 is B, C, D then one row of A; round 2 only A has rows left
    sel = cluster_margin(probs, None, 5, margin_multiple=8 / 5, clusters=CLUSTERS, seed=0)
    assert sorted(sel.indices[:3].tolist()) == [5, 8, 11]
    assert set(sel.indices[3:].tolist()) <= {0, 1, 2, 3, 4}
    assert np.unique(sel.indices).size == 5
    # size 8 = every candidate
    sel = cluster_margin(probs, None, 8, margin_multiple=1, clusters=CLUSTERS, seed=0)
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3, 4, 5, 8, 11]


def test_hand_made_case_with_its_own_k_means(case):
    probs, X = case
    for seed in range(5):
        sel = cluster_margin(probs, X, 3, margin_multiple=8 / 3, n_clusters=4, seed=seed)
        assert sorted(sel.indices.tolist()) == [5, 8, 11]
        assert sel.diagnostics["candidate_clusters"] == 4
    # a Clustering passes as clusters too
    cl = kz_clustering(X, 4, seed=0)
    sel = cluster_margin(probs, None, 3, margin_multiple=8 / 3, clusters=cl, seed=0)
    assert sorted(sel.indices.tolist()) == [5, 8, 11]


def test_selection_fields_like_margin(case):
    probs, X = case
    sel = cluster_margin(probs, X, 4, n_clusters=4, seed=0, exclude=[0, 1])
    ref = margin(probs, 4, exclude=[0, 1])
    assert isinstance(sel, Selection) and sel.method == "cluster_margin" and sel.n == 14
    np.testing.assert_array_equal(sel.weights, ref.weights)  # nominal: N / size = 12 / 4
    np.testing.assert_array_equal(sel.probabilities, ref.probabilities)
    assert sel.params["n_candidates"] == 12 and sel.params["n_excluded"] == 2
    again = cluster_margin(probs, X, 4, n_clusters=4, seed=0, exclude=[0, 1])
    assert sel.indices.tolist() == again.indices.tolist()


def test_labelled_rows_are_never_candidates(case):
    probs, X = case
    # A's rows labelled: the candidates are the next lowest margins, one per cluster first
    sel = cluster_margin(probs, None, 3, margin_multiple=1, clusters=CLUSTERS, seed=0,
                         exclude=[0, 1, 2, 3, 4])
    assert sorted(sel.indices.tolist()) == [5, 8, 11]
    sel = get_strategy("cluster_margin")(9, X=X, probs=probs, labelled=[0, 1, 2, 3, 4],
                                         n_clusters=4, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(5, 14))


def test_margin_multiple_one_is_margin_as_a_set():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=300)
    X = rng.normal(size=(300, 3))
    sel = cluster_margin(probs, X, 25, margin_multiple=1, seed=0)
    assert sorted(sel.indices.tolist()) == sorted(margin(probs, 25).indices.tolist())


@pytest.mark.parametrize("seed", range(10))
def test_round_robin_is_balanced(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, 200)
    rows = np.arange(1000, 1200)
    size = int(rng.integers(1, 200))
    picked = round_robin(rows, groups, size, np.random.default_rng(seed))
    assert picked.shape == (size,) and np.unique(picked).size == size
    counts = np.bincount(groups, minlength=12)
    got = np.bincount(groups[picked - 1000], minlength=12)
    # the groups not exhausted gave t or t + 1 rows, the exhausted ones at most t + 1, and
    # the round cut short reached the smaller groups first
    open_ = got < counts
    if open_.any():
        t = got[open_].min()
        assert got[open_].max() <= t + 1 and np.all(got[~open_] <= t + 1)
        ahead, behind = open_ & (got == t + 1), open_ & (got == t)
        if ahead.any() and behind.any():
            assert counts[ahead].max() <= counts[behind].min()
    # within a round, a smaller group comes before a bigger one
    order = picked[: np.unique(groups).size] - 1000
    assert np.all(np.diff(counts[groups[order]]) >= 0)


def test_bad_input(case):
    probs, X = case
    with pytest.raises(ValueError, match="needs embeddings .* or clusters"):
        cluster_margin(probs, None, 2)
    with pytest.raises(ValueError, match=r"embeddings must have one row per row of probs"):
        cluster_margin(probs, X[:10], 2)
    with pytest.raises(ValueError, match=r"clusters must have shape \(14,\)"):
        cluster_margin(probs, None, 2, clusters=CLUSTERS[:5])
    with pytest.raises(TypeError, match="clusters must hold integer"):
        cluster_margin(probs, None, 2, clusters=CLUSTERS.astype(float))
    with pytest.raises(ValueError, match=r"margin_multiple must be a real number in \[1"):
        cluster_margin(probs, X, 2, margin_multiple=0.5)
    with pytest.raises(TypeError, match="margin_multiple must be a real number"):
        cluster_margin(probs, X, 2, margin_multiple="10")
    with pytest.raises(ValueError, match=r"n_clusters must be an int in \[1, n=14\]"):
        cluster_margin(probs, X, 2, n_clusters=15)
    with pytest.raises(ValueError, match="size must be at most n=12"):
        cluster_margin(probs, X, 13, exclude=[0, 1])
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        cluster_margin(probs * 1.1, X, 2)


def _peak_bytes(n: int) -> int:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=n)
    tracemalloc.start()
    try:
        sel = cluster_margin(probs, X, 50, seed=0, fit_sample_size=2000, max_iter=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sel.size == 50
    return peak


def test_memory_is_linear_in_n():
    # no n x n matrix: four times the rows, at most about four times the memory (an n x n
    # matrix would take sixteen times, 12.8 GB at n = 40,000)
    small, big = _peak_bytes(10000), _peak_bytes(40000)
    assert big < 5 * small, (small, big)
    assert big < 80 * 40000 * 8, big
