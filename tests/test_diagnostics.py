"""Diagnostics: the Hoelder-constant estimate, the reports, and defensive mixing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import coreselect as cs
from coreselect.diagnostics import (
    diagnose_sample,
    estimate_holder_constant,
    nearest_neighbour_r2,
    selection_diagnostics,
    theorem5_epsilon,
)
from coreselect.prefix import prefix_order
from coreselect.selection import Selection
from coreselect.sensitivity import sensitivity_probabilities


# ------------------------------------------------------------------ Hoelder estimate
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("lam", [0.3, 4.0, 50.0])
def test_holder_estimate_recovers_a_lipschitz_constant(d, lam):
    # l(x) = lam ||x - x0|| + 1 is exactly (1, lam)-Hoelder, with the sup attained along rays;
    # the estimate from a prefix order's first 80 rows (what adaptive_sample queries) must be
    # within a factor 2, for every seed
    for seed in range(10):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(2000, d)) * 3.0
        x0 = rng.normal(size=d)
        loss = lam * np.linalg.norm(X - x0, axis=1) + 1.0
        q = prefix_order(X, 80, z=1.0, seed=seed)
        est = estimate_holder_constant(X[q], loss[q], z=1.0)
        assert lam / 2 <= est.lam <= lam * (1 + 1e-9), (seed, est)
        assert est.max_ratio <= lam * (1 + 1e-9)


@pytest.mark.parametrize("lam", [0.5, 7.0])
def test_holder_estimate_recovers_a_z2_constant_on_a_lattice(lam):
    # rows on a line with spacing h, losses lam h^2 b_i with random bits b_i: |l_i - l_j| <=
    # lam h^2 <= lam |x_i - x_j|^2 with equality for neighbours whose bits differ, so the
    # (2, lam)-Hoelder constant is exactly lam; a wrong power of the distance would be off by
    # a factor h = 0.3 (or 1/h)
    h = 0.3
    for seed in range(10):
        rng = np.random.default_rng(seed)
        x = (np.arange(300) * h)[:, None] @ rng.normal(size=(1, 4)) / 1.0
        x /= np.linalg.norm(x[1] - x[0]) / h  # spacing exactly h in R^4
        loss = lam * h**2 * rng.integers(0, 2, size=300)
        est = estimate_holder_constant(x, loss, z=2.0)
        assert lam / 2 <= est.lam <= lam * (1 + 1e-9)
        assert est.max_ratio == pytest.approx(lam)


def test_holder_estimate_scales():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    loss = np.abs(X[:, 0]) + rng.random(200)
    base = estimate_holder_constant(X, loss, z=2.0).lam
    assert estimate_holder_constant(3.0 * X, loss, z=2.0).lam == pytest.approx(base / 9.0)
    assert estimate_holder_constant(X, 5.0 * loss, z=2.0).lam == pytest.approx(5.0 * base)
    assert estimate_holder_constant(3.0 * X, loss, z=1.0).lam == \
        pytest.approx(estimate_holder_constant(X, loss, z=1.0).lam / 3.0)
    # a higher quantile never gives a smaller estimate
    qs = [estimate_holder_constant(X, loss, quantile=q).lam for q in (0.5, 0.9, 1.0)]
    assert qs == sorted(qs)
    assert qs[-1] == estimate_holder_constant(X, loss).max_ratio


def test_holder_estimate_is_robust_to_a_few_bad_rows():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(400, 2)) * 10
    loss = 2.0 * X[:, 0]  # exactly 2-Lipschitz (z=1)
    bad = loss.copy()
    bad[:4] += 100.0  # four mislabelled rows
    clean = estimate_holder_constant(X, loss, z=1.0)
    noisy = estimate_holder_constant(X, bad, z=1.0)
    assert noisy.max_ratio > 50 * clean.max_ratio
    assert noisy.lam == pytest.approx(clean.lam, rel=0.1)


def test_holder_estimate_edge_cases():
    est = estimate_holder_constant(np.array([[1.0, 2.0]]), [3.0])
    assert est.lam == 0.0 and est.n_pairs == 0
    # identical embeddings with different losses: conflicts, not ratios
    X = np.array([[0.0], [0.0], [1.0]])
    est = estimate_holder_constant(X, [0.0, 1.0, 0.0], z=1.0)
    assert est.n_conflicts == 1
    assert est.n_pairs == 2
    assert est.max_ratio == 1.0
    with pytest.raises(ValueError, match=r"quantile must be a real number in \(0, 1\]; got 0.0"):
        estimate_holder_constant(X, [0.0, 1.0, 0.0], quantile=0.0)
    with pytest.raises(ValueError, match="losses: 2 values for 3 indices"):
        estimate_holder_constant(X, [0.0, 1.0])
    with pytest.raises(ValueError, match="losses must be >= 0"):
        estimate_holder_constant(X, [0.0, -1.0, 0.0])


def test_nearest_neighbour_r2_hand_cases():
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    assert nearest_neighbour_r2(x, [1.0, 1.0, 5.0, 5.0]) == 1.0
    assert nearest_neighbour_r2(x, [1.0, 5.0, 1.0, 5.0]) == -3.0
    assert nearest_neighbour_r2(x[:2], [1.0, 2.0]) is None
    # weights: a heavy row that is well predicted pulls R^2 up
    y = [1.0, 1.0, 5.0, 6.0]
    assert nearest_neighbour_r2(x, y, weights=[100, 100, 1, 1]) > nearest_neighbour_r2(x, y)


# ------------------------------------------------------------------ Theorem 5
@pytest.mark.parametrize("s", [1, 2, 10, 200, 12345])
def test_theorem5_epsilon_inverts_the_sample_size(s):
    eps = theorem5_epsilon(s)
    assert eps ** -2 * (2 + 2 * eps / 3) == pytest.approx(s)
    assert math.ceil(eps ** -2 * (2 + 2 * eps / 3) - 1e-9) == s


# ------------------------------------------------------------------ the report
def report(**kw):
    base = dict(p=np.full(4, 0.25), indices=np.array([0, 2]), weights=np.array([2.0, 2.0]),
                query_points=np.array([[0.0], [1.0]]), query_losses=[1.0, 1.0],
                cluster_sizes=[2, 2], cost=1.0, hat_total=4.0, lam=4.0, lam_rule="given",
                z=2.0, size=2, replace=True)
    base.update(kw)
    return selection_diagnostics(**base)


def test_report_hand_case():
    rep = report()
    assert rep["Phi"] == 1.0 and rep["sum_l_hat"] == 4.0
    assert rep["lam"] == 4.0 and rep["lam_rule"] == "given"
    assert rep["effective_sample_size"] == 2.0
    assert rep["max_weight_share"] == 0.5
    assert rep["min_np"] == rep["max_np"] == 1.0
    eps = theorem5_epsilon(2)
    # the Hoelder estimate (0: equal losses) is below lam, so the bound is eps (4 + 4 * 1)
    assert rep["lam_holder"] == 0.0
    assert rep["error_bound"] == pytest.approx(eps * 8.0)
    assert rep["relative_error_bound"] == pytest.approx(eps * 2.0)
    assert rep["uniform_error_bound"] == pytest.approx(eps * 4 * 1.0)
    json.dumps(rep)  # JSON-serialisable


def test_report_weights_and_zero_probability_rows():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    rep = report(p=p, indices=np.array([0, 0, 1] * 4), weights=np.array([1.0, 1.0, 6.0] * 4),
                 size=12)
    # distinct rows 0 (weight 8) and 1 (weight 24): Kish ESS = 32^2 / (64 + 576)
    assert rep["effective_sample_size"] == pytest.approx(32**2 / 640)
    assert rep["max_weight_share"] == pytest.approx(0.75)
    assert rep["zero_probability_rows"] == 2
    assert any("probability 0" in w for w in rep["warnings"])
    assert any("carry most of the weight" in w for w in rep["warnings"])
    mixed = report(p=p, mix=0.1)
    assert not any("probability 0" in w for w in mixed["warnings"])


def test_report_bound_uses_the_larger_of_lam_and_the_holder_estimate():
    pts = np.array([[0.0], [1.0], [2.0]])
    rep = report(query_points=pts, query_losses=[0.0, 3.0, 6.0], cluster_sizes=[1, 2, 1],
                 lam=1.0)
    assert rep["lam_holder"] == pytest.approx(3.0)
    eps = theorem5_epsilon(2)
    assert rep["error_bound"] == pytest.approx(eps * 3.0 * (4.0 + 1.0))
    assert rep["error_bound_lam"] == pytest.approx(3.0)
    # lam = 0 with a positive Hoelder estimate and Phi > 0: no finite guarantee
    assert report(query_points=pts, query_losses=[0.0, 3.0, 6.0], cluster_sizes=[1, 2, 1],
                  lam=0.0)["error_bound"] is None


def test_report_conflicts_make_the_verdict_negative():
    rep = report(query_points=np.array([[0.0], [0.0], [5.0]]), query_losses=[1.0, 2.0, 1.0],
                 cluster_sizes=[2, 1, 1])
    assert rep["verdict"].startswith("For estimating the total loss, likely worse than a uniform")
    assert rep["estimation_verdict"] == rep["verdict"] and "training" in rep["verdict"]


def test_report_without_query_points():
    rep = report(query_points=None)
    assert rep["lam_holder"] is None and rep["nn_r2"] is None
    assert rep["error_bound"] == pytest.approx(theorem5_epsilon(2) * 8.0)


# ------------------------------------------------------------------ sampler hook
def two_regimes(loss_kind, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, 4)) * 30
    lab = np.repeat(np.arange(20), 100)
    X = centers[lab] + rng.normal(size=(2000, 4))
    if loss_kind == "smooth":  # constant on each blob, a little within: Hoelder-like
        loss = rng.exponential(5.0, size=20)[lab] + 0.05 * ((X - centers[lab]) ** 2).sum(axis=1)
    else:  # heavy-tailed noise unrelated to the embedding
        loss = rng.pareto(1.5, size=2000)
    return X, loss


def test_sampler_attaches_diagnostics_and_they_survive_save(tmp_path):
    X, loss = two_regimes("smooth")
    sel = cs.sensitivity_sample(X, loss.__getitem__, 100, n_clusters=20, seed=0, design="sensitivity")
    d = sel.diagnostics
    for key in ("Phi", "sum_l_hat", "lam", "lam_rule", "lam_holder", "eps", "error_bound",
                "effective_sample_size", "max_weight_share", "warnings", "verdict"):
        assert key in d
    assert d["theorem"] == "Theorem 5"
    assert d["Phi"] == pytest.approx(sel.params["cost"])
    assert d["lam"] == sel.params["lam"]
    sel.save(tmp_path / "sel.npz")
    assert Selection.load(tmp_path / "sel.npz").diagnostics == json.loads(json.dumps(d))


def test_diagnose_sample_tells_good_from_bad():
    # 24 seeds: with heavy-tailed losses a few seeds decide a median of 8 (seeds 0-7 gave a
    # median design effect of 0.88 with the scalable fit and 1.24 with the greedy one, from
    # the same centers: only the draws differed; over 24 seeds 1.24 and 1.23)
    good, bad = [], []
    for seed in range(24):
        X, loss = two_regimes("smooth", seed)
        sel = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=20, seed=seed, design="sensitivity")
        good.append(diagnose_sample(sel, loss[sel.indices]))
        X, loss = two_regimes("noise", seed)
        sel = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=20, seed=seed, design="sensitivity")
        bad.append(diagnose_sample(sel, loss))
    assert all(r["design_effect"] < 1 for r in good)
    assert all(r["verdict"].startswith("For estimating the total loss, better") for r in good)
    assert np.median([r["design_effect"] for r in bad]) > 1
    assert sum(r["verdict"].startswith("For estimating the total loss, worse") for r in bad) >= 12


def test_diagnose_sample_design_effect_matches_the_true_one():
    # the design effect estimated from one sample vs the exact variance ratio
    X, loss = two_regimes("smooth", 3)
    sampler = cs.SensitivitySampler(20, seed=3, design="sensitivity").fit(X)
    q = loss[sampler.query_indices_]
    sel = sampler.sample(q, 2000, seed=4)
    lam = sel.params["lam"]
    p = sensitivity_probabilities(q[sampler.labels_], sampler.distances_, lam)
    T = loss.sum()
    true = (np.sum(loss**2 / p) - T**2) / (len(loss) * np.dot(loss, loss) - T**2)
    got = diagnose_sample(sel, loss[sel.indices])["design_effect"]
    assert got == pytest.approx(true, rel=0.3)
    # with the pool's distances recovered from p, the residual lam is finite and positive
    assert diagnose_sample(sel, loss)["lam_residual"] > 0


# ------------------------------------------------------------------ defensive mixing
def test_mix_keeps_the_variance_within_one_over_alpha_of_uniform():
    rng = np.random.default_rng(0)
    n = 500
    l_hat = rng.exponential(size=n)
    v = rng.exponential(size=n)
    loss = np.zeros(n)
    loss[np.argsort(l_hat + v)[:5]] = 100.0  # the loss sits where p is smallest
    second_u = n * np.sum(loss**2)
    for alpha in (0.05, 0.2, 0.5, 1.0):
        p = sensitivity_probabilities(l_hat, v, 1.0, mix=alpha)
        assert p.sum() == pytest.approx(1.0)
        assert p.min() >= alpha / n * (1 - 1e-12)
        assert np.sum(loss**2 / p) <= second_u / alpha * (1 + 1e-12)
    p0 = sensitivity_probabilities(l_hat, v, 1.0)
    assert np.sum(loss**2 / p0) > 2 * second_u  # unmixed, far worse than uniform here


def test_mix_in_the_sampler():
    X, loss = two_regimes("smooth")
    n = X.shape[0]
    sel = cs.sensitivity_sample(X, loss.__getitem__, 300, n_clusters=20, seed=0, mix=0.25, design="sensitivity")
    assert sel.probabilities.min() >= 0.25 / n
    assert sel.params["mix"] == 0.25 and sel.diagnostics["mix"] == 0.25
    uni = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=20, seed=0, mix=1.0, design="sensitivity")
    np.testing.assert_allclose(uni.probabilities, 1.0 / n)
    np.testing.assert_allclose(uni.weights, n / 50)
    with pytest.raises(ValueError, match=r"mix must be a real number in \[0, 1\]; got -0.1"):
        cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=20, mix=-0.1, design="sensitivity")
    with pytest.raises(TypeError, match="mix must be a real number"):
        cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=20, mix="half", design="sensitivity")


# ------------------------------------------------------------------ a-priori prediction
def blobs_with(kind, seed):
    rng = np.random.default_rng(seed)
    c = 30
    means = rng.normal(0, 6.0, size=(c, 6))
    comp = rng.integers(c, size=4000)
    X = means[comp] + rng.normal(size=(4000, 6))
    if kind == "smooth":
        loss = rng.gamma(1.0, 1.0, size=c)[comp] + 0.05 * ((X - means[comp]) ** 2).sum(1)
    else:
        loss = rng.pareto(2.0, size=4000)
    return X, loss


def test_predicted_design_effect_separates_smooth_from_unrelated_losses():
    verdicts = {"smooth": [], "noise": []}
    for kind in verdicts:
        for seed in range(6):
            X, loss = blobs_with(kind, seed)
            sels = cs.adaptive_sample(X, loss.__getitem__, 100, rounds=4, n_clusters=30,
                                      seed=seed)
            d = sels[-1].diagnostics
            assert d["predicted_design_effect_rows"] >= 20
            verdicts[kind].append(d["predicted_design_effect"])
    assert all(v < 1 for v in verdicts["smooth"]), verdicts
    assert np.median(verdicts["noise"]) > 1, verdicts
    assert min(verdicts["noise"]) > max(verdicts["smooth"]), verdicts


def test_predicted_design_effect_edge_cases():
    from coreselect.diagnostics import predicted_design_effect

    x = np.array([[0.0], [1.0], [2.0]])
    assert predicted_design_effect(x, [1.0, 2.0, 3.0], lam=1.0, n=3, hat_total=6.0,
                                   cost=0.0)["design_effect"] is None
    # too few close rows
    out = predicted_design_effect(x, [1.0, 2.0, 3.0], lam=1.0, n=3, hat_total=6.0, cost=3.0)
    assert out == {"design_effect": None, "rows": 3}
    # lam = 0 and a neighbour with loss 0: a positive loss would never be drawn
    x = np.repeat(np.arange(12.0) * 10, 2)[:, None] + np.tile([0.0, 1.0], 12)[:, None]
    y = np.tile([0.0, 1.0], 12)
    out = predicted_design_effect(x, y, lam=0.0, n=24, hat_total=12.0, cost=24.0, min_rows=5)
    assert out["design_effect"] == math.inf
    mixed = predicted_design_effect(x, y, lam=0.0, n=24, hat_total=12.0, cost=24.0,
                                    min_rows=5, mix=0.5)
    assert math.isfinite(mixed["design_effect"])


def test_report_on_many_queried_rows_uses_a_subset(monkeypatch):
    import coreselect.diagnostics as dg

    monkeypatch.setattr(dg, "_MAX_QUERY_ROWS", 50)
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(400, 2))
    ql = np.abs(Q[:, 0])
    rep = report(p=np.full(400, 1 / 400), query_points=Q, query_losses=ql,
                 cluster_sizes=np.ones(400), hat_total=float(ql.sum()), cost=400.0)
    keep = np.linspace(0, 399, 50).round().astype(int)
    assert rep["holder"]["n_pairs"] == estimate_holder_constant(Q[keep], ql[keep]).n_pairs


@pytest.mark.parametrize("y,verdict", [
    ([1.0, 2.0, 1.0, 4.0], "For estimating the total loss, worse than a uniform sample"),
    ([1.0, 1.0, 1.0, 1.8], "For estimating the total loss, better than a uniform sample of the same size, but not"),
    ([2.0, 2.0, 1.0, 1.0], "For estimating the total loss, better than a uniform sample, also with"),
])
def test_diagnose_sample_hand_cases(y, verdict):
    # s = 4 i.i.d. draws from n = 8 rows, 2 queried rows: 6 oracle calls in all
    sel = Selection(indices=[0, 1, 2, 3], weights=[1.0, 1.0, 2.0, 2.0],
                    probabilities=[0.25, 0.25, 0.125, 0.125], n=8, replace=True,
                    query_indices=[5, 6], query_losses=[1.0, 1.0], cluster_sizes=[4, 4])
    y = np.array(y)
    x = sel.weights * y
    var_t = 4 / 3 * np.sum((x - x.mean()) ** 2)
    var_u = 8 * np.sum(sel.weights * y**2) - x.sum() ** 2
    rep = diagnose_sample(sel, y)
    assert rep["estimate"] == pytest.approx(x.sum())
    assert rep["design_effect"] == pytest.approx(4 * var_t / var_u)
    assert rep["design_effect_equal_calls"] == pytest.approx(6 * var_t / var_u)
    assert rep["oracle_calls"] == 6
    assert rep["uniform_stderr"] == pytest.approx(np.sqrt(var_u / 4))
    assert rep["verdict"].startswith(verdict)
    assert rep["lam_residual"] is None  # the selection has no lam in params
