"""Algorithm 1 of the paper: :class:`SensitivitySampler` and :func:`sensitivity_sample`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from ._validation import (
    check_choice,
    check_exclude,
    check_lam,
    check_losses,
    check_memory_limit,
    check_mix,
    check_n_clusters,
    check_oracle,
    check_positive_int,
    check_proposal_power,
    check_random_state,
    check_size,
    check_surrogate,
    check_z,
)
from .backends import get_backend
from .clustering import Clustering, FittedState, fit_pool
from .oracle import LossCache, ask_oracle
from .pools import as_pool
from .seeding import INITS
from .selection import Selection
from .sensitivity import DESIGNS, draw_members, sample_selection

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
        (None: half the available RAM) and never loaded whole; see :mod:`coreselect.pools`.
        A Dask array is fitted on its cluster (:mod:`coreselect.pools.dask`).
    far_rows : bool, default=True
        Rows far from every center after the pass (``v(e)`` at least 5% of ``Phi`` and more
        than ``Phi / k``) become centers of their own, within ``n_clusters``; see
        :func:`coreselect.clustering.isolate_far_rows`. False: the clustering as fitted.
    design : {"auto", "sensitivity", "stratified"}, default="auto"
        The default design of :meth:`sample`, and what the oracle is asked about:
        "sensitivity" queries the clustering's centers (Algorithm 1 as the paper has it);
        "stratified" and "auto" query one uniformly random row of each cluster, which then
        counts as a draw of the stratified design (no oracle call is spent outside the
        sample). See :func:`coreselect.sensitivity.sample_selection`. Those rows are drawn
        once, by ``fit``: the stratified estimate is unbiased over fit and sample together,
        so for repeated estimates fit again (or call :func:`sensitivity_sample`) rather
        than sample one fitted sampler many times.
    init : {"scalable", "greedy"}, default="scalable"
        How the centers are fitted (see :func:`coreselect.clustering.kz_clustering`):
        "scalable" (k-means|| seeding, a few passes over the fitting rows at any k) or
        "greedy" (the earlier fit, whose cost grows as k^2).

    Attributes
    ----------
    query_indices_ : ndarray of int64, shape (k,)
        The rows whose loss the oracle must give: the snapped centers, sorted
        (``design="sensitivity"``), or one random row of each cluster, in cluster order.
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
    >>> sel.params["design"], len(sel.indices), sel.weights.shape   # 2 queried rows + 10 new
    ('stratified', 12, (12,))
    """

    def __init__(self, n_clusters: int, *, z: float = 2.0, seed=None,
                 fit_sample_size: int | str = "auto", max_iter: int = 20,
                 chunk_size: int | None = None, backend: str | None = None,
                 progress: bool = False, memory_limit=None, far_rows: bool = True,
                 design: str = "auto", init: str = "scalable"):
        self.n_clusters = n_clusters
        self.design = design
        self.init = init
        self.far_rows = far_rows
        self.z = z
        self.seed = seed
        self.fit_sample_size = fit_sample_size
        self.max_iter = max_iter
        self.chunk_size = chunk_size
        self.backend = backend
        self.progress = progress
        self.memory_limit = memory_limit

    def fit(self, X, *, exclude=None) -> SensitivitySampler:
        """Cluster ``X`` and set ``query_indices_``, ``labels_``, ``distances_``, ``cost_``.

        ``X`` may be any pool (see :func:`coreselect.pools.as_pool`); it is validated here,
        once, and the fit below trusts it. ``exclude`` (e.g. the rows already labelled: a
        warm start) are never queried and never drawn by :meth:`sample`; the selection and
        its estimate then cover the other rows.
        """
        pool = as_pool(X)
        self._check_params(pool.n)
        exclude = check_exclude(exclude, pool.n)
        if exclude is not None:
            check_n_clusters(self.n_clusters, pool.n - exclude.shape[0])
        return self._fit_pool(pool, check_random_state(self.seed), exclude)

    def _check_params(self, n: int) -> None:
        check_n_clusters(self.n_clusters, n)
        check_z(self.z)
        check_positive_int(self.max_iter, "max_iter")
        if self.chunk_size is not None:
            check_positive_int(self.chunk_size, "chunk_size")
        if self.memory_limit is not None and self.memory_limit != "auto":
            check_memory_limit(self.memory_limit)
        get_backend(self.backend)
        check_choice(self.design, "design", DESIGNS)
        check_choice(self.init, "init", INITS)

    def _fit_pool(self, pool, rng: np.random.Generator,
                  exclude: np.ndarray | None = None) -> SensitivitySampler:
        """The one fit on a validated pool; the sampler's random stream continues in ``rng_``."""
        self.state_ = fit_pool(
            pool, int(self.n_clusters), z=float(self.z), rng=rng,
            fit_sample_size=self.fit_sample_size, max_iter=int(self.max_iter),
            chunk_size=self.chunk_size, backend=self.backend, memory_limit=self.memory_limit,
            progress=self.progress, far_rows=bool(self.far_rows), exclude=exclude,
            init=self.init)
        if self.design != "sensitivity":
            import dataclasses

            members = draw_members(self.state_.rows, rng, exclude)
            self.state_ = dataclasses.replace(
                self.state_, representatives=members,
                query_points=np.asarray(pool.take(members), dtype=np.float64))
        self.rng_ = rng
        return self

    @classmethod
    def _from_state(cls, params: dict, state: FittedState, rng: np.random.Generator,
                    fingerprint: dict | None = None) -> SensitivitySampler:
        """A fitted sampler from a saved state (used by :mod:`coreselect.persist`)."""
        sampler = cls(params.pop("n_clusters"), **params)
        sampler.state_ = state
        sampler.rng_ = rng
        sampler.fingerprint_ = fingerprint
        return sampler

    # the fitted attributes, read from the one fitted state
    @property
    def query_indices_(self) -> np.ndarray:
        state = self._fitted()
        if state.representatives is not None:
            return state.representatives
        return state.clustering.center_indices

    @property
    def queries_(self) -> str:
        """What the queried rows are: "centers" or "random" (one row of each cluster)."""
        return "centers" if self._fitted().representatives is None else "random"

    labels_ = property(lambda self: self._fitted().clustering.labels)
    distances_ = property(lambda self: self._fitted().clustering.distances)
    cost_ = property(lambda self: self._fitted().clustering.cost)
    cluster_sizes_ = property(lambda self: self._fitted().clustering.cluster_sizes)
    n_samples_ = property(lambda self: self._fitted().n)
    n_features_in_ = property(lambda self: self._fitted().d)
    clustering_: Clustering = property(lambda self: self._fitted().clustering)

    def _fitted(self) -> FittedState:
        state = self.__dict__.get("state_")
        if state is None:
            raise AttributeError("this SensitivitySampler is not fitted yet; call fit(X) first.")
        return state

    def _check_fitted(self) -> None:
        if "state_" not in self.__dict__:
            raise RuntimeError("this SensitivitySampler is not fitted yet; call fit(X) first.")

    def sample(self, query_losses, size: int, *, lam="auto", replace: bool = True,
               seed=None, mix: float = 0.0, design: str | None = None,
               surrogate=None, proposal_power: float | None = None) -> Selection:
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
        design : {"auto", "sensitivity", "stratified"}, optional
            Default: the sampler's ``design``. "sensitivity": Algorithm 1, as the paper has
            it. "stratified": the clusters as strata, drawn without replacement inside each,
            allocated in proportion to the cluster sizes (Neyman, by the surrogate's
            predicted spreads, when ``surrogate`` is given), at least one draw per cluster;
            the queried rows are a take-all stratum (centers) or the first draw of their
            cluster (random rows). "auto": :func:`coreselect.sensitivity.choose_design`
            picks one (the choice and the reason are in ``params["design"]`` and
            ``params["design_rule"]``). See :func:`coreselect.sensitivity.sample_selection`.
        surrogate : array-like of shape (n,), optional
            The model's predicted loss of every row, >= 0 (e.g.
            :func:`coreselect.surrogates.expected_cross_entropy` of its class
            probabilities). Calibrated on the queried rows, it makes the proposal per row
            and is the control variate of :meth:`Selection.estimate_total`; see
            :mod:`coreselect.surrogates`.
        proposal_power : float > 0, optional
            For a training set: draw in proportion to ``surrogate ** proposal_power`` (as
            given, uncalibrated), which concentrates the labels on the rows the surrogate
            ranks highest (e.g. :func:`coreselect.surrogates.margin_uncertainty` to the
            power ``coreselect.surrogates.TRAINING_PROPOSAL_POWER``, the registry's
            score-aware default). Needs ``surrogate``; ``design`` "auto" or "sensitivity".
            The weights stay unbiased; the estimate is less precise than with the default
            proposal (None), which minimises its variance.

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
        excluded = self._fitted().exclude
        size = check_size(size, self.n_samples_ - (0 if excluded is None else excluded.size),
                          replace=replace)
        rng = self.rng_ if seed is None else check_random_state(seed)
        lam = check_lam(lam)
        mix = check_mix(mix)
        design = check_choice(self.design if design is None else design, "design", DESIGNS)
        surrogate = check_surrogate(surrogate, self.n_samples_)
        proposal_power = check_proposal_power(proposal_power, surrogate, design)
        return self._sample(losses, size, lam=lam, replace=replace, rng=rng, mix=mix,
                            design=design, surrogate=surrogate, proposal_power=proposal_power)

    def _sample(self, losses: np.ndarray, size: int, *, lam, replace: bool,
                rng: np.random.Generator, mix: float, design: str = "sensitivity",
                surrogate: np.ndarray | None = None,
                proposal_power: float | None = None) -> Selection:
        """The one sample step on validated inputs."""
        state = self._fitted()
        return sample_selection(
            state.rows, query_indices=self.query_indices_, query_losses=losses,
            query_points=state.query_points, size=size, lam=lam, replace=replace, rng=rng,
            mix=mix, z=float(self.z), n_clusters=int(self.n_clusters), path=state.path,
            exclude=state.exclude, design=design, surrogate=surrogate, queries=self.queries_,
            proposal_power=proposal_power)

    def save(self, path, *, X=None) -> str:
        """Write the fitted state to ``path`` (``.npz`` + JSON, no pickles); see
        :func:`coreselect.persist.save_sampler`. Give ``X`` to store its full fingerprint."""
        from ._planfile import write_plan

        self._check_fitted()
        params = {name: getattr(self, name, None) for name in _PARAMS}
        fingerprint = None
        if X is not None:
            from ._validation import check_embeddings
            from .io import fingerprint as compute_fingerprint

            fingerprint = compute_fingerprint(check_embeddings(X))
        return write_plan(path, params, self._fitted(), self.rng_,
                          fingerprint or getattr(self, "fingerprint_", None))

    @classmethod
    def load(cls, path, X=None) -> SensitivitySampler:
        """Read a sampler written by :meth:`save`; refuses embeddings ``X`` it was not fitted
        on. ``sample`` then draws what it would have drawn before saving."""
        import inspect

        from ._planfile import read_plan

        params, state, rng, fingerprint = read_plan(path, X)
        accepted = inspect.signature(cls.__init__).parameters
        params = {p: v for p, v in params.items() if p in accepted}
        if rng is None:
            rng = check_random_state(params.get("seed"))
        return cls._from_state(params, state, rng, fingerprint)


