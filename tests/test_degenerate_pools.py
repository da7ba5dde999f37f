"""Pools that real data produce: all rows equal, many exact copies. The oracle is never asked
twice about one vector, and the warning counts distinct vectors, not distinct row numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs


def _fit(X, k, seed=0):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = cs.SensitivitySampler(k, seed=seed, design="sensitivity").fit(X)
    return sampler, [str(w.message) for w in caught]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(6))
def test_a_constant_pool_gives_one_center(dtype, seed):
    vec = np.random.default_rng(seed).normal(size=12) * 10 ** np.random.default_rng(seed).uniform(-3, 3)
    X = np.tile(vec, (700, 1)).astype(dtype)
    sampler, msgs = _fit(X, 200, seed=seed)
    assert sampler.query_indices_.shape == (1,)
    assert sampler.cost_ == 0.0
    assert any("only 1 distinct centers could be placed for n_clusters=200" in m
               and "hold 1 distinct vector(s)" in m for m in msgs), msgs
    sel = sampler.sample(np.ones(1), 30, seed=1)
    np.testing.assert_allclose(sel.probabilities, 1 / 700)


@pytest.mark.parametrize("seed", range(4))
def test_copies_never_give_repeated_centers(seed):
    # 40% of the rows are copies of 10 rows, the rest a clustered pool
    rng = np.random.default_rng(seed)
    base, _ = make_blobs(n=1200, d=6, k=8, seed=seed)
    copies = base[rng.integers(0, 10, size=800)]
    X = rng.permutation(np.vstack([base, copies]))
    for k in (5, 40, 300):
        sampler, _ = _fit(X, k, seed=seed)
        centers = X[sampler.query_indices_]
        assert np.unique(centers, axis=0).shape[0] == centers.shape[0], (seed, k)
        assert centers.shape[0] <= k


def test_few_distinct_vectors_give_that_many_centers():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4, 5)).astype(np.float32)
    X = vectors[rng.integers(0, 4, size=900)]
    sampler, msgs = _fit(X, 50)
    assert sampler.query_indices_.shape == (4,)
    assert np.unique(X[sampler.query_indices_], axis=0).shape[0] == 4
    assert any("hold 4 distinct vector(s); querying 4" in m for m in msgs), msgs
    assert sampler.cost_ == 0.0


def test_every_pool_kind_agrees_on_a_constant_pool(tmp_path):
    X = np.ones((300, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", X)
    loss = np.full(300, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=10, seed=2, design="sensitivity")
        got = cs.sensitivity_sample(str(tmp_path / "x.npy"), loss.__getitem__, 20,
                                    n_clusters=10, seed=2, design="sensitivity")
    assert ref.n_queries == got.n_queries == 1
    np.testing.assert_array_equal(ref.indices, got.indices)


def _with_outlier(seed=0):
    X, _ = make_blobs(n=3000, d=6, k=8, seed=seed)
    X[1234] *= 1e6
    return X


@pytest.mark.parametrize("seed", range(4))
def test_a_giant_outlier_becomes_a_center_within_k(seed):
    X = _with_outlier(seed)
    loss = np.abs(X[:, 0]) / (1 + np.abs(X[:, 0]))
    plain = cs.SensitivitySampler(20, seed=seed, far_rows=False, design="sensitivity").fit(X)
    sampler = cs.SensitivitySampler(20, seed=seed, design="sensitivity").fit(X)
    assert 1234 in sampler.query_indices_
    assert sampler.query_indices_.shape[0] <= 20
    assert sampler.distances_[1234] == 0.0
    assert sampler.cost_ < 1e-6 * plain.cost_ or 1234 in plain.query_indices_
    # the fitted state is consistent: every row's label and v are those of its center
    lab = np.asarray(sampler.labels_)
    diff = X - X[sampler.query_indices_[lab]]
    np.testing.assert_allclose(sampler.distances_, np.einsum("ij,ij->i", diff, diff),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(sampler.cluster_sizes_, np.bincount(lab, minlength=lab.max() + 1))
    sel = sampler.sample(loss[sampler.query_indices_], 500, seed=1)
    assert np.mean(sel.indices == 1234) == 0.0  # known exactly as a center: never drawn
    assert sel.probabilities.max() < 0.05


def test_far_rows_are_isolated_the_same_way_on_every_pool(tmp_path):
    X = _with_outlier(1).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    loss = np.abs(X[:, 1]).astype(np.float64)
    ref = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=12, seed=3, design="sensitivity")
    pools = [str(tmp_path / "x.npy"), np.load(tmp_path / "x.npy", mmap_mode="r")]
    try:
        import dask.array as da

        pools.append(da.from_array(X, chunks=(700, 6)))
    except ImportError:
        pass
    assert 1234 in ref.query_indices
    for pool in pools:
        got = cs.sensitivity_sample(pool, loss.__getitem__, 200, n_clusters=12, seed=3, design="sensitivity")
        np.testing.assert_array_equal(got.query_indices, ref.query_indices)
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.probabilities, ref.probabilities, rtol=1e-12)
    # spilled to disk as well
    from coreselect.pools import plan_chunks

    limit = plan_chunks("1TB", n=3000, d=6, k=12, fit_rows=3000).fixed_bytes + 60_000
    tiny = cs.SensitivitySampler(12, seed=3, memory_limit=limit, design="sensitivity").fit(str(tmp_path / "x.npy"))
    assert type(tiny.state_.rows).__name__ == "SpilledRows"
    np.testing.assert_array_equal(tiny.query_indices_, ref.query_indices)
    np.testing.assert_array_equal(np.asarray(tiny.labels_), cs.SensitivitySampler(
        12, seed=3, design="sensitivity").fit(X).labels_)


@pytest.mark.parametrize("e", [-520, -200, -160, 34, 200])
def test_a_power_of_two_scale_does_not_change_the_centers(e):
    # seeding rescales by a power of two judged on float64 values (found by property tests)
    X = np.random.default_rng(0).normal(size=(30, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = cs.SensitivitySampler(4, seed=0, design="sensitivity").fit(X)
        b = cs.SensitivitySampler(4, seed=0, design="sensitivity").fit(np.ldexp(X, e))
    np.testing.assert_array_equal(a.query_indices_, b.query_indices_)


def test_overflowing_distances_are_a_clear_error_and_tiny_ones_are_fine():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="X holds values so large .* overflow float64"):
            cs.sensitivity_sample(np.ldexp(X, 510), np.ones(30).__getitem__, 10, n_clusters=4, design="sensitivity")
        sel = cs.sensitivity_sample(np.ldexp(X, -520), np.ones(30).__getitem__, 10,
                                    n_clusters=4, seed=0, design="sensitivity")
    assert sel.params["lam"] == 0.0 and "negligible" in sel.params["lam_rule"]
    assert np.all(np.isfinite(sel.weights)) and np.all(sel.weights > 0)


def test_a_python_bool_is_not_an_int():
    X = np.random.default_rng(0).normal(size=(12, 2))
    with pytest.raises(TypeError, match="size must be an int >= 1; got bool True"):
        cs.sensitivity_sample(X, np.ones(12).__getitem__, True, n_clusters=2, design="sensitivity")
    with pytest.raises(TypeError, match="n_clusters must be an int"):
        cs.SensitivitySampler(True, design="sensitivity").fit(X)


def test_warnings_point_at_the_callers_line():
    with pytest.warns(UserWarning, match="distinct centers") as rec:
        cs.SensitivitySampler(5, seed=0, design="sensitivity").fit(np.ones((40, 2)))
    assert rec[0].filename == __file__
    sampler = cs.SensitivitySampler(1, seed=0, design="sensitivity").fit(np.ones((6, 2)))
    with pytest.warns(RuntimeWarning, match="falling back") as rec:
        sampler.sample([0.0], 3, seed=0)
    assert rec[0].filename == __file__


def test_tiny_embeddings_give_a_valid_selection_and_strict_json_diagnostics():
    import json

    X = np.ldexp(np.random.default_rng(0).normal(size=(30, 3)), -520)
    loss = np.random.default_rng(1).random(30) + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = cs.sensitivity_sample(X, loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")
    assert sel.params["lam"] == 0.0
    json.dumps(sel.diagnostics, allow_nan=False)  # no inf or NaN in the report


def test_a_pool_of_copies_is_not_called_trouble_free():
    # 40% of the rows are copies of 10 rows whose losses differ between copies (the same
    # input with other labels): the pre-labelling report must say so, not "no sign"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 4))
    X[600:] = X[rng.integers(0, 10, size=400)]
    loss = rng.gamma(2.0, 1.0, size=1000)
    for seed in range(3):
        sel = cs.sensitivity_sample(X, loss.__getitem__, 100, n_clusters=30, seed=seed,
                                    design="sensitivity")
        d = sel.diagnostics
        assert any("coincide with their center" in w for w in d["warnings"]), d["warnings"]
        assert "no sign" not in d["estimation_verdict"]


def test_a_giant_outlier_takes_few_draws_by_default():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 3))
    X[7] *= 1e6
    loss = rng.gamma(2.0, 1.0, size=2000)
    for seed in range(3):
        sel = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=20, seed=seed)
        assert 7 in sel.query_indices  # a center of its own
        assert np.mean(sel.indices == 7) < 0.05
        est = sel.estimate_total(loss[sel.indices])
        assert abs(est.value - loss.sum()) < 5 * est.stderr
