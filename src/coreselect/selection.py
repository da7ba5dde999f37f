"""Results: :class:`Selection` (a weighted sample with its provenance) and :class:`Estimate`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import check_fraction, check_losses

__all__ = ["Selection", "Estimate", "TRAINING_WEIGHT_POWER"]

# The power of the sample weights a model is trained with by default (Selection.training_weights
# and the sklearn, torch and Hugging Face integrations, power=None): tempered weights, w ** 0.5
# rescaled to mean 1, for a selection drawn by losses; no weights (0) for one whose draws were
# concentrated on the model's scores on purpose (params["proposal_power"]). Chosen by
# measurement (benchmarks/bench_training.py, docs/which-method.md): the full weights (1) were
# never better than w ** 0.5 and up to 0.16 accuracy points worse; on a loss-drawn selection
# w ** 0.5 was within the noise of no weights on every set measured and keeps part of the
# weighting (which gained 0.39 points on a held-out text set); on a score-drawn one, w ** 0.5
# cost 0.2 to 0.3 points on Fashion-MNIST against no weights (the weights undo the
# concentration).
TRAINING_WEIGHT_POWER = 0.5

_ARRAY_FIELDS = (
    "indices",
    "weights",
    "probabilities",
    "centers",
    "query_indices",
    "query_losses",
    "cluster_sizes",
)
# Written when present; files without them (older versions) load with the defaults.
_OPTIONAL_FIELDS = ("surrogate",)


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error and a confidence interval.

    Attributes
    ----------
    value : float
        The point estimate.
    stderr : float
        Its estimated standard error.
    ci_low, ci_high : float
        The bounds of the confidence interval (95% unless asked otherwise).
    confidence : float
        The level of the interval.

    Examples
    --------
    >>> e = Estimate(10.0, 1.0, 8.04, 11.96)
    >>> e.ci_low < e.value < e.ci_high
    True
    """

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return (
            f"{self.value:.6g} +/- {self.stderr:.3g} "
            f"({pct}% CI [{self.ci_low:.6g}, {self.ci_high:.6g}])"
        )

    def scaled(self, factor: float) -> Estimate:
        """The same estimate multiplied by ``factor`` (e.g. ``1/n`` for a mean)."""
        lo, hi = sorted((self.ci_low * factor, self.ci_high * factor))
        return Estimate(self.value * factor, self.stderr * abs(factor), lo, hi, self.confidence)


