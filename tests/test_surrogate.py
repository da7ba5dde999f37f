"""surrogate=: the model's predicted loss of every row as a per-row proposal and a control
variate; design="auto"; the helpers of coreselect.surrogates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.sensitivity import choose_design, neyman_allocation
from coreselect.surrogates import calibrate_surrogate, expected_cross_entropy, expected_zero_one

X, COMP = make_blobs(n=1200, d=4, k=6, seed=21)
_rng = np.random.default_rng(3)
# a 0-1 loss of a model right about 96% of the time, with a calibrated confidence
P_WRONG = np.clip(_rng.beta(0.2, 6.0, size=1200), 0, 1)
ERR = (_rng.random(1200) < P_WRONG).astype(np.float64)
NOISE = _rng.gamma(2.0, 1.0, size=1200)  # a loss unrelated to X


# ------------------------------------------------------------------------------ helpers
def test_expected_losses_from_probabilities():
    p = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(expected_cross_entropy(p),
                               [-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
                                0.0, math.log(2)])
    np.testing.assert_allclose(expected_zero_one(p), [0.3, 0.0, 0.5])
    with pytest.raises(ValueError, match="probs"):
        expected_cross_entropy(np.array([[0.7, 0.7]]))


def test_calibration_recovers_a_linear_relation_and_the_spread():
    g = np.linspace(0.01, 0.5, 200)
    fit = calibrate_surrogate(g, 0.1 + 2 * g)
    assert fit.a == pytest.approx(0.1) and fit.b == pytest.approx(2.0)
    # the proposal's base follows the calibrated loss, with a floor of 5% of its mean
    np.testing.assert_allclose(fit.spread(g) ** 2, 0.1 + 2 * g + 0.05 * np.mean(0.1 + 2 * g))
    # a Bernoulli loss with p = g: b ~ 1
    rng = np.random.default_rng(0)
    g = rng.beta(0.5, 4, size=20000)
    fit = calibrate_surrogate(g, (rng.random(g.size) < g).astype(float))
    assert abs(fit.b - 1) < 0.1
    # no relation: b = 0, the mean; every spread equal (a uniform proposal)
    fit = calibrate_surrogate(g, np.full(g.size, 2.0))
    assert fit.b == 0.0 and fit.a == pytest.approx(2.0)
    assert np.ptp(fit.spread(g)) == 0.0
    # too few rows to judge (all 0 here): the scale is fitted, the shape of g is kept
    fit = calibrate_surrogate(g[:8], np.zeros(8))
    assert fit.b == 0.0 and fit.rows == 8
    assert np.all(np.diff(fit.spread(np.sort(g[:8]))) >= 0) and np.ptp(fit.spread(g[:8])) > 0


def test_neyman_allocation():
    assert neyman_allocation(np.array([10, 10, 10]), np.array([1.0, 1.0, 8.0]), 10).tolist() == [1, 1, 8]
    # capped at the stratum size, the rest goes to the others; minimum one per stratum
    alloc = neyman_allocation(np.array([3, 100, 100]), np.array([100.0, 1.0, 2.0]), 30)
    assert alloc.tolist()[0] == 3 and alloc.sum() == 30 and alloc[2] > alloc[1] >= 1
    # equal spreads: proportional
    assert neyman_allocation(np.array([20, 60, 0, 20]), np.ones(4), 10).tolist() == [2, 6, 0, 2]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, message", [
    (np.ones(5), r"surrogate must have shape \(1200,\)"),
    (np.r_[np.ones(7), -1.0, np.ones(1192)], r"surrogate: -1.0 at row 7; predicted losses must be >= 0"),
    (np.r_[np.ones(3), np.nan, np.ones(1196)], r"surrogate: nan at row 3; predicted losses must be finite"),
    (np.array(["a"] * 1200), r"surrogate: a non-numeric value 'a' at row 0"),
])
def test_bad_surrogate_names_the_argument_and_row(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        cs.sensitivity_sample(X, ERR.__getitem__, 50, n_clusters=6, seed=0, surrogate=bad)
    sampler = cs.SensitivitySampler(6, seed=0).fit(X)
    with pytest.raises((ValueError, TypeError), match=message):
        sampler.sample(ERR[sampler.query_indices_], 50, surrogate=bad)


@pytest.mark.heavy
# ---------------------------------------------------------------------------- unbiased
@pytest.mark.parametrize("design, replace", [("sensitivity", True), ("sensitivity", False),
                                             ("stratified", False)])
def test_unbiased_with_a_surrogate_over_fresh_fits(design, replace):
    truth = ERR.sum()
    weighted, control = [], []
    for seed in range(150):
        sel = cs.sensitivity_sample(X, ERR.__getitem__, 80, n_clusters=8, seed=seed,
                                    design=design, replace=replace, surrogate=P_WRONG)
        assert sel.params["design"] == design and sel.surrogate.shape == (sel.size,)
        weighted.append(sel.estimate_total(ERR[sel.indices], method="weighted").value)
        control.append(sel.estimate_total(ERR[sel.indices]).value)  # auto: the control variate
    for est in (np.array(weighted), np.array(control)):
        se = est.std(ddof=1) / math.sqrt(est.size)
        assert abs(est.mean() - truth) < 4 * se + 1e-9 * truth


@pytest.mark.heavy
def test_the_surrogate_helps_a_lot_when_it_is_good_and_costs_little_when_it_is_noise():
    # uniform sampling of the same oracle calls (k + s) as the reference
    rng = np.random.default_rng(1)
    truth = ERR.sum()
    unif = [ERR[rng.choice(1200, 88, replace=False)].mean() * 1200 for _ in range(300)]
    good, noise_w, noise_c = [], [], []
    junk = np.random.default_rng(2).random(1200)  # a surrogate unrelated to the loss
    for seed in range(150):
        sel = cs.sensitivity_sample(X, ERR.__getitem__, 80, n_clusters=8, seed=seed,
                                    surrogate=P_WRONG)
        good.append(sel.estimate_total(ERR[sel.indices]).value)
        sel = cs.sensitivity_sample(X, ERR.__getitem__, 80, n_clusters=8, seed=seed,
                                    design="stratified", surrogate=junk)
        noise_c.append(sel.estimate_total(ERR[sel.indices], method="control").value)
        noise_w.append(sel.estimate_total(ERR[sel.indices], method="weighted").value)
    mse = lambda e: float(np.mean((np.asarray(e) - truth) ** 2))  # noqa: E731
    assert mse(good) < 0.6 * mse(unif)
    assert mse(noise_c) < 1.15 * mse(noise_w)  # the tuned coefficient goes to ~0


@pytest.mark.heavy
def test_intervals_cover_with_a_surrogate():
    cover = 0
    for seed in range(200):
        sel = cs.sensitivity_sample(X, ERR.__getitem__, 120, n_clusters=8, seed=seed,
                                    surrogate=P_WRONG)
        e = sel.estimate_total(ERR[sel.indices])
        cover += e.ci_low <= ERR.sum() <= e.ci_high
    assert cover / 200 >= 0.9


def test_the_proposal_is_per_row_and_follows_the_spread():
    sampler = cs.SensitivitySampler(6, seed=0, design="sensitivity").fit(X)
    q = sampler.query_indices_
    sel = sampler.sample(ERR[q], 400, seed=0, surrogate=P_WRONG)  # lam "auto": 0
    fit = calibrate_surrogate(P_WRONG[q], ERR[q], sampler.cluster_sizes_)
    p = fit.spread(P_WRONG) / fit.spread(P_WRONG).sum()
    assert sel.params["lam"] == 0.0
    np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-10)
    assert sel.params["proposal"].startswith("surrogate spread per row")
    np.testing.assert_allclose(sel.surrogate, fit.predict(P_WRONG)[sel.indices])
    assert sel.params["surrogate_total"] == pytest.approx(fit.predict(P_WRONG).sum())


def test_every_pool_gives_the_same_selection_with_a_surrogate(tmp_path):
    np.save(tmp_path / "x.npy", X)
    pools = [str(tmp_path / "x.npy")]
    try:
        import dask.array as da

        pools.append(da.from_array(X, chunks=(300, 4)))
    except ImportError:
        pass
    for design in ("sensitivity", "stratified"):
        ref = cs.sensitivity_sample(X, ERR.__getitem__, 90, n_clusters=9, seed=5,
                                    design=design, surrogate=P_WRONG, chunk_size=128)
        for pool in pools:
            got = cs.sensitivity_sample(pool, ERR.__getitem__, 90, n_clusters=9, seed=5,
                                        design=design, surrogate=P_WRONG, chunk_size=128,
                                        memory_limit="1GB")
            np.testing.assert_array_equal(got.indices, ref.indices)
            np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-10)
            np.testing.assert_allclose(got.surrogate, ref.surrogate)


def test_a_selection_with_a_surrogate_saves_and_loads(tmp_path):
    sel = cs.sensitivity_sample(X, ERR.__getitem__, 60, n_clusters=6, seed=1, surrogate=P_WRONG)
    sel.save(tmp_path / "s.npz")
    back = cs.Selection.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.surrogate, sel.surrogate)
    assert back.estimate_total(ERR[sel.indices]).value == sel.estimate_total(ERR[sel.indices]).value


def test_control_needs_a_surrogate():
    sel = cs.sensitivity_sample(X, ERR.__getitem__, 60, n_clusters=6, seed=1)
    with pytest.raises(ValueError, match="method='control' needs a selection drawn with a surrogate"):
        sel.estimate_total(ERR[sel.indices], method="control")


# ---------------------------------------------------------------------------- auto
def test_auto_picks_stratified_for_a_loss_unrelated_to_x_and_sensitivity_for_a_smooth_one():
    smooth = (X ** 2).sum(axis=1)
    for seed in range(3):
        sel = cs.sensitivity_sample(X, NOISE.__getitem__, 100, n_clusters=30, seed=seed)
        assert sel.params["design"] == "stratified", sel.params["design_rule"]
        assert "R^2" in sel.params["design_rule"]
        sel = cs.sensitivity_sample(X, smooth.__getitem__, 100, n_clusters=30, seed=seed)
        assert sel.params["design"] == "sensitivity", sel.params["design_rule"]
    design, why = choose_design(X[:5], NOISE[:5], np.ones(5))
    assert design == "stratified" and "too few" in why


def test_auto_with_a_surrogate_picks_the_smaller_predicted_variance():
    sel = cs.sensitivity_sample(X, ERR.__getitem__, 100, n_clusters=8, seed=0,
                                surrogate=P_WRONG)
    assert "predicted variance" in sel.params["design_rule"]
    design, _ = choose_design(None, None, None, surrogate_var={"stratified": 2.0,
                                                               "sensitivity": 1.0})
    assert design == "sensitivity"


def test_auto_falls_back_to_sensitivity_when_the_draws_do_not_fit_without_replacement():
    sel = cs.sensitivity_sample(X[:60], NOISE.__getitem__, 200, n_clusters=5, seed=0)
    assert sel.params["design"] == "sensitivity" and sel.replace
    assert "without replacement" in sel.params["design_rule"]


def test_the_difference_estimator_still_uses_the_centers_losses_with_a_surrogate():
    sampler = cs.SensitivitySampler(6, seed=0, design="sensitivity").fit(X)
    q = sampler.query_indices_
    for replace in (True, False):
        sel = sampler.sample(ERR[q], 200, seed=1, surrogate=P_WRONG, replace=replace)
        plain = sampler.sample(ERR[q], 200, seed=1, replace=replace)
        assert sel.params["hat_total"] == pytest.approx(plain.params["hat_total"])
        assert sel.params.get("hat_covered") == plain.params.get("hat_covered")


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_a_selection_file_keeps_the_surrogate(tmp_path, suffix):
    from coreselect.io import read_selection, write_selection

    sel = cs.sensitivity_sample(X, ERR.__getitem__, 60, n_clusters=6, seed=2, surrogate=P_WRONG)
    write_selection(str(tmp_path / f"s{suffix}"), sel)
    back = read_selection(str(tmp_path / f"s{suffix}"))
    np.testing.assert_allclose(back.surrogate, sel.surrogate)
    y = ERR[sel.indices]
    assert back.estimate_total(y).value == pytest.approx(sel.estimate_total(y).value)
