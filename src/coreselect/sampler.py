"""Algorithm 1 of the paper: :class:`SensitivitySampler` and :func:`sensitivity_sample`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from ._validation import (
    check_embeddings,
    check_fraction,
    check_lam,
    check_losses,
    check_n_clusters,
    check_random_state,
    check_size,
    check_z,
)
from .clustering import kz_clustering
from .oracle import LossCache, ask_oracle
from .selection import Selection
from .sensitivity import (
    draw_sample,
    resolve_lam,
    sensitivity_probabilities,
)

__all__ = ["SensitivitySampler", "sensitivity_sample"]

logger = logging.getLogger(__name__)


class SensitivitySampler:
    """Sensitivity sampling in two steps, for oracles that are a person or a batch job.

    ``fit`` clusters the embeddings and says which rows need a loss (``query_indices_``);
    ``sample`` takes those losses and draws the weighted sample.

    Parameters
    ----------
    n_clusters : int
        k, the number of centers, i.e. of oracle calls before sampling.
    z : float, default=2.0
        Power of the distance (2: k-means, 1: k-median); the Hoelder exponent assumed.
    seed : None, int or numpy.random.Generator
        Randomness of the clustering and, unless ``sample`` gets its own, of the sample.
    fit_sample_size : int or "auto", default="auto"
        Rows the clustering is fitted on (see :func:`coreselect.clustering.kz_clustering`).
    max_iter : int, default=20
        Improvement steps of the clustering at most.
    chunk_size : int, optional
        Rows per chunk in the assignment pass (does not change results).
    backend : str, optional
        Assignment backend; numpy by default.
    progress : bool, default=False
        Progress bars on stderr.
    memory_limit : int, str or None, default=None
        Bound on the memory of the fit (bytes, or "1.5GB"). When given, or when ``X`` is a
        memmap, a ``.npy`` path or a list of shards, the pool is read in chunks sized to it
        (None: half the available RAM) and never loaded whole; see :mod:`coreselect.outofcore`.
        A Dask array is fitted on its cluster (:mod:`coreselect.backends.dask`).

    Attributes
    ----------
    query_indices_ : ndarray of int64, shape (k,)
        The rows whose loss the oracle must give (the snapped centers, sorted).
    labels_ : ndarray of int64, shape (n,)
        For each row, the position of its center in ``query_indices_``.
    distances_ : ndarray of float64, shape (n,)
        ``v(e) = ||e - A(e)||^z``.
    cost_ : float
        ``Phi = sum(distances_)``.
    cluster_sizes_ : ndarray of int64, shape (k,)
        Rows per center.
    n_samples_, n_features_in_ : int
        The shape of the fitted embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))])
    >>> sampler = SensitivitySampler(n_clusters=2, seed=0).fit(X)
    >>> query_losses = np.ones(len(sampler.query_indices_))   # ask your oracle here
    >>> sel = sampler.sample(query_losses, size=10)
    >>> len(sel.indices), sel.weights.shape
    (10, (10,))
    """

    def __init__(self, n_clusters: int, *, z: float = 2.0, seed=None,
                 fit_sample_size: int | str = "auto", max_iter: int = 20,
                 chunk_size: int | None = None, backend: str | None = None,
                 progress: bool = False, memory_limit=None):
        self.n_clusters = n_clusters
        self.z = z
        self.seed = seed
        self.fit_sample_size = fit_sample_size
        self.max_iter = max_iter
        self.chunk_size = chunk_size
        self.backend = backend
        self.progress = progress
        self.memory_limit = memory_limit

    def fit(self, X) -> SensitivitySampler:
        """Cluster ``X`` and set ``query_indices_``, ``labels_``, ``distances_``, ``cost_``."""
        from .outofcore import fit_sampler_routed

        if fit_sampler_routed(self, X):  # Dask array, memmap, shard list or memory_limit
            return self
        self._ooc = None
        X = check_embeddings(X)
        n = X.shape[0]
        check_n_clusters(self.n_clusters, n)
        check_z(self.z)
        self._rng = check_random_state(self.seed)
        cl = kz_clustering(
            X, self.n_clusters, z=self.z, seed=self._rng, fit_sample_size=self.fit_sample_size,
            max_iter=self.max_iter, chunk_size=self.chunk_size, progress=self.progress,
            backend=self.backend,
        )
        self.query_indices_ = cl.center_indices
        self.labels_ = cl.labels
        self.distances_ = cl.distances
        self.cost_ = cl.cost
        self.cluster_sizes_ = cl.cluster_sizes
        self.n_samples_, self.n_features_in_ = X.shape
        self.clustering_ = cl
        self._query_points = np.asarray(X[cl.center_indices], dtype=np.float64)  # diagnostics
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "query_indices_"):
            raise RuntimeError("this SensitivitySampler is not fitted yet; call fit(X) first.")

    def sample(self, query_losses, size: int, *, lam="auto", replace: bool = True,
               seed=None, mix: float = 0.0) -> Selection:
        """Draw the weighted sample from the losses of the queried rows.

        Parameters
        ----------
        query_losses : array-like of shape (k,), or a mapping index -> loss
            The oracle's loss for each row of ``query_indices_``, in that order.
        size : int
            s, the number of draws (``replace=True``) or of distinct rows (``replace=False``).
        lam : float or "auto", default="auto"
            The weight of the distances (the Hoelder constant); "auto" is
            ``sum(l_hat) / Phi`` (see :mod:`coreselect.sensitivity` for why).
        replace : bool, default=True
            True: s i.i.d. draws with weights ``1/(s p)`` (the paper). False: s distinct rows
            with inclusion probabilities ``min(1, c p)`` and weights ``1/pi``.
        seed : None, int or Generator, optional
            Randomness of the draw; by default the sampler's own stream continues.
        mix : float, default=0.0
            Defensive mixing alpha in [0, 1]: ``p = alpha / n + (1 - alpha) p``. The
            estimator's variance is then at most ``1 / alpha`` times a uniform sample's
            whatever the loss, and at most ``1 / (1 - alpha)`` times the unmixed one's.

        Returns
        -------
        Selection
            With ``diagnostics`` (see :func:`coreselect.diagnostics.selection_diagnostics`):
            Phi, sum of l_hat, lam and its rule, Theorem 5's bound, effective sample size,
            largest weight share, and a plain ``verdict`` on whether to trust the sample.
        """
        self._check_fitted()
        k = self.query_indices_.shape[0]
        if isinstance(query_losses, (dict, LossCache)):
            missing = [int(i) for i in self.query_indices_ if int(i) not in query_losses]
            if missing:
                raise ValueError(
                    f"query_losses has no loss for {len(missing)} of the {k} query indices "
                    f"(first: {missing[:5]})."
                )
            query_losses = [query_losses[int(i)] for i in self.query_indices_]
        losses = check_losses(query_losses, self.query_indices_, name="query_losses")
        n = self.n_samples_
        size = check_size(size, n, replace=replace)
        rng = self._rng if seed is None else check_random_state(seed)
        mix = check_fraction(mix, "mix")
        if getattr(self, "_ooc", None) is not None:  # fitted out of core or on Dask
            from .outofcore import sample_out_of_core

            return sample_out_of_core(self, losses, size, lam=lam, replace=replace, rng=rng,
                                      mix=mix)
        l_hat = losses[self.labels_]
        hat_total = float(np.dot(self.cluster_sizes_.astype(np.float64), losses))
        lam_value, lam_rule = resolve_lam(lam, hat_total, self.cost_)
        p = sensitivity_probabilities(l_hat, self.distances_, lam_value, mix)
        del l_hat
        idx, prob, weights = draw_sample(p, size, replace, rng)
        centers = self.query_indices_[self.labels_[idx]]
        params = {
            "lam": lam_value, "lam_rule": lam_rule, "z": float(self.z),
            "n_clusters": int(self.n_clusters), "cost": float(self.cost_),
            "hat_total": hat_total, "size": int(size), "mix": mix,
        }
        from .diagnostics import selection_diagnostics

        diagnostics = selection_diagnostics(
            p=p, indices=idx, weights=weights, query_points=getattr(self, "_query_points", None),
            query_losses=losses, cluster_sizes=self.cluster_sizes_, cost=self.cost_,
            hat_total=hat_total, lam=lam_value, lam_rule=lam_rule, z=self.z, size=size,
            replace=replace, mix=mix,
        )
        return Selection(
            indices=idx, weights=weights, probabilities=prob, n=n, centers=centers,
            query_indices=self.query_indices_, query_losses=losses,
            cluster_sizes=self.cluster_sizes_, replace=replace, method="sensitivity",
            params=params, diagnostics=diagnostics,
        )

    def save(self, path, *, X=None) -> str:
        """Write the fitted state to ``path`` (``.npz`` + JSON, no pickles); see
        :func:`coreselect.persist.save_sampler`. Give ``X`` to store its full fingerprint."""
        from .persist import save_sampler

        return save_sampler(self, path, X=X)

    @classmethod
    def load(cls, path, X=None) -> SensitivitySampler:
        """Read a sampler written by :meth:`save`; refuses embeddings ``X`` it was not fitted
        on. ``sample`` then draws what it would have drawn before saving."""
        from .persist import load_sampler

        return load_sampler(path, X, cls=cls)


def sensitivity_sample(X, oracle: Callable, size: int, *, n_clusters: int, z: float = 2.0,
                       lam="auto", replace: bool = True, seed=None,
                       batch_size: int | None = 1024,
                       cache: LossCache | str | os.PathLike | None = None,
                       progress: bool = False, mix: float = 0.0, **fit_params) -> Selection:
    """Select ``size`` weighted rows of ``X`` after asking ``oracle`` about ``n_clusters`` rows.

    Algorithm 1 of the paper: a (k, z)-clustering of the embeddings, the oracle's loss at the
    k centers, and ``size`` rows drawn with probability proportional to
    ``loss(A(e)) + lam ||e - A(e)||^z``, weighted so that ``sum(w * loss)`` is an unbiased
    estimate of the total loss.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Embeddings (numpy array, memmap, DataFrame); a ``.npy`` path or a list of shard
        paths (read in chunks, see :mod:`coreselect.outofcore`); a Dask array (fitted on its
        cluster, see :mod:`coreselect.backends.dask`).
    oracle : callable
        ``oracle(indices: ndarray[int64]) -> losses``, one finite loss >= 0 per row; called
        in batches of ``batch_size``.
    size : int
        s, the number of draws.
    n_clusters : int
        k, the number of oracle calls before sampling.
    z : float, default=2.0
        Power of the distance.
    lam : float or "auto", default="auto"
        Weight of the distances; see :meth:`SensitivitySampler.sample`.
    replace : bool, default=True
        i.i.d. draws (True) or distinct rows (False).
    seed : None, int or numpy.random.Generator
        The same seed gives the same selection.
    batch_size : int or None, default=1024
        Rows per oracle call.
    cache : LossCache, path or None
        Keep the oracle's answers in a file; a rerun asks only for missing ones.
    progress : bool, default=False
        Progress bars on stderr.
    mix : float, default=0.0
        Defensive mixing with uniform; see :meth:`SensitivitySampler.sample`.
    **fit_params
        Passed to :class:`SensitivitySampler` (``fit_sample_size``, ``max_iter``,
        ``chunk_size``, ``backend``, ``memory_limit``).

    Returns
    -------
    Selection

    Raises
    ------
    OracleError
        When the oracle fails; it carries the answers received and the fitted sampler.

    Examples
    --------
    >>> import numpy as np
    >>> import coreselect as cs
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 8))
    >>> loss = (X ** 2).sum(axis=1)                  # stands in for a model's loss
    >>> sel = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=20, seed=0)
    >>> est = sel.estimate_total(loss[sel.indices])
    >>> bool(abs(est.value - loss.sum()) < 4 * est.stderr)
    True
    """
    rng = check_random_state(seed)
    sampler = SensitivitySampler(n_clusters, z=z, seed=rng, progress=progress, **fit_params)
    from .outofcore import routed_input

    X = routed_input(X, fit_params.get("memory_limit"))  # else check_embeddings(X)
    check_size(size, X.shape[0], replace=replace)
    check_lam(lam)
    sampler.fit(X)
    losses = ask_oracle(oracle, sampler.query_indices_, batch_size=batch_size, cache=cache,
                        progress=progress, state=sampler)
    return sampler.sample(losses, size, lam=lam, replace=replace, seed=rng, mix=mix)
