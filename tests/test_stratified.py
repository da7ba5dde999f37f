"""design="stratified": the clusters as strata, draws allocated in proportion to the cluster
sizes and drawn without replacement inside each; the queried rows are either the centers, known
exactly (a take-all stratum), or one random row of each cluster, counted as its first draw."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.sensitivity import proportional_allocation

X, COMP = make_blobs(n=1500, d=4, k=6, seed=12)
RNG = np.random.default_rng(4)
# a loss driven by the clusters, with noise inside them
LOSS = COMP * 0.5 + RNG.gamma(2.0, 0.2, size=1500)


def test_allocation_is_proportional_with_one_per_stratum():
    alloc = proportional_allocation(np.array([5, 100, 1, 0, 894]), 50)
    assert alloc.sum() == 50 and alloc[3] == 0 and alloc.min(initial=1) >= 0
    assert (alloc[[0, 1, 2, 4]] >= 1).all() and alloc[2] == 1
    assert abs(alloc[4] - 50 * 894 / 1000) <= 1.5
    assert proportional_allocation(np.array([2, 2]), 4).tolist() == [2, 2]  # all of them


def test_the_selection_follows_the_allocation():
    sel = cs.sensitivity_sample(X, LOSS.__getitem__, 120, n_clusters=10, seed=3,
                                design="stratified")
    p = sel.params
    assert p["design"] == "stratified" and p["queries"] == "random" and not sel.replace
    assert p["queried_in_sample"] == 10 and p["known_total"] == 0.0
    # the 10 queried rows come first, one per cluster, then 120 new distinct rows
    assert np.unique(sel.indices).size == 130
    np.testing.assert_array_equal(sel.indices[:10], sel.query_indices)
    assert np.intersect1d(sel.indices[10:], sel.query_indices).size == 0
    # inside a stratum every row has the same weight N_h / n_h, and they add up to N_h
    for j, c in enumerate(sel.query_indices):
        w = sel.weights[sel.centers == c]
        np.testing.assert_allclose(w, w[0])
        assert w.sum() == pytest.approx(sel.cluster_sizes[j])
    # the estimate needs the new rows' losses only (the queried ones are known)
    full = sel.estimate_total(LOSS[sel.indices]).value
    assert sel.estimate_total(LOSS[sel.indices[10:]]).value == pytest.approx(full)


def test_the_centers_as_a_take_all_stratum():
    sampler = cs.SensitivitySampler(10, seed=3, design="sensitivity").fit(X)
    sel = sampler.sample(LOSS[sampler.query_indices_], 120, design="stratified")
    assert sel.params["queries"] == "centers" and sel.params["queried_in_sample"] == 0
    assert np.unique(sel.indices).size == 120
    assert np.intersect1d(sel.indices, sel.query_indices).size == 0
    for c in np.unique(sel.centers):
        w = sel.weights[sel.centers == c]
        np.testing.assert_allclose(w, w[0])
        size = sel.cluster_sizes[np.searchsorted(sel.query_indices, c)] - 1  # minus the center
        assert w.sum() == pytest.approx(size)
    assert sel.params["known_total"] == pytest.approx(sel.query_losses.sum())


@pytest.mark.heavy
def test_unbiased_over_fresh_clusterings():
    est = []
    for seed in range(200):
        sel = cs.sensitivity_sample(X, LOSS.__getitem__, 40, n_clusters=8, seed=seed,
                                    design="stratified")
        est.append(sel.estimate_total(LOSS[sel.indices]).value)
    est = np.array(est)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - LOSS.sum()) < 4 * se


@pytest.mark.heavy
def test_variance_estimate_matches_the_spread_and_intervals_cover():
    sampler = cs.SensitivitySampler(8, seed=1, design="sensitivity").fit(X)
    q = LOSS[sampler.query_indices_]
    vals, variances, cover = [], [], 0
    for seed in range(400):
        sel = sampler.sample(q, 60, seed=seed, design="stratified")
        e = sel.estimate_total(LOSS[sel.indices])
        vals.append(e.value)
        variances.append(e.stderr ** 2)
        cover += e.ci_low <= LOSS.sum() <= e.ci_high
    ratio = np.mean(variances) / np.var(vals, ddof=1)
    assert 0.8 < ratio < 1.25, ratio
    assert cover / 400 >= 0.92


@pytest.mark.heavy
def test_random_queries_variance_and_coverage_over_fresh_fits():
    vals, variances, cover = [], [], 0
    for seed in range(200):
        sel = cs.sensitivity_sample(X, LOSS.__getitem__, 60, n_clusters=8, seed=seed,
                                    design="stratified")
        e = sel.estimate_total(LOSS[sel.indices])
        vals.append(e.value)
        variances.append(e.stderr ** 2)
        cover += e.ci_low <= LOSS.sum() <= e.ci_high
    vals = np.array(vals)
    assert abs(vals.mean() - LOSS.sum()) < 4 * vals.std(ddof=1) / np.sqrt(vals.size)
    ratio = np.mean(variances) / np.var(vals, ddof=1)
    assert 0.75 < ratio < 1.35, ratio
    assert cover / 200 >= 0.91


@pytest.mark.heavy
def test_random_queries_never_worse_than_uniform_at_equal_calls():
    noise = np.random.default_rng(9).gamma(2.0, 1.0, size=1500)
    strat, unif = [], []
    rng = np.random.default_rng(0)
    for seed in range(300):
        sel = cs.sensitivity_sample(X, noise.__getitem__, 100, n_clusters=6, seed=seed,
                                    design="stratified")
        strat.append(sel.estimate_total(noise[sel.indices]).value)
        rows = rng.choice(1500, 106, replace=False)  # the same oracle calls: k + s
        unif.append(noise[rows].mean() * 1500)
    ratio = np.var(strat) / np.var(unif)
    assert 0.75 < ratio < 1.25, ratio


@pytest.mark.heavy
def test_no_better_and_no_worse_than_uniform_when_the_loss_ignores_the_clusters():
    noise = np.random.default_rng(9).gamma(2.0, 1.0, size=1500)
    sampler = cs.SensitivitySampler(6, seed=2, design="sensitivity").fit(X)
    strat, unif = [], []
    rng = np.random.default_rng(0)
    for seed in range(400):
        sel = sampler.sample(noise[sampler.query_indices_], 100, seed=seed, design="stratified")
        strat.append(sel.estimate_total(noise[sel.indices]).value)
        rows = rng.choice(1500, 106, replace=False)  # the same oracle calls: k + s
        unif.append(noise[rows].mean() * 1500)
    ratio = np.var(strat) / np.var(unif)
    assert 0.75 < ratio < 1.35, ratio


def test_much_better_than_sensitivity_draws_when_the_clusters_explain_the_loss():
    sampler = cs.SensitivitySampler(6, seed=2, design="sensitivity").fit(X)
    q = LOSS[sampler.query_indices_]
    strat = [sampler.sample(q, 60, seed=s, design="stratified") for s in range(150)]
    plain = [sampler.sample(q, 60, seed=s) for s in range(150)]
    vs = np.var([s.estimate_total(LOSS[s.indices]).value for s in strat])
    vp = np.var([s.estimate_total(LOSS[s.indices]).value for s in plain])
    assert vs < vp


@pytest.mark.heavy
def test_every_pool_gives_the_same_stratified_selection(tmp_path):
    np.save(tmp_path / "x.npy", X)
    pools = [str(tmp_path / "x.npy")]
    try:
        import dask.array as da

        pools.append(da.from_array(X, chunks=(400, 4)))
    except ImportError:
        pass
    exclude = np.arange(0, 1500, 7)
    ref = cs.sensitivity_sample(X, LOSS.__getitem__, 90, n_clusters=9, seed=5,
                                design="stratified", exclude=exclude, chunk_size=128)
    assert np.intersect1d(ref.indices, exclude).size == 0
    for pool in pools:
        got = cs.sensitivity_sample(pool, LOSS.__getitem__, 90, n_clusters=9, seed=5,
                                    design="stratified", exclude=exclude, memory_limit="1GB",
                                    chunk_size=128)
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.weights, ref.weights)


def test_bad_design_and_too_few_draws():
    with pytest.raises(ValueError, match=r"design must be one of \['auto', 'sensitivity', 'stratified'\]"):
        cs.sensitivity_sample(X, LOSS.__getitem__, 50, n_clusters=5, design="neyman")
    sampler = cs.SensitivitySampler(12, seed=0, design="sensitivity").fit(X)
    with pytest.raises(ValueError, match="at least one row in each of the 12 non-empty"):
        sampler.sample(LOSS[sampler.query_indices_], 5, design="stratified")
    with pytest.raises(ValueError, match="size=1500 rows asked for but only 1488"):
        sampler.sample(LOSS[sampler.query_indices_], 1500, design="stratified")
