"""regression_sample (Algorithm 2): hand-computed cases, label accounting, errors."""

from __future__ import annotations

import numpy as np
import pytest

import coreselect as cs
from coreselect import regression as reg
from coreselect.clustering import Clustering


class CountingOracle:
    """Labels from an array; remembers every index it was asked for."""

    def __init__(self, b):
        self.b = np.asarray(b, dtype=np.float64)
        self.asked: list[int] = []

    def __call__(self, idx):
        self.asked += np.asarray(idx).tolist()
        return self.b[idx]


# a 1-D data set with two obvious clusters: {0, 1, 2} (median 1) and {10, 11, 13} (median 11)
A1 = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [13.0]])
B1 = np.array([0.0, 1.0, 5.0, 10.0, 22.0, 20.0])


def hand_clustering() -> Clustering:
    return Clustering(center_indices=np.array([1, 4]), labels=np.array([0, 0, 0, 1, 1, 1]),
                      distances=np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0]), cost=5.0,
                      cluster_sizes=np.array([3, 3]), fitted_centers=np.array([[1.0], [11.0]]),
                      z=1.0, fit_sample_size=6, n_iter=0)


def test_engine_finds_the_hand_clustering():
    cl = cs.kz_clustering(A1, 2, z=1.0, seed=0)
    assert cl.center_indices.tolist() == [1, 4]
    assert cl.distances.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 2.0]


@pytest.mark.parametrize("clustering", ["given", "kmedian"])
def test_hand_computed_zeta_one(clustering):
    # x0: centers a = 1, 11 with labels 1, 22, each weighted 3 (no intercept)
    x0 = (3 * 1 * 1 + 3 * 11 * 22) / (3 * 1 + 3 * 121)
    v_c = np.array([(1 * x0 - 1) ** 2, (11 * x0 - 22) ** 2])
    mass = 1.0 * np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0]) + v_c[[0, 0, 0, 1, 1, 1]]
    mass[[1, 4]] = 0.0  # use_centers=True: the centers enter the fit exactly
    p = mass / mass.sum()
    cl = hand_clustering() if clustering == "given" else "kmedian"
    res = cs.regression_sample(A1, B1.__getitem__, 500, n_clusters=2, zeta=1.0, clustering=cl,
                               mix=0, seed=0)
    sel = res.selection
    assert res.coef0 == pytest.approx([x0], rel=1e-12)
    np.testing.assert_allclose(sel.query_losses, v_c, rtol=1e-12)
    assert sel.query_indices.tolist() == [1, 4]
    assert sel.cluster_sizes.tolist() == [3, 3]
    np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-12)
    np.testing.assert_allclose(sel.weights, 1.0 / (500 * p[sel.indices]), rtol=1e-12)
    assert set(sel.indices.tolist()) <= {0, 2, 3, 5}
    assert sel.centers.tolist() == [[1, 1, 1, 4, 4, 4][i] for i in sel.indices]
    # the final fit: the sample's rows with their summed weights plus the centers (weight 1)
    uniq, w = sel.unique()
    np.testing.assert_array_equal(res.fit_indices, np.union1d(uniq, [1, 4]))
    expect = reg.weighted_lstsq(A1[res.fit_indices], B1[res.fit_indices], res.fit_weights)
    np.testing.assert_allclose(res.coef, expect)
    assert res.fit_weights[np.searchsorted(res.fit_indices, 1)] == 1.0
    assert sel.method == "regression" and sel.replace


def test_hand_computed_distance_only_paper_setting():
    # zeta = inf, use_centers=False, mix=0: p = dist / Phi, the centers' labels are not needed
    oracle = CountingOracle(B1)
    res = cs.regression_sample(A1, oracle, 8, n_clusters=None, clustering=hand_clustering(),
                               use_centers=False, mix=0, seed=3)
    p = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0]) / 5.0
    sel = res.selection
    np.testing.assert_allclose(sel.probabilities, p[sel.indices])
    assert np.isnan(res.coef0).all() and res.center_labels.size == 0
    assert sorted(oracle.asked) == sorted(set(sel.indices.tolist()))
    assert res.n_labels == len(set(sel.indices.tolist()))
    uniq, w = sel.unique()
    np.testing.assert_allclose(res.coef, reg.weighted_lstsq(A1[uniq], B1[uniq], w))


