"""Every backend agrees with the numpy reference: assignment, v(e) and probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.assign import assign as np_assign
from coreselect.backends import AutoBackend, NumpyBackend, available_backends, get_backend
from coreselect.sensitivity import sensitivity_probabilities

# Dask is a pool (where the rows live), not a backend: tests/test_dask.py and test_pools.py
BACKENDS = ["faiss", "torch", "auto"]
NEEDS = {"faiss": "faiss", "torch": "torch", "auto": "numpy"}


def _backend(name):
    pytest.importorskip(NEEDS[name])
    if name == "torch":
        import torch

        torch.set_num_threads(1)
        from coreselect.backends.torch import TorchBackend

        return TorchBackend("cpu")
    return get_backend(name)


def _rtol(X):
    # the reference computes v in float32 for float32 rows, in float64 otherwise
    return 1e-5 if X.dtype == np.float32 else 1e-11


def test_registry():
    assert set(available_backends()) >= {"numpy", "faiss", "torch", "auto"}
    assert "dask" not in available_backends()
    assert get_backend(None) is NumpyBackend and get_backend("numpy") is NumpyBackend
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("cuda-magic")
    with pytest.raises(TypeError, match="backend must be a name or have an assign method"):
        get_backend(42)


@pytest.mark.parametrize("name", BACKENDS)
def test_hand_case(name):
    be = _backend(name)
    X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [10.0, 3.0]])
    C = np.array([[0.0, 0.0], [10.0, 0.0]])
    labels, dist = be.assign(X, C)
    assert labels.tolist() == [0, 0, 1, 1]
    assert dist.tolist() == [0.0, 1.0, 0.0, 9.0]
    labels, dist = be.assign(X, C, z=1.0)
    assert dist.tolist() == [0.0, 1.0, 0.0, 3.0]
    assert labels.dtype == np.int64 and dist.dtype == np.float64


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("z", [1.0, 2.0, 3.0])
def test_assignment_matches_numpy(name, dtype, z):
    be = _backend(name)
    rng = np.random.default_rng(int(z * 10) + (dtype == np.float32))
    X = rng.normal(size=(3000, 12)).astype(dtype)
    C = rng.normal(size=(40, 12))
    ref_l, ref_d = np_assign(X, C, z=z)
    for chunk in (None, 257):
        lab, dist = be.assign(X, C, z=z, chunk_size=chunk)
        np.testing.assert_array_equal(lab, ref_l)
        np.testing.assert_allclose(dist, ref_d, rtol=_rtol(X), atol=1e-12)


@pytest.mark.parametrize("name", ["faiss", "torch"])
def test_huge_and_tiny_magnitudes_are_rescaled(name):
    be = _backend(name)
    rng = np.random.default_rng(3)
    base = rng.normal(size=(500, 5))
    C = base[:7].copy()
    ref_l, _ = np_assign(base, C)
    for s in (1e30, 1e-30):
        lab, dist = be.assign(base * s, C * s)
        np.testing.assert_array_equal(lab, ref_l)
        _, ref_d = np_assign(base * s, C * s)
        np.testing.assert_allclose(dist, ref_d, rtol=1e-10)
        assert np.all(np.isfinite(dist))


@pytest.mark.parametrize("name", BACKENDS)
def test_sampler_with_backend_matches_numpy(name):
    _backend(name)
    X, _ = make_blobs(n=2000, d=6, k=9, seed=5)
    loss = np.abs(X[:, 1]) + 0.5
    ref = cs.SensitivitySampler(9, seed=2).fit(X)
    got = cs.SensitivitySampler(9, seed=2, backend=name).fit(X)
    np.testing.assert_array_equal(got.query_indices_, ref.query_indices_)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_allclose(got.distances_, ref.distances_, rtol=1e-11)
    losses = loss[ref.query_indices_]
    a, b = ref.sample(losses, 200, seed=4), got.sample(losses, 200, seed=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_probabilities_match_numpy_on_same_centers(name):
    be = _backend(name)
    X, _ = make_blobs(n=1500, d=5, k=6, seed=8, dtype=np.float32)
    C = np.asarray(X[[3, 400, 800, 1200, 1499]], dtype=np.float64)
    ref_l, ref_v = np_assign(X, C)
    lab, v = be.assign(X, C)
    losses = np.array([0.5, 2.0, 0.0, 1.0, 3.0])
    lam = 0.7
    p_ref = sensitivity_probabilities(losses[ref_l], ref_v, lam)
    p = sensitivity_probabilities(losses[lab], v, lam)
    np.testing.assert_allclose(p, p_ref, rtol=1e-5, atol=1e-15)
    assert p.sum() == pytest.approx(1.0)


def test_auto_backend_chooses_a_working_backend():
    auto = AutoBackend()
    be = auto.choose(30, 8)
    assert be.name in {"numpy", "faiss", "torch"}
    assert auto.choose(30, 8) is be  # measured once per (k, d)


def test_torch_lloyd_step_is_the_mean():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from coreselect.backends.torch import lloyd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 4)).astype(np.float32)
    C0 = X[:5].copy()
    c1, lab, sq = lloyd(torch.from_numpy(X), torch.from_numpy(C0), n_iter=1, chunk_size=100)
    ref_l, _ = np_assign(X, C0.astype(np.float64))
    expected = np.stack([X[ref_l == j].mean(axis=0) for j in range(5)])
    np.testing.assert_allclose(c1.numpy(), expected, rtol=1e-5, atol=1e-6)
    # labels and squared distances are those of the returned centers
    ref_l1, ref_d1 = np_assign(X, c1.numpy().astype(np.float64))
    np.testing.assert_array_equal(lab.numpy(), ref_l1)
    np.testing.assert_allclose(sq.numpy(), ref_d1, rtol=1e-3, atol=1e-4)


def test_faiss_kmeans_centers_are_cluster_means():
    pytest.importorskip("faiss")
    from coreselect.backends.faiss import kmeans

    X, _ = make_blobs(n=3000, d=8, k=5, seed=1, dtype=np.float32)
    full = 10**6  # max_points_per_centroid: no subsample
    np.testing.assert_allclose(kmeans(X, 1, max_points_per_centroid=full)[0], X.mean(axis=0),
                               rtol=1e-4, atol=1e-4)
    C = kmeans(X, 5, n_iter=50, seed=0, max_points_per_centroid=full)
    lab, _ = np_assign(X, C.astype(np.float64))
    # a Lloyd fixed point: every center is the mean of the rows assigned to it
    for j in range(5):
        np.testing.assert_allclose(C[j], X[lab == j].mean(axis=0), rtol=1e-3, atol=1e-3)
