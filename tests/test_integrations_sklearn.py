"""scikit-learn integration: sample_weight from a Selection."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import coreselect as cs  # noqa: E402
from coreselect import Selection  # noqa: E402
from coreselect.integrations.sklearn import fit_selection, selection_weights  # noqa: E402


def _sel(indices, weights, n, queries=None, replace=True):
    s = len(indices)
    return Selection(indices=indices, weights=weights, probabilities=np.full(s, 0.1), n=n,
                     replace=replace, query_indices=queries,
                     query_losses=None if queries is None else np.zeros(len(queries)))


def test_repeats_are_summed_and_normalised():
    sel = _sel([7, 2, 7, 7], [1.0, 3.0, 1.0, 1.0], n=10)
    rows, w = selection_weights(sel, normalize=False, power=1.0)
    np.testing.assert_array_equal(rows, [2, 7])
    np.testing.assert_allclose(w, [3.0, 3.0])
    rows, w = selection_weights(sel)
    np.testing.assert_allclose(w.mean(), 1.0)
    np.testing.assert_allclose(w, [1.0, 1.0])
    assert rows.dtype == np.int64 and w.dtype == np.float64


def test_queries_added_with_unit_weight():
    sel = _sel([5, 1], [4.0, 12.0], n=10, queries=[1, 3, 8])
    rows, w = selection_weights(sel, power=1.0)
    np.testing.assert_array_equal(rows, [1, 5, 3, 8])
    np.testing.assert_allclose(w, [1.5, 0.5, 1.0, 1.0])
    rows, w = selection_weights(sel, include_queries=False, power=1.0)
    np.testing.assert_array_equal(rows, [1, 5])


def test_default_weights_are_tempered():
    # the default of every integration: w ** TRAINING_WEIGHT_POWER over its mean
    from coreselect.selection import TRAINING_WEIGHT_POWER

    assert TRAINING_WEIGHT_POWER == 0.5
    sel = _sel([5, 1], [4.0, 12.0], n=10, queries=[1, 3, 8])
    rows, w = selection_weights(sel)
    np.testing.assert_array_equal(rows, [1, 5, 3, 8])
    root = np.sqrt([12.0, 4.0])
    np.testing.assert_allclose(w, np.r_[2 * root / root.sum(), 1.0, 1.0])
    np.testing.assert_allclose(selection_weights(sel, power=0.0)[1], np.ones(4))
    with pytest.raises(ValueError, match="power"):
        selection_weights(sel, power=1.5)
    with pytest.raises(TypeError, match="include_queries"):
        selection_weights(sel, include_queries="yes")


def test_weighted_fit_equals_fit_on_repeated_rows():
    # Integer weights are the same as repeating rows: a hand-checkable invariance.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(0, 0.5, 30)
    sel = _sel([4, 9, 9, 17, 21, 21, 21, 25], np.ones(8), n=30)
    got = fit_selection(LinearRegression(), X, y, sel, normalize=False, power=1.0)
    rep = LinearRegression().fit(X[sel.indices], y[sel.indices])
    np.testing.assert_allclose(got.coef_, rep.coef_, atol=1e-10)
    np.testing.assert_allclose(got.intercept_, rep.intercept_, atol=1e-10)
    # ... and different from ignoring the weights
    plain = fit_selection(LinearRegression(), X, y, sel, weighted=False)
    assert not np.allclose(plain.coef_, rep.coef_)


def test_unit_weights_equal_no_weights():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    sel = _sel(np.arange(0, 40, 2), np.full(20, 2.0), n=40, replace=False)
    a = fit_selection(LogisticRegression(), X, y, sel)
    b = LogisticRegression().fit(X[::2], y[::2])
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)


def test_only_selected_labels_are_read():
    X = np.arange(12.0).reshape(-1, 1)
    y = np.full(12, np.nan)
    y[[1, 6, 10]] = 2 * X[[1, 6, 10], 0]
    sel = _sel([1, 6, 10], [4.0, 4.0, 4.0], n=12)
    m = fit_selection(LinearRegression(), X, y, sel)
    np.testing.assert_allclose(m.coef_, [2.0], atol=1e-12)


def test_pipeline_and_dataframe():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    y = pd.Series(3 * X["a"] - X["b"])
    sel = _sel([3, 5, 8, 13, 21, 34], np.ones(6), n=50)
    pipe = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=1e-8))])
    fit_selection(pipe, X, y, sel, weight_param="model__sample_weight")
    np.testing.assert_allclose(pipe.predict(X), y, atol=1e-5)


def test_sparse_rows():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(20, 5, density=0.5, random_state=0, format="csc")
    y = np.asarray(X.sum(axis=1)).ravel()
    sel = _sel(np.arange(0, 20, 2), np.full(10, 2.0), n=20)
    m = fit_selection(LinearRegression(), X, y, sel)
    np.testing.assert_allclose(m.predict(X.tocsr()[::2]), y[::2], atol=1e-8)


def test_wrong_pool_size():
    sel = _sel([0, 1], [1.0, 1.0], n=10)
    with pytest.raises(ValueError, match="selection.n=10"):
        fit_selection(LinearRegression(), np.zeros((9, 1)), np.zeros(9), sel)


def test_sensitivity_selection_trains_close_to_full():
    # End to end: weighted least squares on a sensitivity sample approaches the full fit.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    y = X @ [1.0, 2.0, -1.0, 0.5] + rng.normal(0, 0.1, 3000)
    full = LinearRegression().fit(X, y)
    resid = (y - full.predict(X)) ** 2
    sel = cs.sensitivity_sample(X, resid.__getitem__, 300, n_clusters=30, seed=0)
    m = fit_selection(LinearRegression(), X, y, sel)
    np.testing.assert_allclose(m.coef_, full.coef_, atol=0.05)
