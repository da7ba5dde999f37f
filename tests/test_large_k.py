"""The fit at large k (issue 16): init="scalable" (k-means|| seeding) against the greedy fit
and scikit-learn, its invariances, and the greedy fit still reachable."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.assign import assign
from coreselect.clustering import kz_clustering
from coreselect.seeding import parallel_seeding


def _snapped_sklearn_cost(X, k, seed):
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=1, random_state=seed).fit(X)
    snap = np.unique(assign(km.cluster_centers_, X)[0])
    return assign(X, X[snap])[1].sum()


@pytest.mark.parametrize("k", [50, 500])
def test_scalable_cost_within_the_guard(k):
    # clustered data, as many components as centers; 40 rows per component at k = 500
    X, _ = make_blobs(n=max(4000, 40 * k), d=16, k=k, spread=1.0, seed=3)
    seeds = range(2) if k == 50 else range(1)
    ours = np.mean([kz_clustering(X, k, seed=s).cost for s in seeds])
    greedy = np.mean([kz_clustering(X, k, seed=s, init="greedy").cost for s in seeds])
    assert ours <= 1.05 * greedy
    if k == 50:
        assert ours <= 1.1 * np.mean([_snapped_sklearn_cost(X, k, s) for s in seeds])


def test_the_default_is_scalable_and_greedy_is_reachable_everywhere():
    X, _ = make_blobs(n=3000, d=5, k=30, spread=1.0, seed=1)
    default = kz_clustering(X, 30, seed=4)
    scalable = kz_clustering(X, 30, seed=4, init="scalable")
    greedy = kz_clustering(X, 30, seed=4, init="greedy")
    np.testing.assert_array_equal(default.center_indices, scalable.center_indices)
    # the same parameter through the sampler and sensitivity_sample's **fit_params
    sampler = cs.SensitivitySampler(30, seed=4, init="greedy", design="sensitivity").fit(X)
    np.testing.assert_array_equal(sampler.query_indices_, greedy.center_indices)
    loss = np.ones(X.shape[0])
    sel = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=30, seed=4, init="greedy",
                                design="sensitivity")
    np.testing.assert_array_equal(sel.query_indices, greedy.center_indices)
    with pytest.raises(ValueError, match=r"init must be one of \['scalable', 'greedy'\]"):
        kz_clustering(X, 30, init="kmeans")
    with pytest.raises(ValueError, match="init must be one of"):
        cs.SensitivitySampler(30, init="random").fit(X)


@pytest.mark.parametrize("init", ["scalable", "greedy"])
def test_same_seed_same_centers_whatever_the_chunk_size(init):
    # n = 12,000 > 10,000: the scalable fit seeds on 10,000 rows, then steps on all 12,000
    X, _ = make_blobs(n=12_000, d=8, k=300, spread=1.0, seed=2)
    ref = kz_clustering(X, 300, seed=7, init=init)
    again = kz_clustering(X, 300, seed=7, init=init)
    chunked = kz_clustering(X, 300, seed=7, init=init, chunk_size=999)
    for other in (again, chunked):
        np.testing.assert_array_equal(ref.center_indices, other.center_indices)
        np.testing.assert_array_equal(ref.labels, other.labels)
        assert ref.cost == other.cost
    assert ref.n_clusters == 300
    assert ref.fit_sample_size == 12_000


def test_the_backend_does_not_change_the_scalable_fit():
    from coreselect.backends import available_backends

    X, _ = make_blobs(n=12_000, d=8, k=100, spread=1.0, seed=5)
    ref = kz_clustering(X, 100, seed=3)
    for name in available_backends():
        if name in ("numpy", "auto"):
            continue
        try:
            got = kz_clustering(X[:10], 2, seed=3, backend=name)
        except ImportError:
            continue
        got = kz_clustering(X, 100, seed=3, backend=name)
        np.testing.assert_array_equal(ref.center_indices, got.center_indices)


def test_parallel_seeding_covers_separated_clusters_and_stops_at_distinct_rows():
    X, comp = make_blobs(n=2000, d=6, k=40, spread=0.1, seed=9)
    rows = parallel_seeding(X, 40, seed=1)
    assert np.unique(rows).shape[0] == 40
    assert np.unique(comp[rows]).shape[0] >= 38  # nearly every component gets a seed
    few = np.repeat(X[:5], 30, axis=0)
    got = parallel_seeding(few, 12, seed=0)
    assert np.unique(few[got], axis=0).shape[0] == got.shape[0] == 5


@pytest.mark.parametrize("z", [1.0, 3.0])
def test_scalable_fit_for_other_powers(z):
    X, _ = make_blobs(n=12_000, d=4, k=20, spread=0.5, seed=4)
    ours = kz_clustering(X, 20, z=z, seed=0).cost
    greedy = kz_clustering(X, 20, z=z, seed=0, init="greedy").cost
    assert ours <= 1.1 * greedy


def test_a_saved_sampler_keeps_its_init(tmp_path):
    X, _ = make_blobs(n=500, d=3, k=5, seed=0)
    sampler = cs.SensitivitySampler(5, seed=1, init="greedy").fit(X)
    path = sampler.save(tmp_path / "plan")
    loaded = cs.SensitivitySampler.load(path, X)
    assert loaded.init == "greedy"
    np.testing.assert_array_equal(loaded.query_indices_, sampler.query_indices_)


def test_the_command_line_plan_takes_init(tmp_path, capsys):
    import json

    from coreselect import cli

    X, _ = make_blobs(n=400, d=3, k=6, seed=2, dtype=np.float32)
    np.save(tmp_path / "emb.npy", X)
    rc = cli.main(["plan", str(tmp_path / "emb.npy"), "-k", "6", "--seed", "3", "--init",
                   "greedy", "--out", str(tmp_path / "run"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    ref = cs.SensitivitySampler(6, seed=3, init="greedy").fit(X)
    assert json.loads(out)["queries"] == len(ref.query_indices_)
    saved = cs.SensitivitySampler.load(tmp_path / "run" / "plan.npz")
    assert saved.init == "greedy"
    np.testing.assert_array_equal(saved.query_indices_, ref.query_indices_)


def test_copies_drawn_together_are_one_candidate():
    # 40% of the rows are copies of 10 rows: no repeated center, k distinct ones
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 6))
    X = np.vstack([base, np.repeat(base[:10], 200, axis=0)])
    rows = parallel_seeding(X, 300, seed=2)
    assert np.unique(X[rows], axis=0).shape[0] == rows.shape[0] == 300
    cl = kz_clustering(np.vstack([X] * 3), 300, seed=2)
    assert np.unique(np.vstack([X] * 3)[cl.center_indices], axis=0).shape[0] == 300
