"""The Dask path: same clustering and probabilities as numpy; draws follow the block masses."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs
from scipy import stats

import coreselect as cs

da = pytest.importorskip("dask.array")

X, _ = make_blobs(n=4000, d=6, k=8, seed=21)
LOSS = np.abs(X[:, 2]) + 0.2


def _numpy_p(sampler, losses, lam="auto", mix=0.0):
    from coreselect.sensitivity import resolve_lam, sensitivity_probabilities

    hat = float(np.dot(sampler.cluster_sizes_.astype(np.float64), losses))
    lam_value, _ = resolve_lam(lam, hat, sampler.cost_)
    return sensitivity_probabilities(losses[sampler.labels_], sampler.distances_, lam_value, mix)


def _check_same_fit(got, ref):
    np.testing.assert_array_equal(got.query_indices_, ref.query_indices_)
    np.testing.assert_array_equal(got.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(got.distances_.compute(), ref.distances_, rtol=1e-12)
    np.testing.assert_array_equal(got.cluster_sizes_, ref.cluster_sizes_)
    assert got.cost_ == pytest.approx(ref.cost_, rel=1e-12)


def test_threaded_dask_matches_numpy():
    ref = cs.SensitivitySampler(8, seed=3, design="sensitivity").fit(X)
    got = cs.SensitivitySampler(8, seed=3, design="sensitivity").fit(da.from_array(X, chunks=(700, 3)))
    _check_same_fit(got, ref)
    losses = LOSS[ref.query_indices_]
    p = _numpy_p(ref, losses)
    for replace in (True, False):
        sel = got.sample(losses, 300, seed=1, replace=replace)
        assert sel.params["path"] == "dask"
        if replace:
            np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-12)
            np.testing.assert_allclose(sel.weights, 1 / (300 * p[sel.indices]), rtol=1e-12)
        else:
            assert np.unique(sel.indices).shape[0] == 300
        np.testing.assert_array_equal(sel.centers, ref.query_indices_[ref.labels_[sel.indices]])
    sel = got.sample(losses, 300, seed=1, mix=0.25)
    np.testing.assert_allclose(sel.probabilities, _numpy_p(ref, losses, mix=0.25)[sel.indices],
                               rtol=1e-12)
    from coreselect.sensitivity import row_probabilities

    lam = ref.sample(losses, 1).params["lam"]
    np.testing.assert_allclose(row_probabilities(got.state_.rows, losses, lam), p, rtol=1e-12)


def test_sensitivity_sample_accepts_dask_and_is_reproducible():
    Xd = da.from_array(X.astype(np.float32), chunks=(1000, 6))
    a = cs.sensitivity_sample(Xd, LOSS.__getitem__, 100, n_clusters=6, seed=7, design="sensitivity")
    b = cs.sensitivity_sample(Xd, LOSS.__getitem__, 100, n_clusters=6, seed=7, design="sensitivity")
    np.testing.assert_array_equal(a.indices, b.indices)
    est = a.estimate_total(LOSS[a.indices])
    assert abs(est.value - LOSS.sum()) < 5 * est.stderr


def test_dask_input_errors():
    with pytest.raises(ValueError, match="2-D"):
        cs.SensitivitySampler(2, design="sensitivity").fit(da.zeros((10,), chunks=5))
    bad = da.from_array(X, chunks=(1000, 6))
    bad = bad[bad[:, 0] > 0]  # unknown chunk sizes
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        cs.SensitivitySampler(2, design="sensitivity").fit(bad)
    nan = X.copy()
    nan[3100, 1] = np.inf
    with pytest.raises(ValueError, match="X contains inf at row 3100, column 1"):
        cs.SensitivitySampler(3, seed=0, fit_sample_size=10, design="sensitivity").fit(da.from_array(nan, chunks=1000))


def test_local_cluster_probabilities_and_block_counts(tmp_path):
    distributed = pytest.importorskip("distributed")
    from coreselect.pools.dask import from_npy_shards
    from coreselect.sensitivity import block_masses

    X32 = X.astype(np.float32)
    paths = []
    for i, (a, b) in enumerate([(0, 1500), (1500, 2600), (2600, 4000)]):
        paths.append(tmp_path / f"s{i}.npy")
        np.save(paths[-1], X32[a:b])
    ref = cs.SensitivitySampler(8, seed=5, design="sensitivity").fit(X32)
    losses = LOSS[ref.query_indices_]
    p = _numpy_p(ref, losses)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        Xd = from_npy_shards(paths, chunk_rows=600)
        got = cs.SensitivitySampler(8, seed=5, design="sensitivity").fit(Xd)
        _check_same_fit(got, ref)
        state = got.state_.rows
        lam = ref.sample(losses, 1).params["lam"]
        masses = block_masses(state, losses, lam)
        np.testing.assert_allclose(masses / masses.sum(),
                                   np.add.reduceat(p, state.starts[:-1]), rtol=1e-10)
        size = 20_000
        for seed in range(3):
            sel = got.sample(losses, size, seed=seed)
            np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-12)
            block = np.searchsorted(state.starts, sel.indices, side="right") - 1
            counts = np.bincount(block, minlength=masses.shape[0])
            pval = stats.chisquare(counts, size * masses / masses.sum()).pvalue
            assert pval > 1e-4, (seed, pval)
        # within a block the draws follow p as well (the block with the most draws)
        b = int(np.argmax(counts))
        lo, hi = state.starts[b], state.starts[b + 1]
        inside = sel.indices[block == b]
        lab = ref.labels_[lo:hi]
        per_center = np.bincount(lab[inside - lo], minlength=len(losses))
        expected = np.bincount(lab, weights=p[lo:hi], minlength=len(losses))
        keep = expected > 0
        pval = stats.chisquare(per_center[keep],
                               inside.shape[0] * expected[keep] / expected.sum()).pvalue
        assert pval > 1e-4