def test_k_equals_n_gives_the_full_fit():
    rng = np.random.default_rng(1)
    A = np.c_[rng.normal(size=(40, 3)), np.ones(40)]
    b = A @ [1.0, -1.0, 0.5, 2.0] + rng.normal(size=40)
    res = cs.regression_sample(A, b.__getitem__, 10, n_clusters=40, seed=0)
    full = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(res.coef, full, atol=1e-10)
    np.testing.assert_allclose(res.coef0, full, atol=1e-10)
    assert res.selection.size == 0 and res.n_labels == 40


def test_exact_labels_are_recovered():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(300, 4))
    x = np.array([0.5, -1.0, 2.0, 0.0])
    for zeta in (float("inf"), 1.0, 0.0):
        res = cs.regression_sample(A, (A @ x).__getitem__, 30, n_clusters=10, zeta=zeta, seed=0)
        np.testing.assert_allclose(res.coef, x, atol=1e-8)


@pytest.mark.parametrize("replace", [True, False])
def test_oracle_is_asked_for_k_plus_the_distinct_sample(replace):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(500, 3))
    oracle = CountingOracle(A.sum(axis=1) + rng.normal(size=500))
    res = cs.regression_sample(A, oracle, 40, n_clusters=25, replace=replace, seed=1,
                               batch_size=7)
    sel = res.selection
    k = sel.query_indices.shape[0]
    assert k == 25
    assert len(oracle.asked) == len(set(oracle.asked))  # nothing asked twice
    distinct = set(sel.indices.tolist())
    assert not distinct & set(sel.query_indices.tolist())  # centers are never drawn
    assert len(oracle.asked) == k + len(distinct) == res.n_labels
    if not replace:
        assert len(oracle.asked) == k + 40
    assert set(oracle.asked) == distinct | set(sel.query_indices.tolist())
    np.testing.assert_allclose(res.sample_labels, oracle.b[sel.indices])
    np.testing.assert_allclose(res.center_labels, oracle.b[sel.query_indices])


def test_weighted_objective_is_unbiased():
    # sum_S w r(x)^2 estimates ||Ax - b||^2 over the rows with p > 0 (all rows here)
    rng = np.random.default_rng(4)
    A = rng.normal(size=(400, 3))
    b = A @ [1.0, 2.0, 3.0] + rng.normal(size=400)
    res = cs.regression_sample(A, b.__getitem__, 100_000, n_clusters=20, zeta=1.0,
                               use_centers=False, seed=0)
    sel = res.selection
    x = np.array([0.5, 1.5, 3.5])
    r2 = (A @ x - b) ** 2
    assert float(np.sum(sel.weights * r2[sel.indices])) == pytest.approx(r2.sum(), rel=0.02)


def test_mix_spreads_mass_by_the_leverage_of_the_weighted_centers():
    # the centers 1 and 11, each weighted by its cluster size 3, form the 2 x 1 matrix
    # sqrt(3) [1, 11]^T: leverage scores 1/122 and 121/122 (rank r = 1), each spread evenly
    # over the 3 rows of its cluster
    cl = hand_clustering()
    dist = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0])
    h = np.array([1.0, 121.0]) / 122.0
    q = h[[0, 0, 0, 1, 1, 1]] / 3.0
    for mix, expect_mix in ((0.5, 0.5), (0.25, 0.25), ("auto", 1.0 / 2.0)):
        res = cs.regression_sample(A1, B1.__getitem__, 2000, n_clusters=None, clustering=cl,
                                   use_centers=False, mix=mix, seed=0)
        p = (1 - expect_mix) * dist / 5.0 + expect_mix * q
        sel = res.selection
        np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-12)
        assert sel.params["mix"] == pytest.approx(expect_mix)
        assert sel.params["mix_rule"] == ("auto" if mix == "auto" else "given")
        assert sel.diagnostics["center_leverage_rank"] == pytest.approx(1.0)
        assert np.all(p > 0) and 4 in set(sel.indices.tolist())  # rows at their center too


def test_auto_mix_is_the_classical_kmedian_bound_when_k_le_d():
    # with an intercept column the 2 weighted centers have full row rank: every h_c = 1,
    # so p_i ~ dist_i / Phi + 1 / |C_i| (Feldman and Langberg), i.e. mix = 2 / 3
    A = np.c_[A1, np.ones(6)]
    cl = hand_clustering()
    dist = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0])
    res = cs.regression_sample(A, B1.__getitem__, 1000, n_clusters=None, clustering=cl,
                               use_centers=False, seed=1)
    p = (dist / 5.0 + 1.0 / 3.0) / 3.0
    np.testing.assert_allclose(res.selection.probabilities, p[res.selection.indices])
    assert res.selection.params["mix"] == pytest.approx(2.0 / 3.0)


