"""One pipeline for every kind of pool: the same selection and the same diagnostics.

In memory, a memory-mapped ``.npy``, a ``.npy`` path, a list of shards and a Dask array (on the
threaded scheduler and on a LocalCluster) go through the one fit and the one sample step, so
they give the same indices, probabilities to 1e-12 and the same diagnostics (keys, verdict,
warnings) for sensitivity_sample, SensitivitySampler.sample and adaptive_sample.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
import coreselect._validation as validation
import coreselect.clustering as clustering
from coreselect.pools import ArrayPool, Pool, ShardedArray, as_pool

X, _ = make_blobs(n=2400, d=5, k=7, seed=31, dtype=np.float32)
# a loss that is not smooth in the embeddings: the diagnostics have something to say
LOSS = np.abs(X[:, 0].astype(np.float64)) + (np.arange(X.shape[0]) % 3 == 0)


def _pools(tmp_path):
    """The same rows as every kind of pool (the Dask ones only where dask is installed)."""
    path = tmp_path / "x.npy"
    np.save(path, X)
    shards = []
    for i, (a, b) in enumerate([(0, 700), (700, 701), (701, 1900), (1900, 2400)]):
        shards.append(tmp_path / f"s{i}.npy")
        np.save(shards[-1], X[a:b])
    out = {
        "array": X,
        "memmap": np.load(path, mmap_mode="r"),
        "path": str(path),
        "shards": [str(p) for p in shards],
    }
    try:
        import dask.array as da

        out["dask"] = da.from_array(X, chunks=(500, 5))
    except ImportError:
        pass
    return out


def _same(a, b, what):
    np.testing.assert_array_equal(a.indices, b.indices, err_msg=what)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-12, err_msg=what)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12, err_msg=what)
    np.testing.assert_array_equal(a.centers, b.centers, err_msg=what)
    np.testing.assert_array_equal(a.query_indices, b.query_indices, err_msg=what)
    _same_diagnostics(a.diagnostics, b.diagnostics, what)


def _same_diagnostics(a, b, what):
    assert a and b, what
    assert sorted(a) == sorted(b), what
    assert a["verdict"] == b["verdict"], what
    assert len(a["warnings"]) == len(b["warnings"]), what
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, float) and isinstance(vb, float):
            assert math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12), (what, key, va, vb)
        elif key not in ("warnings",):
            assert va == vb or (isinstance(va, dict) and va.keys() == vb.keys()), (what, key)


@pytest.mark.parametrize("replace", [True, False])
def test_sensitivity_sample_is_the_same_on_every_pool(tmp_path, replace):
    pools = _pools(tmp_path)
    ref = cs.sensitivity_sample(X, LOSS.__getitem__, 300, n_clusters=15, seed=4,
                                replace=replace, mix=0.1)
    assert ref.diagnostics["verdict"] and ref.params["path"] == "in-memory"
    for name, pool in pools.items():
        got = cs.sensitivity_sample(pool, LOSS.__getitem__, 300, n_clusters=15, seed=4,
                                    replace=replace, mix=0.1)
        _same(ref, got, name)
        assert got.params["path"] == {"array": "in-memory", "dask": "dask"}.get(name,
                                                                              "out-of-core")


def test_sampler_sample_is_the_same_on_every_pool(tmp_path):
    pools = _pools(tmp_path)
    for name, pool in pools.items():
        ref = cs.SensitivitySampler(11, seed=2).fit(X)
        losses = LOSS[ref.query_indices_]
        got = cs.SensitivitySampler(11, seed=2).fit(pool)
        np.testing.assert_array_equal(got.query_indices_, ref.query_indices_)
        for kw in ({}, {"lam": 0.0}, {"mix": 0.4, "replace": False}):
            _same(ref.sample(losses, 250, seed=9, **kw), got.sample(losses, 250, seed=9, **kw),
                  f"{name} {kw}")
        # the sampler's own stream continues the same way too
        _same(ref.sample(losses, 50), got.sample(losses, 50), f"{name} stream")


def test_adaptive_sample_is_the_same_on_every_pool(tmp_path):
    pools = _pools(tmp_path)
    ref = cs.adaptive_sample(X, LOSS.__getitem__, 120, rounds=3, n_clusters=8, seed=5)
    for name, pool in pools.items():
        got = cs.adaptive_sample(pool, LOSS.__getitem__, 120, rounds=3, n_clusters=8, seed=5)
        assert len(got) == len(ref)
        for i, (a, b) in enumerate(zip(ref, got, strict=True)):
            _same(a, b, f"{name} round {i + 1}")


def test_memory_mapped_input_carries_the_diagnostics(tmp_path):
    # the README's first example: a memmap used to come back with diagnostics == {}
    mm = _pools(tmp_path)["memmap"]
    sel = cs.sensitivity_sample(mm, LOSS.__getitem__, 200, n_clusters=10, seed=0)
    assert sel.params["path"] == "out-of-core"
    assert len(sel.diagnostics) >= 27 and sel.diagnostics["verdict"]


def test_local_cluster_gives_the_same_selection(tmp_path):
    distributed = pytest.importorskip("distributed")
    from coreselect.pools.dask import from_npy_shards

    paths = [str(p) for p in _pools(tmp_path)["shards"]]
    ref = cs.sensitivity_sample(X, LOSS.__getitem__, 400, n_clusters=12, seed=8)
    ref_sampler = cs.SensitivitySampler(12, seed=8).fit(X)
    losses = LOSS[ref_sampler.query_indices_]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        Xd = from_npy_shards(paths, chunk_rows=450)
        _same(ref, cs.sensitivity_sample(Xd, LOSS.__getitem__, 400, n_clusters=12, seed=8),
              "sensitivity_sample")
        got = cs.SensitivitySampler(12, seed=8).fit(Xd)
        for replace in (True, False):
            _same(ref_sampler.sample(losses, 300, seed=1, replace=replace),
                  got.sample(losses, 300, seed=1, replace=replace), f"sample {replace}")
        rounds = cs.adaptive_sample(Xd, LOSS.__getitem__, 100, rounds=2, n_clusters=6, seed=3)
    for a, b in zip(cs.adaptive_sample(X, LOSS.__getitem__, 100, rounds=2, n_clusters=6,
                                       seed=3), rounds, strict=True):
        _same(a, b, "adaptive")


def test_every_pool_satisfies_the_protocol(tmp_path):
    pools = _pools(tmp_path)
    for name, raw in pools.items():
        pool = as_pool(raw)
        assert isinstance(pool, Pool), name
        assert (pool.n, pool.d) == X.shape, name
        # a block is valid until the next one is read (a pool may reuse its buffer)
        starts, blocks = zip(*[(a, np.array(b)) for a, b in pool.blocks(1000)], strict=True)
        assert starts[0] == 0
        np.testing.assert_array_equal(np.concatenate([np.asarray(b) for b in blocks]), X)
        rows = np.array([2399, 0, 700, 700, 5])
        np.testing.assert_array_equal(pool.take(rows), X[rows], err_msg=name)
        assert as_pool(pool) is pool  # a pool is passed through, not routed again
    assert isinstance(as_pool(pools["memmap"]), ShardedArray)  # read through its file
    assert isinstance(as_pool(X), ArrayPool)


def _count_scans(monkeypatch):
    """Count the rows scanned for NaN and inf, wherever the scan runs."""
    seen = []
    real = validation.check_finite_rows

    def counting(block, start=0, name="X", **kw):
        seen.append(int(np.shape(block)[0]))
        return real(block, start, name, **kw)

    monkeypatch.setattr(validation, "check_finite_rows", counting)
    monkeypatch.setattr(clustering, "check_finite_rows", counting)
    return seen


def test_an_array_is_scanned_for_nan_once_per_call(tmp_path, monkeypatch):
    seen = _count_scans(monkeypatch)
    n = X.shape[0]
    cs.sensitivity_sample(X, LOSS.__getitem__, 50, n_clusters=6, seed=0)
    assert sum(seen) == n
    seen.clear()
    cs.SensitivitySampler(6, seed=0).fit(X)
    assert sum(seen) == n
    seen.clear()
    cs.kz_clustering(X, 6, seed=0)
    assert sum(seen) == n
    seen.clear()
    cs.adaptive_sample(X, LOSS.__getitem__, 20, rounds=2, n_clusters=4, seed=0)
    assert sum(seen) == n
    seen.clear()
    A = X[:, :4].astype(np.float64)
    cs.regression_sample(A, (A @ np.ones(4)).__getitem__, 40, n_clusters=10, seed=0)
    assert sum(seen) == n


def test_a_file_is_scanned_once_in_the_pass(tmp_path, monkeypatch):
    seen = _count_scans(monkeypatch)
    path = tmp_path / "x.npy"
    np.save(path, X)
    cs.SensitivitySampler(6, seed=0, fit_sample_size=500).fit(str(path))
    # every row once in the one pass, plus the 500 fitting rows read before it
    assert sum(seen) == X.shape[0] + 500


def test_the_pass_names_the_bad_row_of_any_pool(tmp_path):
    bad = X.copy()
    bad[1234, 2] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    for pool in (bad, str(path), np.load(path, mmap_mode="r")):
        with pytest.raises(ValueError, match="X contains NaN at row 1234, column 2"):
            cs.SensitivitySampler(4, seed=0, fit_sample_size=4).fit(pool)
