"""scikit-learn integration: train an estimator on a :class:`~coreselect.Selection` with weights.

A selection's weights make the weighted loss over the selected rows an unbiased estimate of
the loss over the whole pool; scikit-learn takes them as ``sample_weight``.
:func:`selection_weights` turns a selection into the rows to fit on and their
``sample_weight`` (:meth:`coreselect.Selection.training_weights`, the default of every
integration: the tempered weights ``w ** 0.5`` rescaled to mean 1, no weights for a selection
drawn by the model's scores, and the queried rows that were not drawn with weight 1);
:func:`fit_selection` does the fit.

There is no ``Pipeline`` step that selects: a scikit-learn pipeline step transforms ``X`` and
cannot drop rows of ``X`` and ``y``. Put the selection before the pipeline and pass the
weights through ``fit`` (``pipe.fit(X[idx], y[idx], **{"model__sample_weight": w})``, which
:func:`fit_selection` does with ``weight_param="model__sample_weight"``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._validation import check_indices

__all__ = ["selection_weights", "fit_selection"]

logger = logging.getLogger(__name__)


def selection_weights(selection, *, normalize: bool = True, include_queries: bool = True,
                      power: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a selection to fit on and their ``sample_weight``.

    :meth:`coreselect.Selection.training_weights`: rows drawn more than once get the sum of
    their draws' weights (to the power ``power``), so with ``power=1`` the weighted loss is
    the same as over the draws.

    Parameters
    ----------
    selection : Selection
        From :func:`coreselect.sensitivity_sample` or any other strategy.
    normalize : bool, default=True
        Rescale the weights of the drawn rows to mean 1. The weights as drawn sum to about
        the pool size ``n``; a mean of 1 keeps the scale of the unweighted loss, so a
        regularisation strength (``C``, ``alpha``) means what it means without weights.
    include_queries : bool, default=True
        Also return the queried centers that were not drawn (their label was paid for),
        with weight 1 (the mean weight after normalisation).
    power : float in [0, 1] or None, default=None
        The power of the sample weights: 1 the weights as drawn, 0 none, 0.5 tempered. None:
        the measured default of :meth:`~coreselect.Selection.training_weights` (0.5, or 0
        for a selection drawn by the model's scores; ``docs/which-method.md``).

    Returns
    -------
    indices : ndarray of int64, shape (m,)
        Rows of the pool: the drawn rows sorted, then the queried rows not drawn, sorted.
    sample_weight : ndarray of float64, shape (m,)

    Examples
    --------
    >>> from coreselect import Selection
    >>> sel = Selection(indices=[4, 1, 4], weights=[1.0, 2.0, 1.0],
    ...                 probabilities=[0.2, 0.2, 0.2], n=6, replace=True)
    >>> selection_weights(sel)
    (array([1, 4]), array([1., 1.]))
    >>> selection_weights(sel, normalize=False, power=1.0)
    (array([1, 4]), array([2., 2.]))
    """
    return selection.training_weights(power, include_queries=include_queries,
                                      normalize=normalize)


def _take(data: Any, rows: np.ndarray) -> Any:
    """Rows of an array, a sparse matrix or a pandas object."""
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    if hasattr(data, "tocsr") and not isinstance(data, np.ndarray):
        return data.tocsr()[rows]
    return np.asarray(data)[rows]


def fit_selection(estimator, X, y, selection, *, normalize: bool = True,
                  include_queries: bool = True, weighted: bool = True,
                  power: float | None = None,
                  weight_param: str = "sample_weight", **fit_params):
    """Fit a scikit-learn estimator (or pipeline) on the selected rows with their weights.

    Parameters
    ----------
    estimator : estimator
        Anything with ``fit(X, y, **fit_params)`` that takes a sample weight.
    X : array-like, sparse matrix or DataFrame, shape (n, ...)
        The whole pool (``n == selection.n``); only the selected rows are used.
    y : array-like, shape (n,)
        Labels of the pool; only the selected rows' are read, so the others may be missing
        (e.g. NaN or -1).
    selection : Selection
    normalize, include_queries, power
        As in :func:`selection_weights`.
    weighted : bool, default=True
        False fits on the same rows without weights (the same as ``power=0``).
    weight_param : str, default="sample_weight"
        The fit parameter that takes the weights; for a ``Pipeline`` whose last step is
        called ``model``, ``"model__sample_weight"``.
    **fit_params
        Passed on to ``fit``.

    Returns
    -------
    estimator
        The fitted estimator (``fit``'s return value).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from coreselect import Selection
    >>> X = np.arange(10.0).reshape(-1, 1)
    >>> y = 3 * X[:, 0] + 1
    >>> sel = Selection(indices=[2, 7], weights=[5.0, 5.0], probabilities=[0.1, 0.1], n=10)
    >>> m = fit_selection(LinearRegression(), X, y, sel)
    >>> round(float(m.coef_[0]), 6), round(float(m.intercept_), 6)
    (3.0, 1.0)
    """
    rows, w = selection_weights(selection, normalize=normalize,
                                include_queries=include_queries, power=power)
    n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
    if n_rows != selection.n:
        raise ValueError(f"X must have selection.n={selection.n} rows; got {n_rows}.")
    rows = check_indices(rows, n_rows, name="selection.indices")
    Xs, ys = _take(X, rows), _take(y, rows)
    if weighted:
        fit_params = {**fit_params, weight_param: w}
    logger.debug("fitting %s on %d selected rows", type(estimator).__name__, rows.shape[0])
    return estimator.fit(Xs, ys, **fit_params)