def test_auto_mix_with_centers_labelled_excludes_the_centers():
    # use_centers=True: the centers are known, the center term is spread over the other rows
    A = np.c_[A1, np.ones(6)]
    cl = hand_clustering()
    dist = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.0])
    res = cs.regression_sample(A, B1.__getitem__, 1000, n_clusters=None, clustering=cl,
                               seed=2)
    share = np.array([0.5, 0.0, 0.5, 0.5, 0.0, 0.5])  # h_c / (rows left in the cluster)
    p = (dist / 5.0 + share) / 3.0
    sel = res.selection
    np.testing.assert_allclose(sel.probabilities, p[sel.indices])
    assert not {1, 4} & set(sel.indices.tolist())
    # each center enters the fit with weight 1 (no row of its cluster has p = 0)
    np.testing.assert_allclose(res.fit_weights[np.searchsorted(res.fit_indices, [1, 4])], 1.0)


def test_same_seed_same_selection_and_ridge():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(200, 3))
    b = rng.normal(size=200)
    r1 = cs.regression_sample(A, b.__getitem__, 20, n_clusters=10, seed=7)
    r2 = cs.regression_sample(A, b.__getitem__, 20, n_clusters=10, seed=7)
    np.testing.assert_array_equal(r1.selection.indices, r2.selection.indices)
    np.testing.assert_array_equal(r1.coef, r2.coef)
    big = cs.regression_sample(A, b.__getitem__, 20, n_clusters=10, seed=7, ridge=1e9)
    assert np.abs(big.coef).max() < 1e-5
    np.testing.assert_allclose(r1.predict(A[:3]), A[:3] @ r1.coef)


def test_wide_rows_are_clustered_in_a_projection_with_exact_distances():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(150, 300))
    b = rng.normal(size=150)
    res = cs.regression_sample(A, b.__getitem__, 30, n_clusters=10, use_centers=False,
                               mix=0, seed=0)
    sel = res.selection
    assert sel.params["projection_dim"] == 128
    dist = np.linalg.norm(A[sel.indices] - A[sel.centers], axis=1)
    np.testing.assert_allclose(sel.probabilities, dist / sel.params["cost"], rtol=1e-10)
    none = cs.regression_sample(A, b.__getitem__, 30, n_clusters=10, projection_dim=None,
                                seed=0)
    assert none.selection.params["projection_dim"] is None


def test_weighted_lstsq_hand_case_and_errors():
    A = np.array([[1.0], [1.0]])
    assert reg.weighted_lstsq(A, [0.0, 3.0], [2.0, 1.0])[0] == pytest.approx(1.0)
    assert reg.weighted_lstsq(A, [0.0, 3.0])[0] == pytest.approx(1.5)
    # ridge: minimise 2 (x - 1.5)^2 + ... closed form (sum b) / (n + ridge)
    assert reg.weighted_lstsq(A, [0.0, 3.0], ridge=1.0)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="weights must have 2"):
        reg.weighted_lstsq(A, [0.0, 3.0], [1.0])
    with pytest.raises(ValueError, match="ridge"):
        reg.weighted_lstsq(A, [0.0, 3.0], ridge=-1.0)


@pytest.mark.parametrize(
    "answer, exc, match",
    [
        (lambda idx: np.full(len(idx), np.nan), ValueError, r"nan for index \d+; labels must be finite"),
        (lambda idx: np.zeros(len(idx) + 1), ValueError, "values for .* indices"),
        (lambda idx: np.array(["a"] * len(idx), dtype=object), TypeError, "non-numeric"),
        (lambda idx: np.zeros((len(idx), 2)), ValueError, "shape"),
    ],
)
def test_bad_labels_get_a_clear_error(answer, exc, match):
    A = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(cs.OracleError, match=match) as info:
        cs.regression_sample(A, answer, 5, n_clusters=3, seed=0)
    assert isinstance(info.value.__cause__, exc)


