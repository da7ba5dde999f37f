"""Saving and loading a fitted :class:`~coreselect.SensitivitySampler`, without pickles.

The file is a ``.npz`` archive: the fitted arrays and one JSON string ``meta`` with the
format, the coreselect version, the parameters, the seed and the state of the random stream
(so that sampling after loading draws exactly what sampling before saving would have drawn),
the fingerprint of the embeddings (shape, dtype, SHA-256; see :func:`coreselect.io.fingerprint`)
and a checksum of the arrays (:mod:`coreselect._planfile` has the format). It is read with
``allow_pickle=False``.

Loading with the embeddings (``load_sampler(path, X)``) refuses embeddings that are not the
ones the plan was made from: the shape must match, the hash too when the file has one, and
the stored distances of a few rows to their centers must match those recomputed from ``X``.
A plan whose arrays were edited (their checksum differs) is refused with or without ``X``.
"""

from __future__ import annotations

import os

from ._planfile import FORMAT, read_meta, verify_embeddings
from .sampler import SensitivitySampler

__all__ = ["FORMAT", "save_sampler", "load_sampler", "verify_embeddings", "read_meta"]


def save_sampler(sampler, path: str | os.PathLike, *, X=None,
                 fingerprint: dict | None = None) -> str:
    """Write a fitted ``SensitivitySampler`` to ``path`` (a ``.npz`` archive), atomically.

    Parameters
    ----------
    sampler : SensitivitySampler
        Fitted.
    path : str or path-like
        The file to write (written as given; ``.npz`` is the usual suffix).
    X : array-like, optional
        The embeddings the sampler was fitted on: their full fingerprint (with a SHA-256) is
        stored. Without it (and without ``fingerprint`` or a ``fingerprint_`` attribute) only
        the shape is stored, and loading checks the shape and a few distances.
    fingerprint : dict, optional
        A fingerprint from :func:`coreselect.io.fingerprint`, when the caller has one.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from coreselect import SensitivitySampler
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> sampler = SensitivitySampler(4, seed=0).fit(X)
    >>> path = save_sampler(sampler, os.path.join(tempfile.mkdtemp(), "plan.npz"), X=X)
    >>> again = load_sampler(path, X)
    >>> bool((again.labels_ == sampler.labels_).all())
    True
    """
    if fingerprint is not None and X is None:
        sampler.fingerprint_ = fingerprint
    return sampler.save(path, X=X)


def load_sampler(path: str | os.PathLike, X=None, *, cls=None):
    """Read a sampler written by :func:`save_sampler`.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    X : array-like, optional
        The embeddings: when given, the sampler is refused (``ValueError``) unless they are
        the ones it was fitted on (shape, dtype and SHA-256 when stored; distances of a few
        rows always).
    cls : type, optional
        The class to build (``SensitivitySampler`` by default).

    Returns
    -------
    SensitivitySampler
        Fitted; ``sample`` continues the saved random stream.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from coreselect import SensitivitySampler
    >>> X = np.random.default_rng(1).normal(size=(60, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "plan.npz")
    >>> _ = save_sampler(SensitivitySampler(3, seed=0).fit(X), path, X=X)
    >>> load_sampler(path, X + 1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the embeddings have the same shape and dtype as those the plan was made for, but other values (their SHA-256 differs); ... Make a new plan.
    """
    return (cls or SensitivitySampler).load(path, X)
