from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

from coreselect.assign import assign
from coreselect.clustering import dz_seeding, kz_clustering


def brute(X, C, z):
    d2 = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    lab = d2.argmin(1)
    return lab, d2[np.arange(len(X)), lab] ** (z / 2)


@pytest.mark.parametrize("z", [1.0, 2.0, 3.0])
def test_assign_matches_brute_force(z):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5))
    C = rng.normal(size=(7, 5))
    lab, dist = assign(X, C, z=z)
    blab, bdist = brute(X, C, z)
    np.testing.assert_array_equal(lab, blab)
    np.testing.assert_allclose(dist, bdist, rtol=1e-10, atol=1e-12)


def test_chunk_size_does_not_change_assignment():
    X, _ = make_blobs(n=1000, d=8, k=20, seed=3)
    C = X[::37]
    ref = assign(X, C)
    for chunk in (1, 7, 64, 999, 5000):
        lab, dist = assign(X, C, chunk_size=chunk)
        np.testing.assert_array_equal(lab, ref[0])
        np.testing.assert_array_equal(dist, ref[1])


def test_assign_huge_values_do_not_overflow():
    X = np.array([[1e30, 0.0], [1.1e30, 0.0], [-1e30, 5e29]])
    C = np.array([[1e30, 0.0], [-1e30, 5e29]])
    lab, dist = assign(X, C)
    assert lab.tolist() == [0, 0, 1]
    assert np.all(np.isfinite(dist))
    np.testing.assert_allclose(dist, [0.0, (0.1e30) ** 2, 0.0], rtol=1e-12)
    # float32 input of the same magnitude
    lab32, dist32 = assign(X.astype(np.float32), C)
    assert lab32.tolist() == [0, 0, 1] and np.all(np.isfinite(dist32))


def test_assign_tiny_values():
    X = np.array([[1e-30, 0.0], [3e-30, 0.0], [10e-30, 0.0]])
    C = np.array([[0.0, 0.0], [10e-30, 0.0]])
    lab, dist = assign(X, C)
    assert lab.tolist() == [0, 0, 1]
    np.testing.assert_allclose(dist, [1e-60, 9e-60, 0.0], rtol=1e-10)


def test_dz_seeding_distinct_and_spread():
    X, comp = make_blobs(n=500, d=3, k=5, spread=0.01, seed=2)
    rows = dz_seeding(X, 5, seed=0)
    assert len(set(rows.tolist())) == 5
    assert len(set(comp[rows].tolist())) == 5  # one seed per well separated blob


def test_tiny_hand_computed_clustering():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [10.0, 0.0], [10.0, 1.0], [10.0, 2.0]])
    cl = kz_clustering(X, 2, seed=0)
    # centers snap to the middle point of each column of three
    assert sorted(cl.center_indices.tolist()) == [1, 4]
    assert cl.cost == 4.0  # four points at distance 1, squared
    np.testing.assert_array_equal(cl.distances, [1, 0, 1, 1, 0, 1])
    assert sorted(cl.cluster_sizes.tolist()) == [3, 3]
    med = kz_clustering(X, 2, z=1.0, seed=0)
    assert med.cost == 4.0
    assert sorted(med.center_indices.tolist()) == [1, 4]


@pytest.mark.parametrize("z", [1.0, 2.0])
def test_labels_point_to_nearest_center(z):
    X, _ = make_blobs(n=800, d=6, k=10, seed=5)
    cl = kz_clustering(X, 10, z=z, seed=1)
    lab, dist = brute(X, X[cl.center_indices], z)
    np.testing.assert_array_equal(cl.labels, lab)
    np.testing.assert_allclose(cl.distances, dist, rtol=1e-9, atol=1e-12)
    assert cl.cost == pytest.approx(dist.sum())
    assert cl.cluster_sizes.sum() == 800
    assert np.all(cl.distances[cl.center_indices] == 0)


def test_cost_within_10_percent_of_sklearn():
    from sklearn.cluster import KMeans

    X, _ = make_blobs(n=4000, d=10, k=40, spread=2.0, seed=7)
    seeds = range(5)  # single runs of k-means vary by more than 10%: compare means over seeds
    ours = [kz_clustering(X, 40, seed=s) for s in seeds]
    kms = [KMeans(40, n_init=1, random_state=s).fit(X) for s in seeds]
    # the fitted (unsnapped) centers against sklearn's
    fitted = np.mean([assign(X, cl.fitted_centers)[1].sum() for cl in ours])
    assert fitted <= 1.1 * np.mean([km.inertia_ for km in kms])
    # the snapped cost against sklearn's centers snapped to their nearest rows
    snapped = [assign(X, X[np.unique(assign(km.cluster_centers_, X)[0])])[1].sum() for km in kms]
    assert np.mean([cl.cost for cl in ours]) <= 1.1 * np.mean(snapped)


@pytest.mark.parametrize("z", [1.0, 1.5, 3.0])
def test_power_mean_steps_lower_the_cost(z):
    X, _ = make_blobs(n=1500, d=5, k=10, spread=1.0, seed=11)
    one = kz_clustering(X, 10, z=z, seed=2, max_iter=1)
    many = kz_clustering(X, 10, z=z, seed=2, max_iter=30)
    c1 = assign(X, one.fitted_centers, z=z)[1].sum()
    cm = assign(X, many.fitted_centers, z=z)[1].sum()
    assert cm < c1


def test_weiszfeld_leaves_a_data_row_when_that_helps():
    # a center seeded on an end row of a column of three must move to the middle (the median)
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    cl = kz_clustering(X, 1, z=1.0, seed=0, max_iter=50, tol=0)
    np.testing.assert_allclose(cl.fitted_centers[0], [0.0, 1.0], atol=1e-6)


def test_fit_on_sample_then_exact_pass():
    X, _ = make_blobs(n=3000, d=4, k=8, seed=9)
    cl = kz_clustering(X, 8, seed=0, fit_sample_size=500)
    assert cl.fit_sample_size == 500
    lab, dist = brute(X, X[cl.center_indices], 2)
    np.testing.assert_array_equal(cl.labels, lab)


def test_k_equals_n_gives_zero_cost():
    X = np.random.default_rng(0).normal(size=(30, 3))
    cl = kz_clustering(X, 30, seed=0)
    assert cl.cost == 0.0
    assert sorted(cl.center_indices.tolist()) == list(range(30))


def test_duplicate_rows_fewer_distinct_centers_warns():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    with pytest.warns(UserWarning, match="distinct centers"):
        cl = kz_clustering(X, 4, seed=0)
    assert cl.cost == 0.0
    assert len(set(cl.center_indices.tolist())) == cl.n_clusters


def test_same_seed_same_clustering_and_memmap(tmp_path):
    X, _ = make_blobs(n=700, d=5, k=7, seed=4, dtype=np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = kz_clustering(X, 7, seed=3)
    b = kz_clustering(mm, 7, seed=3)
    np.testing.assert_array_equal(a.center_indices, b.center_indices)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_float32_and_float64_input_give_the_same_centers():
    # every path (in memory, out of core, Dask) fits on the same rows; the dtype they arrive
    # in must not change the centers
    X = np.random.default_rng(1).normal(size=(50_000, 64)).astype(np.float32)
    a = kz_clustering(X, 500, seed=0)
    b = kz_clustering(X.astype(np.float64), 500, seed=0)
    np.testing.assert_array_equal(a.center_indices, b.center_indices)