def test_labels_cached_on_disk_survive_a_failing_oracle(tmp_path):
    A = np.random.default_rng(1).normal(size=(200, 3))
    b = A @ np.array([1.0, -2.0, 0.5]) - 3.0  # negative labels too
    cache = tmp_path / "labels.csv"
    calls = []

    def flaky(idx):
        calls.append(len(idx))
        if len(calls) == 2:
            raise RuntimeError("annotator went home")
        return b[idx]

    with pytest.raises(cs.OracleError, match="annotator went home") as info:
        cs.regression_sample(A, flaky, 20, n_clusters=8, seed=0, batch_size=4, cache=cache)
    assert len(info.value.answered) == 4
    asked = []

    def counting(idx):
        asked.extend(idx.tolist())
        return b[idx]

    res = cs.regression_sample(A, counting, 20, n_clusters=8, seed=0, batch_size=4, cache=cache)
    assert not set(asked) & set(info.value.answered)
    ref = cs.regression_sample(A, b.__getitem__, 20, n_clusters=8, seed=0)
    np.testing.assert_allclose(res.coef, ref.coef)


def test_negative_labels_are_fine():
    A = np.random.default_rng(0).normal(size=(50, 2))
    b = -10.0 - A[:, 0]
    res = cs.regression_sample(A, b.__getitem__, 10, n_clusters=5, seed=0)
    assert np.all(res.center_labels < 0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"zeta": -1.0}, ValueError, "zeta must be"),
        ({"zeta": "big"}, TypeError, "zeta must be"),
        ({"mix": 1.5}, ValueError, r"mix must be 'auto' or a real number in \[0, 1\]; got 1.5"),
        ({"mix": "most"}, ValueError, r"mix must be 'auto' or a real number in \[0, 1\]"),
        ({"ridge": float("nan")}, ValueError, "ridge must be"),
        ({"clustering": "kmeans"}, ValueError, "clustering must be"),
        ({"n_clusters": 0}, ValueError, "n_clusters must be"),
        ({"n_clusters": 5, "size": 100, "replace": False}, ValueError, "size must be at most"),
        ({"projection_dim": 0}, ValueError, "projection_dim"),
    ],
)
def test_input_errors(kwargs, exc, match):
    A = np.random.default_rng(0).normal(size=(50, 300))
    kw = {"n_clusters": 5, "size": 5, **kwargs}
    size = kw.pop("size")
    with pytest.raises(exc, match=match):
        cs.regression_sample(A, np.zeros(50).__getitem__, size, **kw)


def test_input_errors_oracle_and_clustering():
    A = np.random.default_rng(0).normal(size=(6, 1))
    with pytest.raises(TypeError, match="label_oracle must be callable"):
        cs.regression_sample(A, [1, 2], 2, n_clusters=2)
    with pytest.raises(ValueError, match="n_clusters=3 but the given clustering has 2"):
        cs.regression_sample(A1, B1.__getitem__, 2, n_clusters=3, clustering=hand_clustering())
    with pytest.raises(ValueError, match="expected one per row of A"):
        cs.regression_sample(A1[:5], B1.__getitem__, 2, n_clusters=None,
                             clustering=hand_clustering())
    with pytest.raises(ValueError, match="A contains NaN at row 0"):
        cs.regression_sample(np.full((4, 2), np.nan), B1.__getitem__, 2, n_clusters=2)


def test_kmedoids_refused_when_the_matrix_does_not_fit(monkeypatch):
    monkeypatch.setattr(reg, "available_memory", lambda: 1000)
    A = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match=r"n x n distance matrix.*clustering='kmedian'"):
        cs.regression_sample(A, np.zeros(100).__getitem__, 5, n_clusters=3,
                             clustering="kmedoids")


def test_kmedoids_fasterpam():
    pytest.importorskip("kmedoids")
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [9.0, 9.0], [9.0, 10.0], [9.0, 11.0]])
    cl = reg.kmedoids_clustering(X, 2, seed=0)
    assert cl.center_indices.tolist() == [1, 4]
    assert cl.cost == pytest.approx(4.0)
    b = X @ [1.0, 2.0]
    res = cs.regression_sample(X, b.__getitem__, 4, n_clusters=2, clustering="kmedoids", seed=0)
    assert res.selection.params["clustering"] == "kmedoids"
    np.testing.assert_allclose(res.coef, [1.0, 2.0], atol=1e-8)


def test_pairwise_distance_matrix_and_projection():
    X = np.random.default_rng(0).normal(size=(30, 5))
    D = reg.pairwise_distance_matrix(X, chunk_size=7)
    expect = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.testing.assert_allclose(D, expect, atol=1e-4)
    assert np.all(np.diag(D) == 0)
    P = reg.random_projection(np.eye(400), 200, seed=0)
    # squared norms preserved on average
    assert float(np.mean(np.sum(P.astype(np.float64) ** 2, axis=1))) == pytest.approx(1.0, rel=0.1)


