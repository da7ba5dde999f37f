"""Hugging Face ``datasets`` integration: select rows of a ``Dataset`` from an embeddings column.

Install with ``pip install coreselect[huggingface]``. :func:`dataset_embeddings` reads an
embeddings column as an ``(n, d)`` array, :func:`select_rows` turns a
:class:`~coreselect.Selection` into ``dataset.select(indices)`` with a weights column, and
:func:`sensitivity_select` does both around :func:`coreselect.sensitivity_sample`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from .._optional import require
from ..sampler import sensitivity_sample
from ..selection import Selection

datasets = require("datasets", "huggingface", "coreselect.integrations.huggingface")

__all__ = ["dataset_embeddings", "select_rows", "sensitivity_select"]

logger = logging.getLogger(__name__)


def _check_dataset(dataset) -> None:
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"dataset must be a datasets.Dataset (not a DatasetDict: pick a split); "
            f"got {type(dataset).__name__}."
        )


def _check_column(dataset, column: str, name: str) -> None:
    if column not in dataset.column_names:
        raise ValueError(
            f"{name} must be a column of the dataset {dataset.column_names}; got {column!r}."
        )


def dataset_embeddings(dataset, column: str = "embeddings") -> np.ndarray:
    """The embeddings column of a ``Dataset`` as an ``(n, d)`` array.

    Parameters
    ----------
    dataset : datasets.Dataset
    column : str, default="embeddings"
        A column of equal-length lists (or fixed-size arrays) of numbers, one a row.

    Returns
    -------
    ndarray, shape (n, d)
        float32 stays float32; other numbers become float64.

    Examples
    --------
    >>> import datasets
    >>> ds = datasets.Dataset.from_dict({"embeddings": [[0.0, 1.0], [2.0, 3.0]]})
    >>> dataset_embeddings(ds).shape
    (2, 2)
    """
    _check_dataset(dataset)
    _check_column(dataset, column, "column")
    try:
        arr = np.asarray(dataset.with_format("numpy")[column])
        ragged = arr.dtype == object
    except ValueError:  # numpy refuses to stack rows of different lengths
        ragged = True
    if ragged:
        raise ValueError(
            f"column {column!r} must hold lists of one length (the embedding dimension); "
            "got rows of different lengths."
        )
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"column {column!r} must hold numbers; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"column {column!r} must hold one vector a row, shape (n, d); got shape {arr.shape}."
        )
    return arr if arr.dtype == np.float32 else arr.astype(np.float64)


def select_rows(dataset, selection: Selection, *, weights_column: str | None = "weight",
                index_column: str | None = "pool_index", normalize: bool = True,
                power: float | None = None, include_queries: bool = True):
    """``dataset.select(indices)`` of the rows a selection paid for, with training weights.

    :meth:`coreselect.Selection.training_weights`, the default of every integration: the
    drawn rows get their sample weights to the power ``power``, rescaled to mean 1; the
    queried rows that were not drawn get weight 1. ``power=1, normalize=False,
    include_queries=False`` gives the sample's own rows and weights, whose weighted sum of
    losses estimates the pool's total loss.

    Parameters
    ----------
    dataset : datasets.Dataset
        The pool the selection was drawn from (``len(dataset) == selection.n``).
    selection : Selection
    weights_column : str or None, default="weight"
        Name of the column that gets each row's training weight (from the sample weights
        summed over repeated draws), or None for none.
    index_column : str or None, default="pool_index"
        Name of the column that gets each row's index in the pool, or None for none.
    normalize : bool, default=True
        Rescale the drawn rows' weights to mean 1 (the scale of an unweighted mean loss).
        As drawn they sum to about ``n``, and ``sum(weight * loss)`` estimates the pool's
        total loss.
    power : float in [0, 1] or None, default=None
        The power of the sample weights (1: as drawn; 0: none; 0.5: tempered; None: the
        measured default, 0.5 or 0 for a selection drawn by the model's scores).
    include_queries : bool, default=True
        Also the queried rows that were not drawn (their labels were paid for), weight 1.

    Returns
    -------
    datasets.Dataset
        The drawn rows sorted by pool index, then the queried rows not drawn.

    Examples
    --------
    >>> import datasets
    >>> from coreselect import Selection
    >>> ds = datasets.Dataset.from_dict({"text": list("abcde")})
    >>> sel = Selection(indices=[3, 0, 3], weights=[1.0, 2.0, 1.0],
    ...                 probabilities=[0.3, 0.3, 0.3], n=5, replace=True)
    >>> select_rows(ds, sel, power=1.0, normalize=False).to_dict()
    {'text': ['a', 'd'], 'weight': [2.0, 2.0], 'pool_index': [0, 3]}
    >>> select_rows(ds, sel).to_dict()
    {'text': ['a', 'd'], 'weight': [1.0, 1.0], 'pool_index': [0, 3]}
    """
    _check_dataset(dataset)
    if not isinstance(selection, Selection):
        raise TypeError(f"selection must be a coreselect.Selection; got {type(selection).__name__}.")
    if len(dataset) != selection.n:
        raise ValueError(
            f"dataset must have selection.n={selection.n} rows; got {len(dataset)}."
        )
    for col in (weights_column, index_column):
        if col is not None and col in dataset.column_names:
            raise ValueError(f"the dataset already has a column {col!r}; pick another name.")
    uniq, w = selection.training_weights(power, include_queries=include_queries,
                                         normalize=normalize)
    out = dataset.select(uniq)
    if weights_column is not None:
        out = out.add_column(weights_column, w.tolist())
    if index_column is not None:
        out = out.add_column(index_column, uniq.tolist())
    return out


def sensitivity_select(dataset, oracle: Callable, size: int, *, n_clusters: int,
                       embeddings_column: str = "embeddings",
                       weights_column: str | None = "weight",
                       index_column: str | None = "pool_index", normalize: bool = True,
                       power: float | None = None, include_queries: bool = True,
                       seed=None, **kwargs):
    """Sensitivity sampling over a ``Dataset``: the selected rows with a weights column.

    Reads the embeddings column, runs :func:`coreselect.sensitivity_sample` and returns
    :func:`select_rows` of the result together with the :class:`~coreselect.Selection`
    (which holds the queried centers, the probabilities and what the estimates need).

    Parameters
    ----------
    dataset : datasets.Dataset
    oracle : callable
        ``oracle(indices) -> losses`` for rows of ``dataset``.
    size : int
        Draws.
    n_clusters : int
        Centers whose loss the oracle gives first.
    embeddings_column : str, default="embeddings"
    weights_column, index_column, normalize, power, include_queries
        As in :func:`select_rows`.
    seed : None, int or numpy.random.Generator
    **kwargs
        Passed to :func:`coreselect.sensitivity_sample` (``z``, ``lam``, ``replace``,
        ``cache``...).

    Returns
    -------
    subset : datasets.Dataset
    selection : Selection

    Examples
    --------
    >>> import datasets, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ds = datasets.Dataset.from_dict({"embeddings": rng.normal(size=(200, 3)).tolist()})
    >>> loss = rng.random(200)
    >>> sub, sel = sensitivity_select(ds, loss.__getitem__, 20, n_clusters=5, seed=0)
    >>> sub.column_names
    ['embeddings', 'weight', 'pool_index']
    >>> len(sub) == sel.all_labelled()[0].shape[0]  # the draws and the queried centers
    True
    """
    _check_dataset(dataset)
    X = dataset_embeddings(dataset, embeddings_column)
    selection = sensitivity_sample(X, oracle, size, n_clusters=n_clusters, seed=seed, **kwargs)
    subset = select_rows(dataset, selection, weights_column=weights_column,
                         index_column=index_column, normalize=normalize, power=power,
                         include_queries=include_queries)
    return subset, selection
