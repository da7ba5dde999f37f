"""The out-of-core path: memmaps, shard lists, memory_limit, per-chunk-mass sampling."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from conftest import make_blobs
from scipy import stats

import coreselect as cs
from coreselect._validation import check_memory_limit
from coreselect.outofcore import (
    ShardedArray,
    open_pool,
    plan_chunks,
    resolve_memory_limit,
)
from coreselect.pools import SpilledRows
from coreselect.sensitivity import block_masses, row_probabilities

X32, _ = make_blobs(n=3000, d=6, k=8, seed=11, dtype=np.float32)
LOSS = np.abs(X32[:, 0].astype(np.float64)) + 0.1


def _save(tmp_path, X, name="x.npy"):
    path = tmp_path / name
    np.save(path, X)
    return path


def _shards(tmp_path, X, cuts):
    paths = []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, X.shape[0]], strict=True)):
        paths.append(_save(tmp_path, X[a:b], f"shard{i}.npy"))
    return paths


def _same_selection(a, b):
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-12)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12)
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.query_indices, b.query_indices)


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memmap_same_selection_as_in_memory(tmp_path, replace, seed):
    mm = np.load(_save(tmp_path, X32), mmap_mode="r")
    ref = cs.sensitivity_sample(X32, LOSS.__getitem__, 200, n_clusters=12, seed=seed,
                                replace=replace, design="sensitivity")
    got = cs.sensitivity_sample(mm, LOSS.__getitem__, 200, n_clusters=12, seed=seed,
                                replace=replace, design="sensitivity")
    assert got.params["path"] == "out-of-core"
    _same_selection(ref, got)


def test_shards_and_spill_same_selection_and_state(tmp_path):
    paths = _shards(tmp_path, X32, [1000, 1001, 2500])
    ref = cs.SensitivitySampler(10, seed=4, design="sensitivity").fit(X32)
    # a limit so small that the per-row labels and distances are spilled to disk
    limit = plan_chunks("1TB", n=3000, d=6, k=10, fit_rows=3000).fixed_bytes + 60_000
    got = cs.SensitivitySampler(10, seed=4, memory_limit=limit, design="sensitivity").fit(paths)
    assert isinstance(got.state_.rows, SpilledRows)  # spilled to disk
    assert got.state_.rows.starts.shape[0] > 3  # several chunks
    np.testing.assert_array_equal(got.query_indices_, ref.query_indices_)
    np.testing.assert_array_equal(np.asarray(got.labels_), ref.labels_)
    np.testing.assert_allclose(np.asarray(got.distances_), ref.distances_, rtol=1e-12)
    np.testing.assert_array_equal(got.cluster_sizes_, ref.cluster_sizes_)
    assert got.cost_ == pytest.approx(ref.cost_, rel=1e-12)
    losses = LOSS[ref.query_indices_]
    for replace in (True, False):
        _same_selection(ref.sample(losses, 300, seed=9, replace=replace),
                        got.sample(losses, 300, seed=9, replace=replace))
    _same_selection(ref.sample(losses, 300, seed=9, mix=0.3),
                    got.sample(losses, 300, seed=9, mix=0.3))
    _same_selection(ref.sample(losses, 300, seed=9, lam=0.0),
                    got.sample(losses, 300, seed=9, lam=0.0))


def test_chunk_size_does_not_change_selection(tmp_path):
    path = _save(tmp_path, X32)
    sels = [cs.sensitivity_sample(path, LOSS.__getitem__, 100, n_clusters=7, seed=5,
                                  chunk_size=c, design="sensitivity") for c in (None, 1, 97, 4096)]
    for s in sels[1:]:
        _same_selection(sels[0], s)


def test_chunk_allocation_follows_chunk_masses(tmp_path):
    # many draws: the per-chunk counts pass a chi-square test against the chunk masses
    sampler = cs.SensitivitySampler(9, seed=1, memory_limit="1GB", chunk_size=400, design="sensitivity").fit(X32)
    state = sampler.state_.rows
    losses = LOSS[sampler.query_indices_]
    lam = losses @ sampler.cluster_sizes_ / sampler.cost_
    masses = block_masses(state, losses, lam)
    expected_p = masses / masses.sum()
    for seed in range(5):
        sel = sampler.sample(losses, 20_000, seed=seed)
        chunk = np.searchsorted(state.starts, sel.indices, side="right") - 1
        counts = np.bincount(chunk, minlength=masses.shape[0])
        pval = stats.chisquare(counts, 20_000 * expected_p).pvalue
        assert pval > 1e-4, (seed, pval)
    # and the probabilities returned are the in-memory ones
    p_all = row_probabilities(state, losses, lam)
    np.testing.assert_allclose(sel.probabilities, p_all[sel.indices], rtol=1e-14)
    assert p_all.sum() == pytest.approx(1.0, abs=1e-12)


def test_memory_limit_too_small_is_a_clear_error(tmp_path):
    path = _save(tmp_path, X32)
    with pytest.raises(ValueError, match=r"memory_limit must leave room for one chunk of 64 rows"):
        cs.SensitivitySampler(10, seed=0, memory_limit="100kB", design="sensitivity").fit(path)
    with pytest.raises(ValueError, match="memory_limit must be a number of bytes"):
        cs.SensitivitySampler(10, memory_limit="lots", design="sensitivity").fit(path)
    with pytest.raises(ValueError, match="memory_limit must be a positive number"):
        cs.SensitivitySampler(10, memory_limit=-5, design="sensitivity").fit(X32)
    with pytest.raises(TypeError, match="memory_limit must be a number of bytes"):
        check_memory_limit(True)


def test_resolve_memory_limit():
    assert resolve_memory_limit("2GB") == 2 * 10**9
    assert resolve_memory_limit("1.5 GiB") == int(1.5 * 2**30)
    assert resolve_memory_limit(12345.0) == 12345
    auto = resolve_memory_limit(None)
    assert 0 < auto < 2**50


def test_in_memory_array_with_memory_limit_matches(tmp_path):
    ref = cs.sensitivity_sample(X32, LOSS.__getitem__, 150, n_clusters=5, seed=8, design="sensitivity")
    got = cs.sensitivity_sample(X32, LOSS.__getitem__, 150, n_clusters=5, seed=8,
                                memory_limit="50MB", design="sensitivity")
    assert ref.params["path"] == "in-memory"
    assert got.params["path"] == "out-of-core"  # memory_limit was not ignored
    _same_selection(ref, got)


def test_nan_in_pool_names_the_row(tmp_path):
    bad = X32.copy()
    bad[2222, 3] = np.nan
    path = _save(tmp_path, bad)
    with pytest.raises(ValueError, match="X contains NaN at row 2222, column 3"):
        cs.SensitivitySampler(5, seed=0, fit_sample_size=5, design="sensitivity").fit(path)


def test_sharded_array_reads(tmp_path):
    X = np.arange(40, dtype=np.float64).reshape(10, 4)
    paths = _shards(tmp_path, X, [3, 3, 7])  # includes an empty shard
    pool = ShardedArray(paths)
    assert pool.shape == (10, 4) and len(pool) == 10 and pool.dtype == np.float64
    np.testing.assert_array_equal(pool[:], X)
    np.testing.assert_array_equal(pool[2:8], X[2:8])
    np.testing.assert_array_equal(pool[::3], X[::3])
    rows = np.array([9, 0, 3, 3, 2, -1])
    np.testing.assert_array_equal(pool[rows], X[rows])
    np.testing.assert_array_equal(pool[5], X[5])
    np.testing.assert_array_equal(pool[X[:, 0] > 20], X[X[:, 0] > 20])
    np.testing.assert_array_equal(np.asarray(pool), X)
    with pytest.raises(IndexError, match="out of bounds"):
        pool[np.array([10])]
    # a memmap (and a slice of one) is read through its file
    mm = np.load(_save(tmp_path, X, "full.npy"), mmap_mode="r")
    np.testing.assert_array_equal(open_pool(mm)[:], X)
    np.testing.assert_array_equal(open_pool(mm[4:])[:], X[4:])


def test_sharded_array_errors(tmp_path):
    a = _save(tmp_path, np.zeros((3, 2), np.float32), "a.npy")
    b = _save(tmp_path, np.zeros((3, 5), np.float32), "b.npy")
    c = _save(tmp_path, np.zeros(3, np.float32), "c.npy")
    e = _save(tmp_path, np.zeros((3, 2), np.int64), "e.npy")
    with pytest.raises(ValueError, match="all shards must agree"):
        ShardedArray([a, b])
    with pytest.raises(ValueError, match="every shard must be 2-D"):
        ShardedArray([c])
    with pytest.raises(TypeError, match="shards must be float32 or float64"):
        ShardedArray([e])
    with pytest.raises(ValueError, match="not a readable .npy file"):
        ShardedArray([os.fspath(tmp_path / "missing.npy")])
    with pytest.raises(ValueError, match="at least one .npy file"):
        ShardedArray([])


def _peak_fit_and_sample(path, limit):
    tracemalloc.start()
    try:
        s = cs.SensitivitySampler(20, seed=0, memory_limit=limit, fit_sample_size=2000, design="sensitivity").fit(path)
        s.sample(np.ones(len(s.query_indices_)), 500, seed=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_n(tmp_path):
    rng = np.random.default_rng(0)
    mid = _save(tmp_path, rng.normal(size=(200_000, 8)).astype(np.float32), "m.npy")
    big = _save(tmp_path, rng.normal(size=(600_000, 8)).astype(np.float32), "b.npy")
    limit = 6_000_000
    peak_mid = _peak_fit_and_sample(mid, limit)
    peak_big = _peak_fit_and_sample(big, limit)
    # the pools are 6.4 and 19 MB: with the per-row state spilled, the peak stays put
    assert peak_big < 1.1 * peak_mid, (peak_mid, peak_big)
    assert peak_big < limit


def test_row_probabilities_match_the_in_memory_formula(tmp_path):
    sampler = cs.SensitivitySampler(6, seed=2, chunk_size=250, design="sensitivity").fit(_save(tmp_path, X32))
    losses = LOSS[sampler.query_indices_]
    p = row_probabilities(sampler.state_.rows, losses, 0.3, mix=0.1)
    ref = cs.sensitivity.sensitivity_probabilities(
        losses[np.asarray(sampler.labels_)], np.asarray(sampler.distances_), 0.3, mix=0.1)
    np.testing.assert_allclose(p, ref, rtol=1e-13)


def test_chunk_counts_stay_bounded_for_huge_n():
    # n = 1e9: the per-group center counts stay under a sixth of the room
    for limit in ("400MB", "2GB"):
        plan = plan_chunks(limit, n=10**9, d=128, k=1000, fit_rows=40_000)
        room = plan.memory_limit - plan.fixed_bytes
        groups = -(-10**9 // plan.group_rows)
        assert groups * 8 * 1001 <= room // 6
        assert plan.group_rows * 40 <= room // 2
        assert not plan.store_in_memory
    with pytest.raises(ValueError, match="memory_limit is too small for n=1000000000000 rows"):
        plan_chunks("40MB", n=10**12, d=4, k=10_000, fit_rows=10_000)


def test_groups_of_chunks_give_the_same_selection(tmp_path, monkeypatch):
    import coreselect.clustering as oc

    ref = cs.SensitivitySampler(7, seed=6, chunk_size=100, memory_limit="1GB", design="sensitivity").fit(X32)
    real = oc.plan_chunks

    def grouped(*a, **kw):
        import dataclasses

        return dataclasses.replace(real(*a, **kw), group_chunks=3)

    monkeypatch.setattr(oc, "plan_chunks", grouped)
    got = cs.SensitivitySampler(7, seed=6, chunk_size=100, memory_limit="1GB", design="sensitivity").fit(X32)
    assert got.state_.rows.starts.shape[0] - 1 == -(-30 // 3)
    np.testing.assert_array_equal(got.state_.rows.counts.sum(axis=0), ref.cluster_sizes_)
    losses = LOSS[ref.query_indices_]
    _same_selection(ref.sample(losses, 400, seed=2), got.sample(losses, 400, seed=2))