def test_ask_labels_uses_known_answers():
    calls = []

    def oracle(idx):
        calls.append(idx.tolist())
        return -np.asarray(idx, dtype=float)

    known = {3: 99.0}
    out = reg.ask_labels(oracle, [3, 1, 1, 2], batch_size=1, known=known)
    assert out.tolist() == [99.0, -1.0, -1.0, -2.0]
    assert calls == [[1], [2]]


def test_result_exposes_the_selection_attributes():
    A = np.random.default_rng(3).normal(size=(300, 3))
    b = A @ np.array([1.0, 2.0, -1.0])
    res = cs.regression_sample(A, b.__getitem__, 30, n_clusters=10, seed=0)
    for name in ("indices", "weights", "probabilities", "query_indices", "n", "method"):
        assert getattr(res, name) is getattr(res.selection, name)
    assert res.estimate_total(np.ones(res.selection.size)).value > 0
    with pytest.raises(AttributeError):
        res.no_such_attribute  # noqa: B018


def test_center_term_uses_leverage_when_the_centers_are_dependent():
    # k = 3 <= d = 3 but the third center is the sum of the first two: rank 2, so the
    # center term must come from the leverage scores (which sum to 2), not the shortcut
    A = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0],
                  [1.1, 0.0, 0.0], [0.0, 1.1, 0.0], [1.1, 1.0, 0.0]])
    centers = np.array([0, 1, 2])
    labels = np.array([0, 1, 2, 0, 1, 2])
    sizes = np.array([2, 2, 2])
    q, r = reg._center_term(A, centers, labels, sizes, np.ones(6, dtype=bool))
    h = cs.baselines.leverage_scores(A[centers] * np.sqrt(2.0))
    assert r == pytest.approx(2.0)
    np.testing.assert_allclose(q, h[labels] / (2 * 2.0))
    assert q.sum() == pytest.approx(1.0)
    # independent centers (k <= d): every h_c = 1, mass 1/k per cluster
    B = A + np.array([0.0, 0.0, 1.0]) * np.arange(6)[:, None]
    q, r = reg._center_term(B, centers, labels, sizes, np.ones(6, dtype=bool))
    assert r == pytest.approx(3.0)
    np.testing.assert_allclose(q, 1.0 / 6.0)


def test_default_reaches_rows_that_duplicate_their_center():
    # many repeated rows (as in survey tables): with mix=0 and zeta=inf the rows equal to
    # their center can never be drawn, so the label-free fit misses them; the default can
    rng = np.random.default_rng(8)
    base = rng.normal(size=(15, 3))
    A = np.r_[np.repeat(base, 20, axis=0), rng.normal(size=(60, 3))]
    b = A @ [1.0, -2.0, 0.5] + rng.normal(size=A.shape[0])
    x = np.array([0.3, -1.0, 1.0])
    r2 = (A @ x - b) ** 2
    paper = cs.regression_sample(A, b.__getitem__, 200_000, n_clusters=30, use_centers=False,
                                 mix=0, seed=0)
    default = cs.regression_sample(A, b.__getitem__, 200_000, n_clusters=30,
                                   use_centers=False, seed=0)
    assert paper.selection.diagnostics["rows_with_positive_p"] < A.shape[0] // 2
    assert default.selection.diagnostics["rows_with_positive_p"] == A.shape[0]
    est = float(np.sum(default.selection.weights * r2[default.selection.indices]))
    assert est == pytest.approx(r2.sum(), rel=0.02)


def test_mix_one_samples_by_the_label_free_center_term_alone():
    # mix is in [0, 1] everywhere (the sampler's and regression's): 1 means only the
    # compressed problem's sensitivity spread over the clusters, the same for every row of a
    # cluster, whatever the distances
    rng = np.random.default_rng(3)
    A = rng.normal(size=(400, 3))
    b = A @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=400)
    res = cs.regression_sample(A, b.__getitem__, 60, n_clusters=8, mix=1.0, seed=1)
    sel = res.selection
    assert res.selection.params["mix"] == 1.0
    centers = sel.centers
    for c in np.unique(centers):
        np.testing.assert_allclose(sel.probabilities[centers == c],
                                   sel.probabilities[centers == c][0], rtol=1e-12)
    assert np.all(np.isfinite(res.coef))
