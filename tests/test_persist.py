"""Saving and loading a fitted SensitivitySampler (coreselect.persist)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.persist import FORMAT, load_sampler, read_meta, save_sampler


@pytest.fixture
def data():
    X, _ = make_blobs(n=400, d=3, k=5, seed=4)
    loss = (X**2).sum(axis=1) / 10 + 0.1
    return X, loss


def _same_selection(a, b):
    for name in ("indices", "weights", "probabilities", "centers", "query_indices",
                 "query_losses", "cluster_sizes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.n, a.replace) == (b.n, b.replace)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("replace", [True, False])
def test_sample_after_load_equals_python_api(tmp_path, data, seed, replace):
    X, loss = data
    sampler = cs.SensitivitySampler(6, seed=seed).fit(X)
    path = save_sampler(sampler, tmp_path / "plan.npz", X=X)
    loaded = load_sampler(path, X)
    q = loaded.query_indices_
    got = loaded.sample(loss[q], 40, replace=replace)
    ref = cs.sensitivity_sample(X, loss.__getitem__, 40, n_clusters=6, seed=seed,
                                replace=replace)
    _same_selection(got, ref)
    # the saved stream is restored at every load: the same draw again
    _same_selection(load_sampler(path).sample(loss[q], 40, replace=replace), got)


def test_methods_on_the_class(tmp_path, data):
    X, loss = data
    sampler = cs.SensitivitySampler(5, z=1.0, seed=3, max_iter=7).fit(X)
    sampler.save(tmp_path / "p.npz", X=X)
    loaded = cs.SensitivitySampler.load(tmp_path / "p.npz", X)
    assert isinstance(loaded, cs.SensitivitySampler)
    assert (loaded.n_clusters, loaded.z, loaded.seed, loaded.max_iter) == (5, 1.0, 3, 7)
    for name in ("query_indices_", "labels_", "distances_", "cluster_sizes_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(sampler, name))
    assert loaded.cost_ == sampler.cost_
    assert (loaded.n_samples_, loaded.n_features_in_) == X.shape
    np.testing.assert_array_equal(loaded.clustering_.fitted_centers,
                                  sampler.clustering_.fitted_centers)
    _same_selection(loaded.sample(loss[loaded.query_indices_], 25),
                    sampler.sample(loss[sampler.query_indices_], 25))


def test_file_is_npz_with_json_and_no_pickles(tmp_path, data):
    X, _ = data
    path = save_sampler(cs.SensitivitySampler(4, seed=0).fit(X), tmp_path / "p.npz", X=X)
    with np.load(path, allow_pickle=False) as f:
        assert f["labels"].dtype == np.int64 and f["distances"].dtype == np.float64
        meta = json.loads(str(f["meta"]))
    assert meta["format"] == FORMAT
    assert meta["coreselect_version"] == cs.__version__
    assert meta["params"]["seed"] == 0 and meta["params"]["n_clusters"] == 4
    assert meta["fingerprint"]["shape"] == [400, 3]
    assert meta["fingerprint"]["hash"].startswith("sha256:")
    assert meta["rng"]["bit_generator"] == "PCG64"
    assert read_meta(path) == meta


def test_other_embeddings_are_refused(tmp_path, data):
    X, _ = data
    sampler = cs.SensitivitySampler(4, seed=0).fit(X)
    with_hash = save_sampler(sampler, tmp_path / "h.npz", X=X)
    Y = X.copy()
    Y[123, 1] += 1e-9  # a value the distance check could miss: the hash does not
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_sampler(with_hash, Y)
    with pytest.raises(ValueError, match="shape"):
        load_sampler(with_hash, X[:-1])
    with pytest.raises(ValueError, match="dtype"):
        load_sampler(with_hash, X.astype(np.float32))
    load_sampler(with_hash, X.copy())  # the same values load


def test_without_hash_shape_and_distances_are_checked(tmp_path, data):
    X, _ = data
    sampler = cs.SensitivitySampler(4, seed=0).fit(X)
    path = save_sampler(sampler, tmp_path / "p.npz")
    assert "hash" not in read_meta(path)["fingerprint"]
    with pytest.raises(ValueError, match="shape"):
        load_sampler(path, X[:, :2])
    shuffled = X[np.random.default_rng(0).permutation(len(X))]
    with pytest.raises(ValueError, match="do not match"):
        load_sampler(path, shuffled)
    load_sampler(path, X)


def test_fingerprint_attribute_is_used(tmp_path, data):
    from coreselect.io import fingerprint

    X, _ = data
    sampler = cs.SensitivitySampler(4, seed=0).fit(X)
    sampler.fingerprint_ = fingerprint(X)
    path = save_sampler(sampler, tmp_path / "p.npz")
    assert read_meta(path)["fingerprint"] == sampler.fingerprint_


def test_generator_seed_and_mt19937_state_round_trip(tmp_path, data):
    X, loss = data
    rng = np.random.Generator(np.random.MT19937(5))
    sampler = cs.SensitivitySampler(4, seed=rng).fit(X)
    path = save_sampler(sampler, tmp_path / "p.npz")
    loaded = load_sampler(path)
    assert loaded.seed is None
    a = loaded.sample(loss[loaded.query_indices_], 30)
    b = sampler.sample(loss[sampler.query_indices_], 30)
    _same_selection(a, b)


def test_unfitted_and_bad_files(tmp_path, data):
    X, _ = data
    with pytest.raises(RuntimeError, match="not fitted"):
        save_sampler(cs.SensitivitySampler(3), tmp_path / "p.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable coreselect plan"):
        load_sampler(tmp_path / "junk.npz")
    np.save(tmp_path / "arr.npy", X)
    with pytest.raises(ValueError, match="not a .npz archive"):
        load_sampler(tmp_path / "arr.npy")
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"format": "something/9"})))
    with pytest.raises(ValueError, match="format"):
        load_sampler(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        load_sampler(tmp_path / "missing.npz")


def test_corrupted_arrays_are_refused(tmp_path, data):
    X, _ = data
    path = save_sampler(cs.SensitivitySampler(4, seed=0).fit(X), tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        content = {name: f[name] for name in f.files}
    content["labels"] = content["labels"][:-1]
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ValueError, match="corrupted"):
        load_sampler(tmp_path / "bad.npz")


def test_truncated_plan_is_refused(tmp_path, data):
    X, _ = data
    path = save_sampler(cs.SensitivitySampler(4, seed=0).fit(X), tmp_path / "p.npz")
    raw = open(path, "rb").read()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError):
        load_sampler(tmp_path / "t.npz")
    assert zipfile.is_zipfile(path)


def test_version_mismatch_warns(tmp_path, data, caplog):
    X, _ = data
    path = save_sampler(cs.SensitivitySampler(4, seed=0).fit(X), tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        content = {name: f[name] for name in f.files}
    meta = json.loads(str(content["meta"]))
    meta["coreselect_version"] = "0.0.1"
    content["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **content)
    with caplog.at_level("WARNING", logger="coreselect.persist"):
        load_sampler(tmp_path / "old.npz")
    assert "0.0.1" in caplog.text


def test_save_is_atomic(tmp_path, data, monkeypatch):
    X, _ = data
    sampler = cs.SensitivitySampler(4, seed=0).fit(X)
    path = tmp_path / "p.npz"
    path.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_sampler(sampler, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


def test_edited_arrays_are_refused_by_their_checksum(tmp_path, data):
    # same shapes, other values: only the checksum can tell (lam would move with the cost)
    X, _ = data
    path = save_sampler(cs.SensitivitySampler(4, seed=0).fit(X), tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        content = {name: f[name] for name in f.files}
    assert json.loads(str(content["meta"]))["checksum"].startswith("sha256:")
    for name in ("distances", "labels", "query_indices"):
        edited = dict(content)
        edited[name] = content[name].copy()
        edited[name][1] = edited[name][1] * 3 if name == "distances" else edited[name][0]
        np.savez(tmp_path / "edited.npz", **edited)
        with pytest.raises(ValueError, match="corrupted: its arrays do not match the checksum"):
            load_sampler(tmp_path / "edited.npz")
    # the untouched file still loads, and a plan of an out-of-core fit is the same plan
    assert load_sampler(path).n_samples_ == X.shape[0]


def test_plan_of_a_spilled_fit_samples_the_same_after_loading(tmp_path, data):
    X, loss = data
    np.save(tmp_path / "x.npy", X)
    sampler = cs.SensitivitySampler(5, seed=2, memory_limit="200MB", chunk_size=64).fit(
        str(tmp_path / "x.npy"))
    assert sampler.state_.rows.n_blocks > 1
    path = save_sampler(sampler, tmp_path / "p.npz")
    loaded = load_sampler(path)
    q = sampler.query_indices_
    _same_selection(loaded.sample(loss[q], 60, seed=3), sampler.sample(loss[q], 60, seed=3))