# Constructor parameters saved with a plan and passed back when loading.
_PARAMS = ("n_clusters", "z", "seed", "fit_sample_size", "max_iter", "chunk_size", "backend",
           "memory_limit", "far_rows", "design", "init")


def sensitivity_sample(X, oracle: Callable, size: int, *, n_clusters: int, z: float = 2.0,
                       lam="auto", replace: bool = True, seed=None,
                       batch_size: int | None = 1024,
                       cache: LossCache | str | os.PathLike | None = None,
                       progress: bool = False, mix: float = 0.0, exclude=None,
                       design: str = "auto", surrogate=None,
                       proposal_power: float | None = None, **fit_params) -> Selection:
    """Select ``size`` weighted rows of ``X`` after asking ``oracle`` about ``n_clusters`` rows.

    Algorithm 1 of the paper: a (k, z)-clustering of the embeddings, the oracle's loss at the
    k centers, and ``size`` rows drawn with probability proportional to
    ``loss(A(e)) + lam ||e - A(e)||^z``, weighted so that ``sum(w * loss)`` is an unbiased
    estimate of the total loss.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Embeddings (numpy array, memmap, DataFrame); a ``.npy`` path or a list of shard
        paths (read in chunks, see :mod:`coreselect.pools`); a Dask array (fitted on its
        cluster, see :mod:`coreselect.pools.dask`).
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
    exclude : array-like of int, optional
        Rows already labelled (a warm start): never queried, never drawn; the selection
        and its estimate cover the other rows.
    design : {"auto", "sensitivity", "stratified"}, default="auto"
        How the rows are drawn; see :meth:`SensitivitySampler.sample`. "sensitivity" is
        Algorithm 1 exactly (the centers are queried); "auto" and "stratified" query one
        random row of each cluster and count it in the sample (``size`` more are drawn;
        ``Selection.indices`` lists the queried rows first), so that no oracle call is
        spent outside the estimate.
    surrogate : array-like of shape (n,), optional
        The model's predicted loss of every row (see :mod:`coreselect.surrogates`).
    proposal_power : float > 0, optional
        Draw in proportion to ``surrogate ** proposal_power`` (a training set); see
        :meth:`SensitivitySampler.sample`.
    **fit_params
        Passed to :class:`SensitivitySampler` (``fit_sample_size``, ``max_iter``,
        ``chunk_size``, ``backend``, ``memory_limit``, ``far_rows``, ``init``).

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
    check_oracle(oracle)
    pool = as_pool(X)
    exclude = check_exclude(exclude, pool.n)
    n_avail = pool.n - (0 if exclude is None else exclude.shape[0])
    size = check_size(size, n_avail, replace=replace)
    lam = check_lam(lam)
    mix = check_mix(mix)
    design = check_choice(design, "design", DESIGNS)
    surrogate = check_surrogate(surrogate, pool.n)
    proposal_power = check_proposal_power(proposal_power, surrogate, design)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    sampler = SensitivitySampler(n_clusters, z=z, seed=rng, progress=progress, design=design,
                                 **fit_params)
    sampler._check_params(pool.n)
    if exclude is not None:
        check_n_clusters(n_clusters, n_avail)
    sampler._fit_pool(pool, rng, exclude)
    losses = ask_oracle(oracle, sampler.query_indices_, batch_size=batch_size, cache=cache,
                        progress=progress, state=sampler)
    return sampler._sample(losses, size, lam=lam, replace=replace, rng=rng, mix=mix,
                           design=design, surrogate=surrogate, proposal_power=proposal_power)