def _frozen(arr: Any, dtype) -> np.ndarray:
    out = np.array(arr, dtype=dtype, copy=True).reshape(-1)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Selection:
    """A weighted sample of a pool, with where it came from.

    Every strategy of coreselect returns a ``Selection``, so that experiments compare like
    with like. ``sum(weights * loss[indices])`` is an unbiased estimate of the pool's total
    loss.

    Attributes
    ----------
    indices : ndarray of int64, shape (s,)
        The selected rows of the pool. With ``replace=True`` a row can appear more than once
        (once per draw); :meth:`unique` merges repeats.
    weights : ndarray of float64, shape (s,)
        ``1 / (s p)`` for i.i.d. draws, ``1 / pi`` (Horvitz-Thompson) without replacement.
    probabilities : ndarray of float64, shape (s,)
        The per-draw probability ``p`` of each selected row (``replace=True``) or its
        inclusion probability ``pi`` (``replace=False``).
    centers : ndarray of int64, shape (s,)
        For each selected row, the pool index of its cluster center ``A(e)`` (-1 when the
        strategy has no centers).
    query_indices, query_losses : ndarray, shape (k,)
        The rows the oracle was asked about, and its answers.
    cluster_sizes : ndarray of int64, shape (k,)
        How many pool rows each queried center stands for.
    n : int
        The pool size.
    replace : bool
        Whether the rows were drawn i.i.d. (with replacement).
    method : str
        The strategy that made the selection.
    params : dict
        The parameters used (``lam``, ``z``, the clustering cost, ...), JSON-serialisable.
    diagnostics : dict
        Figures that tell whether to trust the sample (see the docs); may be empty.
    surrogate : ndarray of float64, shape (s,) or (0,)
        The calibrated surrogate loss of each selected row, when the selection was drawn
        with a ``surrogate=`` (its pool total is ``params["surrogate_total"]``); empty
        otherwise. :meth:`estimate_total` uses it as a control variate.

    Examples
    --------
    >>> import numpy as np
    >>> sel = Selection(indices=[3, 1], weights=[2.0, 2.0], probabilities=[0.25, 0.25], n=4)
    >>> sel.estimate_total(np.array([1.0, 3.0])).value
    8.0
    """

    indices: np.ndarray
    weights: np.ndarray
    probabilities: np.ndarray
    n: int
    centers: np.ndarray | None = None
    query_indices: np.ndarray | None = None
    query_losses: np.ndarray | None = None
    cluster_sizes: np.ndarray | None = None
    replace: bool = False
    method: str = "unknown"
    params: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    surrogate: np.ndarray | None = None

    def __post_init__(self) -> None:
        idx = _frozen(self.indices, np.int64)
        s = idx.shape[0]
        set_ = object.__setattr__
        set_(self, "indices", idx)
        set_(self, "weights", _frozen(self.weights, np.float64))
        set_(self, "probabilities", _frozen(self.probabilities, np.float64))
        set_(self, "centers", _frozen(np.full(s, -1) if self.centers is None else self.centers, np.int64))
        set_(self, "query_indices", _frozen([] if self.query_indices is None else self.query_indices, np.int64))
        set_(self, "query_losses", _frozen([] if self.query_losses is None else self.query_losses, np.float64))
        sizes = self.cluster_sizes
        if sizes is None:
            sizes = np.zeros(self.query_indices.shape[0], dtype=np.int64)
        set_(self, "cluster_sizes", _frozen(sizes, np.int64))
        set_(self, "n", int(self.n))
        set_(self, "replace", bool(self.replace))
        set_(self, "params", dict(self.params))
        set_(self, "diagnostics", dict(self.diagnostics))
        set_(self, "surrogate", _frozen([] if self.surrogate is None else self.surrogate,
                                        np.float64))
        if self.surrogate.shape[0] not in (0, s):
            raise ValueError(f"Selection.surrogate has {self.surrogate.shape[0]} entries; "
                             f"expected {s}, one per selected index (or none).")
        for name in ("weights", "probabilities", "centers"):
            if getattr(self, name).shape[0] != s:
                raise ValueError(
                    f"Selection.{name} has {getattr(self, name).shape[0]} entries; expected "
                    f"{s}, one per selected index."
                )
        k = self.query_indices.shape[0]
        for name in ("query_losses", "cluster_sizes"):
            if getattr(self, name).shape[0] not in (0, k):
                raise ValueError(
                    f"Selection.{name} has {getattr(self, name).shape[0]} entries; expected {k}, "
                    "one per query index."
                )

    # ------------------------------------------------------------------ basics
    @property
    def size(self) -> int:
        """The number of draws (``len(indices)``)."""
        return int(self.indices.shape[0])

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (
            f"Selection(method={self.method!r}, size={self.size}, n={self.n}, "
            f"replace={self.replace}, queries={self.query_indices.shape[0]})"
        )

    @property
    def n_queries(self) -> int:
        """Oracle calls spent before sampling (the ``k`` queried centers)."""
        return int(self.query_indices.shape[0])

    def unique(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct selected rows and their summed weights, sorted by index.

        With ``replace=True`` a row drawn twice counts twice; training on the distinct rows
        with the summed weights gives the same weighted loss.

        Examples
        --------
        >>> sel = Selection(indices=[5, 2, 5], weights=[1.0, 2.0, 1.0],
        ...                 probabilities=[0.1, 0.1, 0.1], n=10, replace=True)
        >>> sel.unique()
        (array([2, 5]), array([2., 2.]))
        """
        uniq, inverse = np.unique(self.indices, return_inverse=True)
        return uniq, np.bincount(inverse, weights=self.weights)

    @property
    def to_label(self) -> np.ndarray:
        """The selected rows whose loss or label is not known yet, sorted: ``indices`` less
        repeats and less the queried rows (which the stratified design lists in the sample;
        their losses are ``query_losses``). What to send to the labeller, paying once a row.

        Examples
        --------
        >>> sel = Selection(indices=[4, 7, 2, 7], weights=[1.0] * 4, probabilities=[0.5] * 4,
        ...                 n=10, query_indices=[4], query_losses=[0.3])
        >>> sel.to_label
        array([2, 7])
        """
        return np.setdiff1d(self.indices, self.query_indices)

    def all_labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose loss or label the run paid for: the queried centers and the sample.

        Returns the distinct indices and, for convenience in training, their summed sample
        weights (0 for a center that was queried but not drawn).
        """
        uniq, w = self.unique()
        allidx = np.union1d(uniq, self.query_indices)
        weights = np.zeros(allidx.shape[0])
        weights[np.searchsorted(allidx, uniq)] = w
        return allidx, weights

    def training_weights(self, power: float | None = None, *,
                         include_queries: bool = True, normalize: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The rows to train a model on and their weights.

        The drawn rows (distinct, sorted) get their summed sample weights to the power
        ``power``, rescaled to mean 1 over the drawn rows when ``normalize``; then, with
        ``include_queries``, the queried rows that were not drawn (sorted), with weight 1:
        their labels were paid for, though they carry no sample weight.

        Parameters
        ----------
        power : float in [0, 1] or None, default=None
            1: the sample weights themselves (the weighted loss estimates the pool's); 0: no
            weights (every row 1); 0.5: tempered. None, the measured default (see
            ``docs/which-method.md``): 0 when the draws followed the model's scores on
            purpose (``params["proposal_power"]``: weighting would undo that), otherwise
            ``TRAINING_WEIGHT_POWER`` (0.5).
        include_queries : bool, default=True
            Also return the queried rows that were not drawn.
        normalize : bool, default=True
            Rescale the drawn rows' weights to mean 1, so that a regularisation strength or
            a learning rate means what it means without weights. Without it (and with
            ``power=1``) the weights sum to about ``n``.

        Returns
        -------
        rows : ndarray of int64, shape (m,)
        weights : ndarray of float64, shape (m,)

        Examples
        --------
        >>> sel = Selection(indices=[4, 1, 4], weights=[1.0, 8.0, 1.0],
        ...                 probabilities=[0.2, 0.2, 0.2], n=6, replace=True,
        ...                 query_indices=[0, 4], query_losses=[0.1, 0.2])
        >>> rows, w = sel.training_weights()
        >>> rows.tolist(), w.round(4).tolist()
        ([1, 4, 0], [1.3333, 0.6667, 1.0])
        >>> sel.training_weights(1.0, include_queries=False, normalize=False)[1].tolist()
        [8.0, 2.0]
        """
        if power is None:
            power = 0.0 if self.params.get("proposal_power") else TRAINING_WEIGHT_POWER
        power = check_fraction(power, "power")
        if not isinstance(include_queries, (bool, np.bool_)):
            raise TypeError(f"include_queries must be True or False; got {include_queries!r}.")
        uniq, w = self.unique()
        w = np.asarray(w, dtype=np.float64)
        if power != 1.0:
            w = np.ones_like(w) if power == 0.0 else w ** power
        if normalize and w.sum() > 0:
            w = w * (w.shape[0] / w.sum())
        uniq = uniq.astype(np.int64, copy=False)
        if include_queries:
            rest = np.setdiff1d(self.query_indices, uniq).astype(np.int64, copy=False)
            uniq = np.concatenate([uniq, rest])
            w = np.concatenate([w, np.ones(rest.shape[0])])
        return uniq, w

    # -------------------------------------------------------------- estimates
    def _sample_losses(self, losses: Any) -> np.ndarray:
        losses = np.asarray(losses)
        if losses.ndim == 1 and losses.shape[0] == self.n and self.n != self.size:
            losses = losses[self.indices]  # the whole pool's losses were given: take ours
        m = int(self.params.get("queried_in_sample", 0))
        if m and losses.ndim == 1 and losses.shape[0] == self.size - m:
            # the new draws' losses only: the queried rows (listed first) are known
            return np.concatenate([self.query_losses[:m], check_losses(losses, self.indices[m:])])
        if m and losses.ndim == 1 and losses.shape[0] != self.size:
            raise ValueError(
                f"losses: {losses.shape[0]} values; expected {self.size} (one per selected "
                f"row), {self.size - m} (the rows after the {m} queried ones, whose losses "
                f"are known) or {self.n} (the whole pool).")
        return check_losses(losses, self.indices)

    def estimate_total(self, losses: Any, *, method: str = "auto",
                       confidence: float = 0.95) -> Estimate:
        """Estimate the pool's total loss from the losses of the selected rows.

        The total covers the rows the selection could draw, plus the queried rows whose
        losses are known and were therefore not drawn (``params["known_total"]``, without
        replacement); rows excluded from the selection (already labelled) are not covered.
        The variance is the design's own: Hansen-Hurwitz for i.i.d. draws, Hajek's
        approximation without replacement, the stratified formula for
        ``design="stratified"``.

        Parameters
        ----------
        losses : array-like of shape (s,) or (n,)
            The loss of each selected row, in the order of ``indices`` (repeats included);
            or the losses of the whole pool, from which the selected ones are taken. When
            the queried rows are part of the sample (``params["queried_in_sample"] = m``,
            listed first), the losses of the other ``s - m`` rows are enough.
        method : {"auto", "weighted", "difference", "control"}, default="auto"
            ``"weighted"``: the unbiased estimate ``sum(w * l)`` (Hansen-Hurwitz with
            replacement, Horvitz-Thompson without). ``"difference"``: uses the queried losses
            as a control variate, ``sum(l_hat) + sum(w * (l - l_hat))`` with
            ``l_hat(e) = loss(A(e))``; also unbiased, and more precise when the loss is
            smooth in the embedding. ``"control"`` (needs a selection drawn with a
            ``surrogate``): ``beta G + sum(w * (l - beta g))`` with ``g`` the calibrated
            surrogate, ``G`` its total over the rows covered, and ``beta`` the coefficient
            that minimises the estimated variance (as PPI++ tunes its power; ``beta = 0`` is
            the weighted estimate); the interval accounts for the tuning only to first
            order. ``"auto"``: ``"control"`` when the selection has a surrogate, else
            ``"weighted"``.
        confidence : float, default=0.95
            Level of the interval (Student t with ``s - 1`` degrees of freedom).

        Returns
        -------
        Estimate

        Examples
        --------
        >>> import numpy as np
        >>> sel = Selection(indices=[0, 2], weights=[2.0, 2.0], probabilities=[0.5, 0.5], n=4)
        >>> round(sel.estimate_total([1.0, 1.0]).value, 6)
        4.0
        """
        if not (0 < confidence < 1):
            raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
        methods = ("auto", "weighted", "difference", "control")
        if method not in methods:
            raise ValueError(f"method must be one of {list(methods)}; got {method!r}.")
        if method == "auto":
            method = "control" if self.surrogate.shape[0] else "weighted"
        y = self._sample_losses(losses)
        known = float(self.params.get("known_total", 0.0))
        if method == "control":
            if self.surrogate.shape[0] == 0 and self.size:
                raise ValueError(
                    "method='control' needs a selection drawn with a surrogate (surrogate=); "
                    f"this selection ({self.method!r}) has none. Use method='weighted'.")
            g = self.surrogate
            var_of = self._variance_of
            v_l, v_g, v_sum = var_of(y), var_of(g), var_of(y + g)
            beta = 0.0
            if np.isfinite(v_g) and v_g > 0 and np.isfinite(v_sum):
                beta = 0.5 * (v_sum - v_l - v_g) / v_g
            y = y - beta * g
            offset = known + beta * float(self.params.get("surrogate_total", 0.0))
        elif method == "weighted":
            offset = known
        else:
            if self.query_indices.shape[0] == 0 or self.cluster_sizes.sum() == 0:
                raise ValueError(
                    "method='difference' needs the queried centers' losses; this selection "
                    f"({self.method!r}) has none. Use method='weighted'."
                )
            pos = np.searchsorted(self._sorted_queries[0], self.centers)
            l_hat = self.query_losses[self._sorted_queries[1][pos]]
            y = y - l_hat
            offset = self.params.get("hat_covered")
            if offset is None:
                offset = float(np.dot(self.cluster_sizes.astype(np.float64), self.query_losses))
        value, var = self._design_estimate(y)
        return _interval(offset + value, var, self.size, confidence)

    def _design_estimate(self, y: np.ndarray) -> tuple[float, float]:
        """The design's total of ``y`` over the sample and its variance estimate."""
        if self.params.get("design") == "stratified":
            return _stratified_estimate(y, self.weights, self.centers)
        return _estimate(y, self.weights, self.probabilities, self.replace)

    def _variance_of(self, y: np.ndarray) -> float:
        return self._design_estimate(y)[1]

    def estimate_mean(self, losses: Any, *, method: str = "auto",
                      confidence: float = 0.95) -> Estimate:
        """Estimate the pool's mean loss: :meth:`estimate_total` divided by the rows it covers
        (``n``, less the rows excluded from the selection, ``params["n_covered"]``)."""
        covered = int(self.params.get("n_covered", self.n))
        return self.estimate_total(losses, method=method, confidence=confidence).scaled(
            1.0 / covered)

    @property
    def _sorted_queries(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.query_indices, kind="stable")
        return self.query_indices[order], order

    # ----------------------------------------------------------------- saving
    def to_dict(self) -> dict:
        """The selection as plain Python objects (lists and numbers), for JSON."""
        out = {name: getattr(self, name).tolist() for name in _ARRAY_FIELDS + _OPTIONAL_FIELDS}
        out.update(n=self.n, replace=self.replace, method=self.method, params=self.params,
                   diagnostics=self.diagnostics)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the selection to a ``.npz`` file (no pickles), atomically."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        meta = json.dumps({"n": self.n, "replace": self.replace, "method": self.method,
                           "params": self.params, "diagnostics": self.diagnostics,
                           "format": "coreselect.Selection/1"})
        tmp = path + ".tmp.npz"
        np.savez(tmp, meta=np.array(meta),
                 **{name: getattr(self, name) for name in _ARRAY_FIELDS + _OPTIONAL_FIELDS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Selection:
        """Read a selection written by :meth:`save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            try:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name] for name in _ARRAY_FIELDS}
                arrays.update({name: data[name] for name in _OPTIONAL_FIELDS if name in data})
            except KeyError as exc:
                raise ValueError(f"{os.fspath(path)} is not a coreselect selection file "
                                 f"(missing {exc}).") from None
        meta.pop("format", None)
        return cls(**arrays, **meta)


def _estimate(y: np.ndarray, w: np.ndarray, p: np.ndarray, replace: bool) -> tuple[float, float]:
    """Total estimate and its estimated variance for values ``y`` with weights ``w``."""
    s = y.shape[0]
    x = w * y
    value = float(x.sum())
    if s < 2:
        return value, math.nan
    if replace:
        # Hansen-Hurwitz: s i.i.d. terms x_j = y_j / (s p_j); Var(sum) = s Var(x_1)
        var = s / (s - 1) * float(np.sum((x - x.mean()) ** 2))
    else:
        # Hajek's approximation for fixed-size high-entropy designs; certain units add nothing
        c = np.maximum(1.0 - p, 0.0)  # p >= 1 (a certain row): 0
        if c.sum() <= 0:
            return value, 0.0
        b = float(np.sum(c * x) / c.sum())
        var = s / (s - 1) * float(np.sum(c * (x - b) ** 2))
    return value, max(var, 0.0)


def _stratified_estimate(y: np.ndarray, w: np.ndarray, strata: np.ndarray) -> tuple[float, float]:
    """Stratified Horvitz-Thompson total and its variance estimate.

    Stratum h (the rows sharing a center) holds ``N_h`` rows of which ``n_h`` were drawn
    uniformly without replacement (weight ``N_h / n_h``): ``Var = sum_h N_h^2 (1 - n_h / N_h)
    s_h^2 / n_h``; a stratum drawn whole adds nothing. Strata with one draw have no
    ``s_h^2``: they are collapsed in pairs (by
    stratum size), each group contributing ``L / (L - 1) sum (t_h - mean t)^2`` over its L
    strata with ``t_h = N_h y_h`` (conservative); a lone one is paired so with the stratum
    of the nearest size that has two draws or more (its ``t_j = N_j mean_j``), and the
    variance is unknown (nan) only when there is none.
    """
    value = float(np.dot(w, y))
    uniq, inv, counts = np.unique(strata, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=y)   # every label of inv occurs: no minlength needed
    sq = np.bincount(inv, weights=y * y)
    big_n = np.bincount(inv, weights=w)  # n_h weights N_h / n_h
    census = big_n <= counts * (1.0 + 1e-12)  # every row of the stratum drawn: no variance
    many = (counts >= 2) & ~census
    nh = counts[many]
    mean = sums[many] / nh
    s2 = np.maximum(sq[many] - nh * mean**2, 0.0) / (nh - 1)
    fpc = 1.0 - nh / big_n[many]  # in (0, 1): these strata are not drawn whole
    var = float(np.sum(big_n[many] ** 2 * fpc * s2 / nh))
    single = np.flatnonzero(~many & ~census)
    if single.size == 1:
        # a lone single: collapsed with the stratum of the nearest size that has two draws
        multi = np.flatnonzero(many)
        if not multi.size:
            return value, math.nan
        h, j = single[0], multi[np.argmin(np.abs(big_n[multi] - big_n[single[0]]))]
        t = np.array([big_n[h] * sums[h], big_n[j] * sums[j] / counts[j]])
        return value, var + 2.0 * float(np.sum((t - t.mean()) ** 2))
    if single.size >= 2:
        order = single[np.argsort(big_n[single], kind="stable")]
        t = big_n[order] * sums[order]  # N_h y_h
        stop = t.size - t.size % 2
        groups = [t[i:i + 2] for i in range(0, stop, 2)]
        if t.size % 2:
            groups[-1] = np.append(groups[-1], t[-1])
        for g in groups:
            var += g.size / (g.size - 1) * float(np.sum((g - g.mean()) ** 2))
    return value, var


def _interval(value: float, var: float, s: int, confidence: float) -> Estimate:
    from scipy.special import stdtrit  # Student t quantile; lighter than scipy.stats

    se = float(np.sqrt(var)) if np.isfinite(var) else math.nan
    q = float(stdtrit(max(s - 1, 1), 0.5 + confidence / 2))
    return Estimate(value, se, value - q * se, value + q * se, confidence)
