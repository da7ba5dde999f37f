"""Leverage scores (exact and sketched) and leverage-score sampling."""

from __future__ import annotations

import numpy as np
import pytest

from coreselect.baselines import leverage_sample, leverage_scores, sketched_leverage_scores


def test_hand_case():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    for method in ("qr", "svd", "cholesky"):
        np.testing.assert_allclose(leverage_scores(A, method=method), [1.0, 0.5, 0.5])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("method", ["qr", "svd", "cholesky"])
def test_exact_scores_sum_to_rank(seed, method):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(200, 6)) * rng.uniform(0.1, 10, size=6)
    h = leverage_scores(A, method=method)
    assert h.sum() == pytest.approx(6.0)
    assert np.all((h >= 0) & (h <= 1 + 1e-12))
    # rank-deficient: a column that is a combination of two others
    B = np.c_[A, A[:, 0] - 2 * A[:, 1]]
    hb = leverage_scores(B, method=method)
    assert hb.sum() == pytest.approx(6.0, abs=1e-8)
    np.testing.assert_allclose(hb, h, atol=1e-8)


def test_methods_agree_and_match_the_definition():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(100, 4))
    H = A @ np.linalg.solve(A.T @ A, A.T)
    for method in ("qr", "svd", "cholesky"):
        np.testing.assert_allclose(leverage_scores(A, method=method), np.diag(H), atol=1e-10)


def test_wide_matrix_all_ones():
    A = np.random.default_rng(0).normal(size=(5, 20))
    for method in ("qr", "cholesky", "svd"):
        np.testing.assert_allclose(leverage_scores(A, method=method), np.ones(5))


def test_wide_matrix_with_dependent_rows_is_not_all_ones():
    # n <= d, but row 3 = row 0 + row 1 and row 4 is 0: rank 3, the shortcut must not apply
    A = np.random.default_rng(1).normal(size=(5, 20))
    A[3] = A[0] + A[1]
    A[4] = 0.0
    h = leverage_scores(A)
    assert h.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(h, leverage_scores(A, method="svd"), atol=1e-10)
    assert h[2] == pytest.approx(1.0) and h[4] == 0.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sketch", ["countsketch", "srht"])
def test_sketched_within_a_factor_two(seed, sketch):
    rng = np.random.default_rng(100 + seed)
    n, d = 3000, 8
    # uneven leverage: a few heavy rows
    A = rng.normal(size=(n, d)) * np.where(rng.random(n) < 0.01, 20.0, 1.0)[:, None]
    h = leverage_scores(A)
    hs = sketched_leverage_scores(A, sketch=sketch, seed=seed)
    ratio = hs / h
    assert ratio.min() > 0.5 and ratio.max() < 2.0


def test_sketched_with_jl_and_rank_deficiency():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4000, 40))
    h = leverage_scores(A)
    hs = sketched_leverage_scores(A, jl_dim=64, seed=1)
    assert np.median(hs / h) == pytest.approx(1.0, abs=0.2)
    assert hs.sum() == pytest.approx(40, rel=0.15)
    B = np.c_[A[:, :5], A[:, :5] @ rng.normal(size=(5, 3))]
    hb = sketched_leverage_scores(B, seed=2)
    assert hb.sum() == pytest.approx(5, rel=0.2)
    ratio = hb / leverage_scores(B)
    assert ratio.min() > 0.5 and ratio.max() < 2.0


def test_sketched_is_reproducible():
    A = np.random.default_rng(0).normal(size=(500, 5))
    np.testing.assert_array_equal(sketched_leverage_scores(A, seed=3),
                                  sketched_leverage_scores(A, seed=3))


@pytest.mark.parametrize("replace", [True, False])
def test_leverage_sampling_is_unbiased_for_the_normal_equations(replace):
    rng = np.random.default_rng(1)
    n, d = 400, 3
    A = rng.normal(size=(n, d)) * np.where(rng.random(n) < 0.05, 5.0, 1.0)[:, None]
    b = A @ [1.0, -2.0, 0.5] + rng.normal(size=n)
    G = np.zeros((d, d))
    g = np.zeros(d)
    reps = 400
    for seed in range(reps):
        sel = leverage_sample(A, 40, seed=seed, replace=replace)
        As = A[sel.indices] * sel.weights[:, None]
        G += As.T @ A[sel.indices]
        g += As.T @ b[sel.indices]
    G /= reps
    g /= reps
    assert np.linalg.norm(G - A.T @ A) / np.linalg.norm(A.T @ A) < 0.05
    assert np.linalg.norm(g - A.T @ b) / np.linalg.norm(A.T @ b) < 0.05


def test_leverage_sample_fields():
    A = np.random.default_rng(0).normal(size=(100, 3))
    h = leverage_scores(A)
    sel = leverage_sample(A, 10, seed=0)
    np.testing.assert_allclose(sel.probabilities, h[sel.indices] / h.sum())
    np.testing.assert_allclose(sel.weights, 1 / (10 * sel.probabilities))
    assert sel.method == "leverage" and sel.n == 100
    sk = leverage_sample(A, 10, method="sketched", seed=0)
    assert sk.method == "leverage-sketched"
    given = leverage_sample(A, 10, scores=np.ones(100), seed=0)
    np.testing.assert_allclose(given.probabilities, 0.01)
    wo = leverage_sample(A, 10, replace=False, seed=0)
    assert len(set(wo.indices.tolist())) == 10


def test_errors():
    A = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="method must be 'qr', 'svd' or 'cholesky'"):
        leverage_scores(A, method="lu")
    with pytest.raises(ValueError, match="rtol"):
        leverage_scores(A, rtol=-1.0)
    with pytest.raises(ValueError, match="sketch must be"):
        sketched_leverage_scores(A, sketch="gaussian")
    with pytest.raises(ValueError, match="method must be 'exact' or 'sketched'"):
        leverage_sample(A, 5, method="approx")
    with pytest.raises(ValueError, match="scores must have one entry per row"):
        leverage_sample(A, 5, scores=np.ones(3))
    with pytest.raises(ValueError, match="all leverage scores are 0"):
        leverage_sample(np.zeros((5, 2)), 2)
    with pytest.raises(ValueError, match="A contains inf"):
        leverage_scores(np.full((3, 2), np.inf))
    with pytest.raises(ValueError, match="size must be at most"):
        leverage_sample(A, 50, replace=False)
