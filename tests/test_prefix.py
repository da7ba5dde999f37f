"""Prefix (k, z)-clustering orders and the incremental assignment."""

from __future__ import annotations

import numpy as np
import pytest

from coreselect.assign import assign
from coreselect.clustering import kz_clustering
from coreselect.prefix import IncrementalAssignment, prefix_order


def blobs(n_blobs=6, per=40, d=3, sep=50.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, d)) * sep
    X = np.repeat(centers, per, axis=0) + rng.normal(size=(n_blobs * per, d))
    return X, np.repeat(np.arange(n_blobs), per)


def prefix_cost(X, order, j, z=2.0):
    _, dist = assign(X, X[order[:j]], z=z)
    return float(dist.sum())


# ------------------------------------------------------------------ hand cases
def test_farthest_first_hand_case():
    X = np.array([[0.0], [0.2], [10.0], [10.1], [21.0]])
    # closest to the mean (8.26) is 10; then 21 (11 away), then 0, then 0.2, then 10.1
    assert prefix_order(X, method="farthest").tolist() == [2, 4, 0, 1, 3]
    # the argmax does not depend on the power of the distance
    assert prefix_order(X, method="farthest", z=1.0).tolist() == [2, 4, 0, 1, 3]


def test_dz_two_points_then_forced():
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    for seed in range(5):
        order = prefix_order(X, seed=seed)
        assert sorted(order.tolist()) == [0, 1]


def test_incremental_hand_case():
    X = np.array([[0.0], [1.0], [5.0], [6.0]])
    inc = IncrementalAssignment(X)
    assert inc.labels.tolist() == [-1] * 4 and inc.cost == np.inf
    inc.add([0])
    assert inc.labels.tolist() == [0, 0, 0, 0]
    assert inc.distances.tolist() == [0.0, 1.0, 25.0, 36.0]
    inc.add([3])
    assert inc.labels.tolist() == [0, 0, 1, 1]
    assert inc.distances.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert inc.cost == 2.0
    assert inc.cluster_sizes().tolist() == [2, 2]


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("method", ["dz", "farthest"])
def test_full_order_is_a_permutation(method):
    X, _ = blobs()
    order = prefix_order(X, method=method, seed=1)
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(X.shape[0]))


@pytest.mark.parametrize("method", ["dz", "farthest"])
def test_permutation_with_duplicates(method):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(5, 2))
    X = np.repeat(base, 7, axis=0)  # 35 rows, 5 distinct
    order = prefix_order(X, method=method, seed=0)
    assert sorted(order.tolist()) == list(range(35))
    # the first 5 rows are the 5 distinct points (every later one has distance 0)
    assert np.unique(X[order[:5]], axis=0).shape[0] == 5


def test_prefix_of_length_is_the_start_of_the_full_order():
    X, _ = blobs()
    full = prefix_order(X, seed=7)
    part = prefix_order(X, 25, seed=7)
    assert part.tolist() == full[:25].tolist()
    assert prefix_order(X, 25, method="farthest").tolist() == \
        prefix_order(X, method="farthest")[:25].tolist()


def test_same_seed_same_order_and_chunk_size_does_not_matter():
    X, _ = blobs(d=4)
    a = prefix_order(X, 30, seed=11)
    b = prefix_order(X, 30, seed=11, chunk_size=7)
    c = prefix_order(X, 30, seed=12)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    f1 = prefix_order(X, 30, method="farthest", chunk_size=5)
    f2 = prefix_order(X, 30, method="farthest")
    assert f1.tolist() == f2.tolist()


@pytest.mark.parametrize("method", ["dz", "farthest"])
def test_first_prefix_covers_well_separated_blobs(method):
    for seed in range(10):
        X, lab = blobs(n_blobs=6, seed=seed)
        order = prefix_order(X, 6, method=method, seed=seed)
        assert np.unique(lab[order]).shape[0] == 6, seed


def test_prefix_costs_are_good_clusterings():
    # every prefix cost is non-increasing in j, and the j=k prefix is within a modest factor
    # of a fitted k-means clustering (D^z sampling is O(log k)-approximate in expectation)
    X, _ = blobs(n_blobs=8, per=30, d=5, sep=8.0, seed=2)
    ratios = []
    for seed in range(8):
        order = prefix_order(X, 16, seed=seed)
        costs = [prefix_cost(X, order, j) for j in range(1, 17)]
        assert np.all(np.diff(costs) <= 1e-9)
        ref = kz_clustering(X, 8, seed=seed).cost
        ratios.append(costs[7] / ref)
    assert np.mean(ratios) < 4.0
    assert min(ratios) >= 0.99  # a snapped clustering of 8 rows is never beaten by much


def test_dz_beats_farthest_on_outliers():
    # farthest-first picks the outliers first; D^z sampling does not (mostly)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 30.0,
                   rng.normal(size=(10, 2)) * 0.01 + [[500.0, 500.0]],
                   [[-200.0, 0.0]], [[0.0, -200.0]], [[-200.0, -200.0]]])
    far = prefix_order(X, 4, method="farthest")
    dz_costs = [prefix_cost(X, prefix_order(X, 4, seed=s), 4) for s in range(10)]
    assert np.median(dz_costs) <= prefix_cost(X, far, 4)


def test_incremental_equals_full_assignment():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(700, 6))
    order = prefix_order(X, 60, seed=5)
    inc = IncrementalAssignment(X, chunk_size=97)
    for start in range(0, 60, 15):
        inc.add(order[start:start + 15])
        labels, dist = assign(X, X[order[:start + 15]])
        dist[order[:start + 15]] = 0.0
        labels[order[:start + 15]] = np.arange(start + 15)
        np.testing.assert_array_equal(inc.labels, labels)
        np.testing.assert_allclose(inc.distances, dist, rtol=1e-12, atol=0)
        assert inc.cluster_sizes().sum() == 700
        assert inc.centers.tolist() == order[:start + 15].tolist()


def test_incremental_with_z1_and_duplicates():
    X = np.array([[0.0], [0.0], [2.0], [4.0]])
    inc = IncrementalAssignment(X, z=1.0)
    inc.add([0]).add([1, 3])
    # row 1 coincides with the earlier center 0: ties go to the earlier center
    assert inc.labels.tolist() == [0, 0, 0, 2]
    assert inc.distances.tolist() == [0.0, 0.0, 2.0, 0.0]


# ------------------------------------------------------------------ errors
def test_errors():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        prefix_order(X, method="mettu")
    with pytest.raises(ValueError, match="length must be an int in \\[1, n=5\\]"):
        prefix_order(X, 6)
    with pytest.raises(ValueError, match="length"):
        prefix_order(X, 0)
    with pytest.raises(ValueError, match="z must be"):
        prefix_order(X, z=0.5)
    with pytest.raises(ValueError, match="NaN"):
        prefix_order(np.array([[0.0], [np.nan]]))
