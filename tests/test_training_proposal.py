"""Training sets from the model's scores (issue 15): ``proposal_power=`` on the one sample
step, ``margin_uncertainty``, the registry's score-aware sensitivity strategy, and the one
training-weights default (``Selection.training_weights``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect import Selection
from coreselect.baselines import get_strategy
from coreselect.selection import TRAINING_WEIGHT_POWER
from coreselect.sensitivity import inclusion_probabilities
from coreselect.surrogates import TRAINING_PROPOSAL_POWER, margin_uncertainty

X, COMP = make_blobs(n=900, d=4, k=6, seed=31)
_rng = np.random.default_rng(8)
_logits = _rng.normal(0.0, 2.0, size=(900, 4))
PROBS = np.exp(_logits) / np.exp(_logits).sum(axis=1, keepdims=True)
U = margin_uncertainty(PROBS)
LOSS = U + _rng.gamma(1.0, 0.2, size=900)  # a loss the score predicts, with noise


def test_margin_uncertainty_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(margin_uncertainty(p), [0.5, 0.95, 0.0, 1.0])
    for bad in (np.array([[0.7, 0.7]]), np.ones((3, 1)), np.array([[np.nan, 1.0]])):
        with pytest.raises(ValueError, match="probs"):
            margin_uncertainty(bad)


@pytest.mark.parametrize("replace", [False, True])
def test_the_draws_follow_the_surrogate_to_the_power(replace):
    sampler = cs.SensitivitySampler(6, seed=0, design="sensitivity").fit(X)
    q = sampler.query_indices_
    sel = sampler.sample(LOSS[q], 120, seed=1, surrogate=U, proposal_power=3.0,
                         replace=replace)
    mass = U ** 3.0
    if replace:
        want = mass / mass.sum()
    else:
        eligible = np.ones(X.shape[0], dtype=bool)
        eligible[q] = False  # the queried centers are known: never drawn again
        want = inclusion_probabilities(np.where(eligible, mass, 0.0), 120, eligible)
        assert not np.isin(sel.indices, q).any()
    np.testing.assert_allclose(sel.probabilities, want[sel.indices], rtol=1e-10)
    assert sel.params["proposal_power"] == 3.0
    assert sel.params["proposal"] == "surrogate ** 3 per row + lam v"
    assert sel.params["lam"] == 0.0 and "proposal_power" in sel.params["lam_rule"]
    # the rows the score ranks high are drawn far more often than by the default proposal
    default = sampler.sample(LOSS[q], 120, seed=1, surrogate=U, replace=replace)
    assert U[sel.indices].mean() > U[default.indices].mean() + 0.05


def test_auto_takes_the_per_row_design_and_says_why():
    sel = cs.sensitivity_sample(X, LOSS.__getitem__, 100, n_clusters=10, seed=2, surrogate=U,
                                proposal_power=4.0, replace=False)
    assert sel.params["design"] == "sensitivity"
    assert sel.params["design_rule"].startswith("auto: proposal_power=4 asks for draws")
    assert sel.params["queries"] == "random"  # auto's fit: one random row per cluster


def test_weights_stay_unbiased_over_seeds():
    sampler = cs.SensitivitySampler(6, seed=4, design="sensitivity").fit(X)
    q = sampler.query_indices_
    truth = LOSS.sum()
    est = []
    for seed in range(300):
        sel = sampler.sample(LOSS[q], 60, seed=seed, surrogate=U, proposal_power=2.0,
                             replace=False)
        est.append(sel.estimate_total(LOSS[sel.indices], method="weighted").value)
    est = np.asarray(est)
    se = est.std(ddof=1) / np.sqrt(est.shape[0])
    assert abs(est.mean() - truth) < 4 * se


@pytest.mark.parametrize("kwargs, error, message", [
    ({"proposal_power": 2.0}, ValueError, "needs surrogate="),
    ({"proposal_power": 2.0, "surrogate": U, "design": "stratified"}, ValueError,
     "design='auto' or 'sensitivity'"),
    ({"proposal_power": 0.0, "surrogate": U}, ValueError, r"proposal_power .* \(0, inf\)"),
    ({"proposal_power": float("inf"), "surrogate": U}, ValueError,
     r"proposal_power .* \(0, inf\)"),
    ({"proposal_power": True, "surrogate": U}, TypeError, "proposal_power must be"),
    ({"proposal_power": "4", "surrogate": U}, TypeError, "proposal_power must be"),
])
def test_bad_proposal_power_names_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        cs.sensitivity_sample(X, LOSS.__getitem__, 50, n_clusters=5, seed=0, **kwargs)
    sampler = cs.SensitivitySampler(5, seed=0).fit(X)
    with pytest.raises(error, match=message):
        sampler.sample(LOSS[sampler.query_indices_], 50, **kwargs)


def test_every_pool_gives_the_same_training_selection(tmp_path):
    np.save(tmp_path / "x.npy", X)
    ref = cs.sensitivity_sample(X, LOSS.__getitem__, 80, n_clusters=8, seed=5, surrogate=U,
                                proposal_power=4.0, replace=False, chunk_size=128)
    pools = [str(tmp_path / "x.npy")]
    try:
        import dask.array as da

        pools.append(da.from_array(X, chunks=(300, 4)))
    except ImportError:
        pass
    for pool in pools:
        got = cs.sensitivity_sample(pool, LOSS.__getitem__, 80, n_clusters=8, seed=5,
                                    surrogate=U, proposal_power=4.0, replace=False,
                                    chunk_size=128, memory_limit="1GB")
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-10)


def test_the_registry_draws_by_the_margin_score_to_the_training_power():
    labelled = np.arange(0, 900, 9)
    strat = get_strategy("sensitivity")
    oracle = LOSS.__getitem__
    sel = strat(150, X=X, probs=PROBS, oracle=oracle, labelled=labelled, seed=3)
    assert TRAINING_PROPOSAL_POWER == 4.0
    assert sel.params["proposal_power"] == TRAINING_PROPOSAL_POWER
    rows = sel.all_labelled()[0]
    assert rows.shape[0] == 150 and not np.isin(rows, labelled).any()
    # the same as the public API with the margin score, on the same fit
    ref = cs.sensitivity_sample(X, oracle, 150 - sel.n_queries, n_clusters=30, seed=3,
                                exclude=labelled, surrogate=U, proposal_power=4.0,
                                replace=False)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    # proposal_power=None: the estimation proposal on the expected cross-entropy
    est = strat(150, X=X, probs=PROBS, oracle=oracle, labelled=labelled, seed=3,
                proposal_power=None)
    assert "proposal_power" not in est.params
    assert est.all_labelled()[0].shape[0] == 150
    # the stratified design with probs: the expected cross-entropy, no power (no error)
    strat_sel = strat(150, X=X, probs=PROBS, oracle=oracle, labelled=labelled, seed=3,
                      design="stratified")
    assert strat_sel.params["design"] == "stratified"
    assert "proposal_power" not in strat_sel.params


def test_training_weights_default_and_powers():
    sel = Selection(indices=[3, 8, 3], weights=[2.0, 9.0, 2.0], probabilities=[0.1] * 3,
                    n=10, replace=True, query_indices=[1, 8], query_losses=[0.2, 0.3])
    assert TRAINING_WEIGHT_POWER == 0.5
    rows, w = sel.training_weights()
    assert rows.tolist() == [3, 8, 1]  # drawn rows sorted, then the queried row not drawn
    root = np.sqrt([4.0, 9.0])
    np.testing.assert_allclose(w, np.r_[2 * root / root.sum(), 1.0])
    np.testing.assert_allclose(sel.training_weights(0.0)[1], [1.0, 1.0, 1.0])
    rows, w = sel.training_weights(1.0, include_queries=False, normalize=False)
    assert rows.tolist() == [3, 8] and w.tolist() == [4.0, 9.0]
    with pytest.raises(ValueError, match="power"):
        sel.training_weights(-0.5)
    with pytest.raises(TypeError, match="power"):
        sel.training_weights("half")


def test_a_selection_drawn_by_scores_trains_unweighted_by_default():
    sel = cs.sensitivity_sample(X, LOSS.__getitem__, 80, n_clusters=8, seed=6, surrogate=U,
                                proposal_power=4.0, replace=False)
    assert np.ptp(sel.weights) > 0  # the sample weights differ ...
    rows, w = sel.training_weights()
    np.testing.assert_allclose(w, 1.0)  # ... but the default trains without them
    assert set(rows.tolist()) == set(sel.all_labelled()[0].tolist())
    from coreselect.integrations.sklearn import selection_weights

    np.testing.assert_allclose(selection_weights(sel)[1], 1.0)
    # a selection drawn by losses keeps tempered weights
    plain = cs.sensitivity_sample(X, LOSS.__getitem__, 80, n_clusters=8, seed=6,
                                  design="sensitivity")
    u, w_raw = plain.unique()
    root = w_raw ** 0.5
    np.testing.assert_allclose(plain.training_weights(include_queries=False)[1],
                               root * root.shape[0] / root.sum())
