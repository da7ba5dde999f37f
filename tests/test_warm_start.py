"""Warm starts and budgets: rows already labelled are never queried or drawn, every registry
strategy spends exactly ``size`` new labels, and no queried center is drawn again without
replacement; the estimates stay unbiased for the rows they cover."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.baselines import get_strategy

X, _ = make_blobs(n=500, d=4, k=6, seed=7)
LOSS = np.abs(X[:, 0]) / 10 + 0.05 * (np.arange(500) % 4)
LABELLED = np.random.default_rng(0).choice(500, size=60, replace=False)


def _new_labels(sel, labelled):
    paid = np.union1d(np.unique(sel.indices), sel.query_indices)
    return np.setdiff1d(paid, labelled), np.intersect1d(paid, labelled)


@pytest.mark.parametrize("name", ["uniform", "kcenter", "margin", "least_confidence",
                                  "entropy", "badge", "sensitivity"])
def test_every_strategy_spends_size_new_labels_and_none_labelled(name):
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=500)
    sel = get_strategy(name)(40, X=X, probs=probs, oracle=LOSS.__getitem__, n=500,
                             labelled=LABELLED, seed=3)
    new, again = _new_labels(sel, LABELLED)
    assert again.size == 0, name
    assert new.size == 40, (name, new.size)


def test_no_queried_center_is_drawn_again_without_replacement():
    for seed in range(5):
        sel = cs.sensitivity_sample(X, LOSS.__getitem__, 80, n_clusters=15, seed=seed,
                                    replace=False)
        assert np.intersect1d(sel.indices, sel.query_indices).size == 0
        assert sel.params["known_total"] == pytest.approx(sel.query_losses.sum())
        assert np.unique(sel.indices).size == 80


def test_excluded_rows_are_never_queried_nor_drawn_on_any_pool(tmp_path):
    np.save(tmp_path / "x.npy", X)
    pools = [X, str(tmp_path / "x.npy")]
    try:
        import dask.array as da

        pools.append(da.from_array(X, chunks=(120, 4)))
    except ImportError:
        pass
    ref = None
    for pool in pools:
        for replace in (True, False):
            sel = cs.sensitivity_sample(pool, LOSS.__getitem__, 100, n_clusters=12, seed=5,
                                        replace=replace, exclude=LABELLED, mix=0.2)
            assert np.intersect1d(sel.query_indices, LABELLED).size == 0
            assert np.intersect1d(sel.indices, LABELLED).size == 0
            assert sel.params["n_covered"] == 440 and sel.params["excluded"] == 60
            if replace:
                if ref is None:
                    ref = sel
                np.testing.assert_array_equal(sel.indices, ref.indices)
                np.testing.assert_allclose(sel.probabilities, ref.probabilities, rtol=1e-12)


@pytest.mark.parametrize("replace", [True, False])
def test_estimates_are_unbiased_for_the_rows_they_cover(replace):
    covered = np.setdiff1d(np.arange(500), LABELLED)
    truth = LOSS[covered].sum()
    est, diff = [], []
    for seed in range(300):
        sel = cs.sensitivity_sample(X, LOSS.__getitem__, 30, n_clusters=8, seed=seed,
                                    replace=replace, exclude=LABELLED, mix=0.1)
        est.append(sel.estimate_total(LOSS[sel.indices]).value)
        diff.append(sel.estimate_total(LOSS[sel.indices], method="difference").value)
        assert sel.estimate_mean(LOSS[sel.indices]).value == pytest.approx(est[-1] / 440)
    for values in (np.array(est), np.array(diff)):
        se = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - truth) < 4 * se + 1e-9 * truth, (values.mean(), truth, se)


def test_a_saved_plan_keeps_its_excluded_rows(tmp_path):
    sampler = cs.SensitivitySampler(10, seed=1).fit(X, exclude=LABELLED)
    path = sampler.save(tmp_path / "plan.npz")
    loaded = cs.SensitivitySampler.load(path)
    q = sampler.query_indices_
    a = sampler.sample(LOSS[q], 50, seed=2, replace=False)
    b = loaded.sample(LOSS[q], 50, seed=2, replace=False)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert np.intersect1d(b.indices, LABELLED).size == 0


def test_bad_exclude_names_the_argument():
    with pytest.raises(ValueError, match=r"exclude must lie in \[0, 500\); got 500"):
        cs.sensitivity_sample(X, LOSS.__getitem__, 10, n_clusters=3, exclude=[1, 500])
    with pytest.raises(ValueError, match="exclude must hold distinct rows; row 4"):
        cs.sensitivity_sample(X, LOSS.__getitem__, 10, n_clusters=3, exclude=[4, 2, 4])
    with pytest.raises(ValueError, match="exclude leaves no row to select"):
        cs.SensitivitySampler(3).fit(X, exclude=np.arange(500))
    with pytest.raises(ValueError, match="size must be at most n=440"):
        cs.sensitivity_sample(X, LOSS.__getitem__, 441, n_clusters=3, exclude=LABELLED,
                              replace=False)
    with pytest.raises(TypeError, match="exclude must hold integers"):
        cs.sensitivity_sample(X, LOSS.__getitem__, 10, n_clusters=3, exclude=[0.5])
