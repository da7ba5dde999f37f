"""Diagnostics that tell whether to trust a sensitivity sample, and a Hoelder-constant estimate.

The guarantees of the paper (Theorems 5 and 6) assume that the loss is (z, lam)-Hoelder in
the embeddings, ``|l(a) - l(b)| <= lam ||a - b||^z``, and users do not know lam. Everything
here is computed from what a run already has: the queried rows, their losses, the clustering
cost, the sampling probabilities and (for :func:`diagnose_sample`) the losses of the drawn
rows, which a user computes anyway. No extra oracle call is made.

:func:`estimate_holder_constant`
    From pairs of queried rows that are close in the embedding (each row with its nearest
    other queried rows): a robust quantile of ``|l(a) - l(b)| / ||a - b||^z``.
:func:`nearest_neighbour_r2`
    How well each queried loss is predicted by its nearest other queried row.
:func:`predicted_design_effect`
    Before labelling: the sample's variance against a uniform sample's, predicted from the
    queried rows that have a close queried neighbour.
:func:`selection_diagnostics`
    The report attached to every :class:`~coreselect.Selection` as ``diagnostics``, before
    the sample's losses are known: Phi, sum of l_hat, the lam used and how it was chosen,
    Theorem 5's error bound for this s (and uniform sampling's, Theorem 4), the effective
    sample size, the largest weight share, the checks above, and plain sentences
    (``warnings``, ``verdict``).
:func:`diagnose_sample`
    Once the sample's losses are known (a user computes them to estimate the total): the
    estimated variance of the sample's estimate against a uniform sample's of the same size
    (the design effect), from the same draws. Above 1, the sample was worse than uniform;
    this is the check to act on.

What the queried rows alone can and cannot tell: the queried rows are spread out by
design (cluster centers), so the pairs among them measure how the loss varies *between*
clusters. Whether it is smooth *within* clusters, where the sample's points are, shows
only in the sample's own losses; so the verdict before labelling rests on the few queried
rows that have a close queried neighbour (:func:`predicted_design_effect`) and on what it
can see for sure (zero-probability rows, concentrated weights, a guarantee no better than
uniform's), and the definitive answer is :func:`diagnose_sample`'s.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np

from ._validation import (
    check_embeddings,
    check_fraction,
    check_losses,
    check_positive_int,
    check_z,
    iter_chunks,
)
from .kernels import pairwise_sq_dists, power_of_distance

__all__ = [
    "HolderEstimate",
    "estimate_holder_constant",
    "nearest_neighbour_r2",
    "predicted_design_effect",
    "diagnose_sample",
    "theorem5_epsilon",
    "selection_diagnostics",
]

# Rows per block of the (block x m) float64 distance matrix between queried rows.
_BLOCK_ELEMS = 2**22


@dataclass(frozen=True)
class HolderEstimate:
    """The result of :func:`estimate_holder_constant`.

    Attributes
    ----------
    lam : float
        The ``quantile`` of the ratios ``|l(a) - l(b)| / ||a - b||^z`` over the close pairs
        (0 when there are no pairs).
    quantile : float
        The quantile used.
    median : float
        The median ratio.
    max_ratio : float
        The largest ratio (not robust: one mislabelled row moves it).
    n_pairs : int
        Distinct close pairs with a positive distance.
    n_conflicts : int
        Pairs of rows with identical embeddings and different losses: no lam covers those.
    z : float
        The power of the distance.
    """

    lam: float
    quantile: float
    median: float
    max_ratio: float
    n_pairs: int
    n_conflicts: int
    z: float

    def to_dict(self) -> dict:
        return asdict(self)


def _nearest_others(P: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of P, its ``n_neighbors`` nearest other rows and exact squared distances."""
    m = P.shape[0]
    nn = min(n_neighbors, m - 1)
    norms = np.einsum("ij,ij->i", P, P)
    idx = np.empty((m, nn), dtype=np.int64)
    sq = np.empty((m, nn))
    block = max(1, _BLOCK_ELEMS // max(1, m))
    for start, stop in iter_chunks(m, block):
        g = pairwise_sq_dists(P[start:stop], P, anorm=norms[start:stop], bnorm=norms,
                              dtype=np.float64)
        g[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not oneself
        part = np.argpartition(g, nn - 1, axis=1)[:, :nn] if nn < m - 1 else np.argsort(g, axis=1)[:, :nn]
        # exact distances of the candidates, from the differences
        diff = P[start:stop, None, :] - P[part]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        order = np.argsort(d2, axis=1, kind="stable")
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        sq[start:stop] = np.take_along_axis(d2, order, axis=1)
    return idx, sq


def estimate_holder_constant(points, losses, *, z: float = 2.0, quantile: float = 0.9,
                             n_neighbors: int = 3) -> HolderEstimate:
    """Estimate the Hoelder constant lam of a loss from rows whose loss is known.

    Each row is paired with its ``n_neighbors`` nearest other rows (close pairs are the
    ones that say something about lam: ``|l(a) - l(b)| / ||a - b||^z`` over far pairs is
    small whatever lam is); the estimate is the ``quantile`` of the ratios over the distinct
    pairs. A quantile below 1 ignores a few pairs that break the assumption (label noise),
    where the maximum, the definition of lam, would be ruled by them.

    Parameters
    ----------
    points : array-like of shape (m, d)
        Embeddings of the rows whose loss is known (the queried rows).
    losses : array-like of shape (m,)
        Their losses.
    z : float, default=2.0
        Hoelder exponent (the power of the distance).
    quantile : float, default=0.9
        Quantile of the pair ratios, in (0, 1].
    n_neighbors : int, default=3
        Neighbours per row.

    Returns
    -------
    HolderEstimate

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0.0, 1.0, 11)[:, None]
    >>> est = estimate_holder_constant(x, 3.0 * x[:, 0], z=1.0)   # a 3-Lipschitz loss
    >>> round(est.lam, 6), est.n_pairs
    (3.0, 19)
    """
    P = np.ascontiguousarray(check_embeddings(points, name="points"), dtype=np.float64)
    y = check_losses(losses, np.arange(P.shape[0]), name="losses")
    return _holder(P, y, z=check_z(z), q=check_fraction(quantile, "quantile", low_open=True),
                   nn=check_positive_int(n_neighbors, "n_neighbors"))


def _holder(P: np.ndarray, y: np.ndarray, *, z: float, q: float, nn: int = 3) -> HolderEstimate:
    """:func:`estimate_holder_constant` on validated float64 points and losses."""
    m = P.shape[0]
    if m < 2:
        return HolderEstimate(0.0, q, 0.0, 0.0, 0, 0, z)
    idx, sq = _nearest_others(P, nn)
    a = np.repeat(np.arange(m), idx.shape[1])
    b = idx.reshape(-1)
    d2 = sq.reshape(-1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(lo * m + hi, return_index=True)  # distinct pairs
    lo, hi, d2 = lo[first], hi[first], d2[first]
    dl = np.abs(y[lo] - y[hi])
    zero = d2 <= 0
    conflicts = int(np.count_nonzero(zero & (dl > 0)))
    dz = power_of_distance(d2[~zero].copy(), z)
    # tiny embeddings: a ratio may overflow to inf, and a quantile between infs is NaN
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratios = dl[~zero] / dz
        if ratios.size == 0:
            return HolderEstimate(0.0, q, 0.0, 0.0, 0, conflicts, z)
        lam_q, med = float(np.quantile(ratios, q)), float(np.median(ratios))
    return HolderEstimate(
        lam=math.inf if math.isnan(lam_q) else lam_q, quantile=q,
        median=math.inf if math.isnan(med) else med, max_ratio=float(ratios.max()),
        n_pairs=int(ratios.size), n_conflicts=conflicts, z=z,
    )


def nearest_neighbour_r2(points, losses, *, weights=None) -> float | None:
    """How well each known loss is predicted by the loss of its nearest other known row.

    ``R^2 = 1 - sum w (l - l(nn))^2 / sum w (l - mean)^2`` (weights ``w``, e.g. cluster sizes).
    1: the loss follows the embedding at the scale of the distances between the rows;
    <= 0: the nearest row predicts no better than the mean. None with fewer than 3 rows.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> nearest_neighbour_r2(x, [1.0, 1.0, 5.0, 5.0])
    1.0
    >>> nearest_neighbour_r2(x, [1.0, 5.0, 1.0, 5.0])
    -3.0
    """
    P = np.ascontiguousarray(check_embeddings(points, name="points"), dtype=np.float64)
    m = P.shape[0]
    y = check_losses(losses, np.arange(m), name="losses")
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != m:
        raise ValueError(f"weights must have {m} entries, one per row of points; got {w.shape[0]}.")
    return _nn_r2(P, y, w)


def _nn_r2(P: np.ndarray, y: np.ndarray, w: np.ndarray) -> float | None:
    """:func:`nearest_neighbour_r2` on validated inputs."""
    m = P.shape[0]
    if m < 3 or w.sum() <= 0:
        return None
    idx, _ = _nearest_others(P, 1)
    pred = y[idx[:, 0]]
    mean = float(np.dot(w, y) / w.sum())
    ss_tot = float(np.dot(w, (y - mean) ** 2))
    ss_res = float(np.dot(w, (y - pred) ** 2))
    if ss_tot <= 0:
        return 1.0 if ss_res == 0 else -math.inf
    return 1.0 - ss_res / ss_tot


def predicted_design_effect(points, losses, *, lam: float, n: int, hat_total: float,
                            cost: float, z: float = 2.0, mix: float = 0.0,
                            scale: float = 2.0, min_rows: int = 20) -> dict:
    """Predict, before labelling, the sample's variance against a uniform sample's.

    Queried rows whose nearest other queried row b is about as close as a typical row is to
    its center (``||q - b||^z <= scale * Phi / n``) stand in for pool rows: q plays a row
    with center b, ``l_hat = l(b)``, ``v = ||q - b||^z`` and the sampler's probability
    ``p = (1 - mix) (l_hat + lam v) / (sum l_hat + lam Phi) + mix / n``. The per-draw
    second moments ``n mean(l^2 / p)`` (sensitivity) and ``n^2 mean(l^2)`` (uniform) over
    these rows, less ``T^2`` with ``T ~ sum l_hat``, give the predicted design effect.
    Only close pairs are used: the pairs of queried rows are mostly far apart (centers are
    spread out by design) and say nothing about the loss within clusters.

    Parameters
    ----------
    points : array-like of shape (m, d)
        Embeddings of the queried rows.
    losses : array-like of shape (m,)
        Their losses.
    lam : float
        The lam of the sampler.
    n : int
        The pool size.
    hat_total, cost : float
        ``sum l_hat`` and ``Phi`` of the sampler.
    z : float, default=2.0
        Power of the distance.
    mix : float, default=0.0
        Defensive mixing share.
    scale : float, default=2.0
        How far (in units of the mean ``v = Phi / n``) a neighbour may be.
    min_rows : int, default=20
        Fewer close rows than this: no prediction (None).

    Returns
    -------
    dict
        ``design_effect`` (None without enough close rows; inf when a close row with a
        positive loss would get probability 0) and ``rows`` (close rows used).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.repeat(np.arange(30.0) * 100, 2)[:, None] + np.tile([0.0, 1.0], 30)[:, None]
    >>> same = np.repeat(np.arange(1.0, 31.0), 2)             # both rows of a pair agree
    >>> out = predicted_design_effect(x, same, lam=0.0, n=60, hat_total=same.sum(), cost=30.0)
    >>> out["rows"], out["design_effect"] < 0.01
    (60, True)
    """
    P = np.ascontiguousarray(check_embeddings(points, name="points"), dtype=np.float64)
    y = check_losses(losses, np.arange(P.shape[0]), name="losses")
    return _design_effect(P, y, lam=lam, n=n, hat_total=hat_total, cost=cost, z=check_z(z),
                          mix=mix, scale=scale, min_rows=min_rows)


def _design_effect(P: np.ndarray, y: np.ndarray, *, lam: float, n: int, hat_total: float,
                   cost: float, z: float, mix: float = 0.0, scale: float = 2.0,
                   min_rows: int = 20) -> dict:
    """:func:`predicted_design_effect` on validated inputs."""
    m = P.shape[0]
    if m < 2 or cost <= 0 or n <= 0:
        return {"design_effect": None, "rows": 0}
    idx, sq = _nearest_others(P, 1)
    v = power_of_distance(sq[:, 0].copy(), z)
    close = v <= scale * cost / n
    rows = int(np.count_nonzero(close))
    if rows < max(1, min_rows):
        return {"design_effect": None, "rows": rows}
    yc = y[close]
    Z = hat_total + lam * cost
    p = (y[idx[close, 0]] + lam * v[close]) / Z if Z > 0 else np.zeros(rows)
    if mix > 0:
        p = (1.0 - mix) * p + mix / n
    T2 = float(hat_total) ** 2
    var_u = n * n * float(np.mean(yc**2)) - T2
    pos = yc > 0
    if np.any(pos & (p <= 0)):
        return {"design_effect": math.inf, "rows": rows}
    var_s = n * float(np.sum(yc[pos] ** 2 / p[pos])) / rows - T2
    if var_u <= 0:
        return {"design_effect": None, "rows": rows}
    return {"design_effect": float(max(var_s, 0.0) / var_u), "rows": rows}


def theorem5_epsilon(size: int) -> float:
    """The eps of Theorem 5 for a sample of ``size`` draws: ``size = eps^-2 (2 + 2 eps / 3)``.

    Examples
    --------
    >>> eps = theorem5_epsilon(200)
    >>> round(eps, 4), round(eps ** -2 * (2 + 2 * eps / 3), 9)
    (0.1017, 200.0)
    """
    s = check_positive_int(size, "size")
    return (1.0 / 3.0 + math.sqrt(1.0 / 9.0 + 2.0 * s)) / s


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


# The parts of the report that depend only on the queried rows are the same for every
# sample drawn from one fitted sampler; they are kept for the last few distinct inputs.
_QUERY_CACHE: dict[bytes, tuple] = {}
_QUERY_CACHE_SIZE = 8
# At most this many queried rows enter the pair-based figures of the report.
_MAX_QUERY_ROWS = 4096


def _query_report(Q, ql, sizes, *, z, lam, n, hat_total, cost, mix, quantile):
    if Q is None or Q.ndim != 2 or Q.shape[0] < 2:
        return None, None, {"design_effect": None, "rows": 0}, None
    h = hashlib.blake2b(digest_size=20)
    for arr in (Q, ql, sizes):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(repr((Q.shape, z, lam, n, hat_total, cost, mix, quantile)).encode())
    key = h.digest()
    got = _QUERY_CACHE.get(key)
    if got is None and Q.shape[0] > _MAX_QUERY_ROWS:
        # pairs among m queried rows cost O(m^2 d): look at an evenly spaced subset
        keep = np.linspace(0, Q.shape[0] - 1, _MAX_QUERY_ROWS).round().astype(np.int64)
        Q, ql, sizes = Q[keep], ql[keep], sizes[keep]
    if got is None:
        Q = np.ascontiguousarray(Q, dtype=np.float64)
        holder = _holder(Q, ql, z=float(z), q=float(quantile))
        r2 = _nn_r2(Q, ql, np.asarray(sizes, dtype=np.float64))
        pred = _design_effect(Q, ql, lam=lam, n=n, hat_total=hat_total, cost=cost, z=float(z),
                              mix=mix)
        pair_scale = None
        if cost > 0:
            _, sq = _nearest_others(Q, 1)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                pair_scale = float(np.median(power_of_distance(sq[:, 0].copy(), z))
                                   / (cost / n))
        got = (holder, r2, pred, pair_scale)
        if len(_QUERY_CACHE) >= _QUERY_CACHE_SIZE:
            _QUERY_CACHE.pop(next(iter(_QUERY_CACHE)))
        _QUERY_CACHE[key] = got
    holder, r2, pred, pair_scale = got
    return holder, r2, dict(pred), pair_scale


# At least this share of the pool at distance 0 from its center: a warning.
COINCIDENT_SHARE = 0.1


def selection_diagnostics(*, p: np.ndarray | None = None, indices: np.ndarray,
                          weights: np.ndarray, query_points, query_losses, cluster_sizes,
                          cost: float, hat_total: float, lam: float, lam_rule: str, z: float,
                          size: int, replace: bool, mix: float = 0.0,
                          holder_quantile: float = 0.9, theorem: str = "Theorem 5",
                          n_queries: int | None = None,
                          p_summary: tuple[int, int, float, float] | None = None,
                          coincident_rows: int | None = None) -> dict:
    """The diagnostics report of a sensitivity sample, before its losses are known.

    Parameters
    ----------
    p : ndarray of shape (n,), optional
        The per-draw probabilities of every pool row; or give ``p_summary``.
    p_summary : tuple (n, zero_rows, min p, max p), optional
        What the report needs of ``p``, for pools whose ``p`` is never held whole (the sample
        step computes it block by block).
    indices, weights : ndarray of shape (s,)
        The selection's rows and weights.
    query_points : array-like of shape (k, d) or None
        Embeddings of the queried rows (None: the Hoelder estimate and the nearest-neighbour
        check are left out).
    query_losses, cluster_sizes : array-like of shape (k,)
        Their losses and how many rows each stands for.
    cost, hat_total : float
        ``Phi`` and ``sum(l_hat)``.
    lam : float
        The lam used; ``lam_rule`` says how it was chosen.
    z : float
        Power of the distance.
    size : int
        s.
    replace : bool
        Whether the draws were i.i.d.
    mix : float, default=0.0
        The uniform share mixed into ``p``.
    holder_quantile : float, default=0.9
        Quantile of :func:`estimate_holder_constant`.
    theorem : str, default="Theorem 5"
        Name of the bound (Theorem 6 for a round of the r-round algorithm).
    n_queries : int, optional
        Oracle calls spent before sampling (default: the number of queried rows).
    coincident_rows : int, optional
        Rows, other than the queried ones, at distance 0 from their center; at least
        ``COINCIDENT_SHARE`` of the pool gives a warning.

    Returns
    -------
    dict
        JSON-serialisable. ``Phi``, ``sum_l_hat``, ``lam``, ``lam_rule``, ``mix``;
        ``lam_holder`` and ``holder`` (:func:`estimate_holder_constant` on the queried rows,
        None with fewer than 2) and ``holder_pair_scale`` (median ``||a - b||^z`` of those
        pairs divided by the mean ``v(e) = Phi / n``: far above 1, the estimate describes
        the loss between clusters, not within them); ``eps`` (Theorem 5's eps for this s);
        ``error_bound`` = ``eps max(1, L / lam) (sum l_hat + lam Phi) / (1 - mix)`` with
        L = ``error_bound_lam`` the Hoelder constant assumed (``lam_holder`` when there is
        one, else lam): Theorem 5's proof with a sampling lam that need not be L (with
        lam = L it is ``eps (sum l_hat + lam Phi)``, at most the paper's
        ``eps (sum l + 2 lam Phi)``); it holds with probability >= 1 - 1/e *if* the loss is
        (z, L)-Hoelder (None when infinite); ``relative_error_bound`` (over ``sum l_hat``);
        ``uniform_error_bound`` (Theorem 4's ``eps n max l`` for a uniform sample of the
        same size, with the largest queried loss standing in for ``max l``: a lower value);
        ``effective_sample_size`` (Kish, ``(sum w)^2 / sum w^2`` over the distinct drawn
        rows); ``max_weight_share``; ``zero_probability_rows``; ``min_np``, ``max_np``
        (extremes of ``n p``; 1 is uniform); ``nn_r2`` (:func:`nearest_neighbour_r2` of the
        queried losses, weighted by cluster size); ``predicted_design_effect`` and
        ``predicted_design_effect_rows`` (:func:`predicted_design_effect`; above 1 the
        verdict is "likely worse than uniform"; these pair-based figures use at most 4,096
        evenly spaced queried rows); ``predicted_design_effect_equal_calls`` (the same
        against a uniform sample of ``oracle_calls`` = queries + s rows: above 1 the
        verdict is "likely no better than uniform sampling with the same oracle calls");
        ``warnings`` (plain sentences) and ``estimation_verdict`` (one sentence, about
        the estimate of the total loss only: a sample worse than uniform for estimation
        may still train a better model; ``verdict`` is the same sentence, kept for older
        code). Once the sample's losses are known,
        :func:`diagnose_sample` says whether the sample did beat uniform sampling.

    Examples
    --------
    >>> import numpy as np
    >>> rep = selection_diagnostics(
    ...     p=np.full(4, 0.25), indices=np.array([0, 2]), weights=np.array([2.0, 2.0]),
    ...     query_points=np.array([[0.0], [1.0]]), query_losses=[1.0, 1.0],
    ...     cluster_sizes=[2, 2], cost=1.0, hat_total=4.0, lam=4.0, lam_rule="given", z=2.0,
    ...     size=2, replace=True)
    >>> rep["effective_sample_size"], rep["max_weight_share"], rep["zero_probability_rows"]
    (2.0, 0.5, 0)
    """
    if p_summary is None:
        p = np.asarray(p, dtype=np.float64)
        p_summary = (p.shape[0], int(np.count_nonzero(p <= 0)), float(p.min()), float(p.max()))
    n, zero_rows, p_min, p_max = int(p_summary[0]), int(p_summary[1]), p_summary[2], p_summary[3]
    Q = None if query_points is None else np.asarray(query_points, dtype=np.float64)
    ql = np.asarray(query_losses, dtype=np.float64)
    sizes = np.asarray(cluster_sizes, dtype=np.float64)
    eps = theorem5_epsilon(size)
    n_queries = int(ql.shape[0]) if n_queries is None else int(n_queries)
    calls = n_queries + int(size)

    uniq, inverse = np.unique(np.asarray(indices), return_inverse=True)
    wsum = np.bincount(inverse, weights=np.asarray(weights, dtype=np.float64),
                       minlength=uniq.shape[0])
    total_w = float(wsum.sum())
    ess = total_w**2 / float(np.dot(wsum, wsum)) if total_w > 0 else 0.0
    share = float(wsum.max() / total_w) if total_w > 0 else 1.0

    holder, r2, pred, pair_scale = _query_report(Q, ql, sizes, z=z, lam=lam, n=n,
                                                 hat_total=hat_total, cost=cost, mix=mix,
                                                 quantile=holder_quantile)

    # Theorem 5's proof (appendix B.2) with a sampling lam' that need not be the Hoelder
    # constant L: l <= l_hat + L v <= c (l_hat + lam' v), c = max(1, L / lam'), so
    # E[X^2] <= t^2 / s^2 and max X <= t / s with t = c (sum l_hat + lam' Phi) / (1 - mix),
    # and Bernstein gives |error| <= eps t with probability >= 1 - 1/e.
    lam_h = holder.lam if holder is not None and holder.n_pairs else lam
    if lam > 0:
        c = max(1.0, lam_h / lam)
    else:
        c = 1.0 if lam_h <= 0 or cost <= 0 else math.inf
    bound = eps * c * (hat_total + lam * cost) / (1.0 - mix) if mix < 1 else math.inf
    rel = bound / hat_total if hat_total > 0 else None
    uniform_bound = eps * n * float(ql.max()) if ql.size else None

    warns: list[str] = []
    if uniform_bound is not None and math.isfinite(bound) and bound >= uniform_bound > 0:
        warns.append(
            f"The {theorem} guarantee ({bound:.4g}, Hoelder constant {lam_h:.3g}) is no "
            f"better than uniform sampling's (Theorem 4, about {uniform_bound:.4g} or more): "
            "the clustering cost is too large for this lam; more centers or rounds help."
        )
    deff = pred["design_effect"]
    if deff is not None and deff > 1.0:
        what = "infinite" if not math.isfinite(deff) else f"{deff:.3g}"
        warns.append(
            f"Likely worse than uniform sampling: on the {pred['rows']} queried rows that have "
            f"a close queried neighbour, predicting each loss from that neighbour gives a "
            f"predicted variance {what} times a uniform sample's. The loss does not look "
            f"{z:g}-Hoelder in these embeddings; use mix= (e.g. 0.3) or uniform sampling, "
            "and check with coreselect.diagnostics.diagnose_sample(selection, losses) once "
            "the sample's losses are known."
        )
    deff_calls = None if deff is None else deff * calls / size
    if deff is not None and deff <= 1.0 < deff_calls:
        warns.append(
            f"Likely no better than a uniform sample of {calls} rows, the same oracle calls "
            f"({n_queries} queried + {size} drawn): the predicted variance is {deff:.3g} "
            f"times a uniform sample's of {size} rows, above {size}/{calls}. Worth it only "
            "if the queried rows' losses are needed anyway."
        )
    if holder is not None and holder.n_conflicts:
        warns.append(
            f"{holder.n_conflicts} pair(s) of queried rows have identical embeddings but "
            "different losses: the loss is not Hoelder in these embeddings."
        )
    if zero_rows and mix <= 0:
        warns.append(
            f"{zero_rows} row(s) have probability 0 and are never drawn; the estimate is "
            "unbiased only if their losses are 0 (they are, if the loss is Hoelder). mix > 0 "
            "removes this risk."
        )
    if size >= 10 and (ess < 0.1 * min(size, uniq.shape[0]) or share > 0.5):
        warns.append(
            f"A few draws carry most of the weight (effective sample size {ess:.1f} of "
            f"{uniq.shape[0]} distinct rows, largest weight share {share:.2f}): the estimate "
            "and its interval are unstable."
        )
    if not replace:
        warns.append(f"{theorem}'s bound is stated for i.i.d. draws (replace=True).")
    if coincident_rows is not None and n > 0 and coincident_rows >= COINCIDENT_SHARE * n:
        warns.append(
            f"{coincident_rows} rows ({coincident_rows / n:.0%}) coincide with their center "
            "(duplicates of a queried row): their probability rests on that one loss, and "
            "the checks on the queried rows see each group once. If their losses can differ "
            "(e.g. the same input with other labels), use design='stratified'.")
    if (holder is not None and holder.n_conflicts) or (deff is not None and deff > 1.0):
        verdict = ("For estimating the total loss, likely worse than a uniform sample: use "
                   "design='stratified' (or 'auto') or mix > 0. This says nothing about "
                   "training on the selection.")
    elif deff_calls is not None and deff_calls > 1.0:
        verdict = ("For estimating the total loss, likely no better than a uniform sample "
                   "with the same oracle calls: see warnings.")
    elif warns:
        verdict = "For estimating the total loss: usable, with the caveats in warnings."
    else:
        verdict = ("For estimating the total loss: no sign that this sample is worse than "
                   "a uniform sample.")

    return {
        "Phi": float(cost),
        "sum_l_hat": float(hat_total),
        "lam": float(lam),
        "lam_rule": str(lam_rule),
        "mix": float(mix),
        "lam_holder": None if holder is None else _finite_or_none(holder.lam),
        "holder": None if holder is None else {
            key: _finite_or_none(v) if isinstance(v, float) else v
            for key, v in holder.to_dict().items()},
        "holder_pair_scale": _finite_or_none(pair_scale),
        "theorem": theorem,
        "eps": float(eps),
        "error_bound": _finite_or_none(bound),
        "error_bound_lam": _finite_or_none(float(lam_h)),
        "relative_error_bound": _finite_or_none(rel),
        "uniform_error_bound": _finite_or_none(uniform_bound),
        "effective_sample_size": float(ess),
        "max_weight_share": share,
        "zero_probability_rows": zero_rows,
        "min_np": float(p_min * n),
        "max_np": float(p_max * n),
        "nn_r2": _finite_or_none(r2),
        "predicted_design_effect": None if deff is None else _finite_or_none(deff),
        "predicted_design_effect_infinite": bool(deff is not None and not math.isfinite(deff)),
        "predicted_design_effect_rows": int(pred["rows"]),
        "predicted_design_effect_equal_calls": None if deff_calls is None
        else _finite_or_none(deff_calls),
        "oracle_calls": int(calls),
        "warnings": warns,
        "estimation_verdict": verdict,
        "verdict": verdict,
    }


def diagnose_sample(selection, losses, *, quantile: float = 0.9) -> dict:
    """Did this sample beat uniform sampling? Answered from the sample's own losses.

    With the losses of the drawn rows (which a user computes anyway to estimate the total)
    the variance of the estimate can be compared with that of a uniform sample of the same
    size, both estimated from the same draws: for i.i.d. draws the per-draw variances are
    ``s^2 Var_hat(T_hat)`` and ``n sum l^2 - T^2``, with ``sum l^2`` estimated by
    ``sum w l^2`` (unbiased) and ``T`` by the estimate. Their ratio is the *design effect*:
    below 1 the sample beat uniform sampling, above 1 it did worse. The residuals
    ``|l(e) - l_hat(e)| / v(e)`` of the drawn rows also give a Hoelder constant at the
    scale that matters (points against their own centers), and the share of draws with
    ``l(e) > l_hat(e) + lam v(e)`` says whether the lam used was too small.

    Parameters
    ----------
    selection : Selection
        A sensitivity selection (``method`` "sensitivity" or "adaptive").
    losses : array-like of shape (s,) or (n,)
        Losses of the drawn rows (in the order of ``selection.indices``), or of the pool.
    quantile : float, default=0.9
        Quantile of the residual ratios for ``lam_residual``.

    Returns
    -------
    dict
        ``design_effect`` (None when the uniform variance estimate is not positive),
        ``design_effect_equal_calls`` (against a uniform sample of ``oracle_calls`` =
        queried + drawn rows instead of s), ``estimate``, ``stderr``, ``uniform_stderr`` (estimated stderr of a uniform
        sample of the same size), ``lam_residual``, ``model_violations`` (share of draws
        above ``l_hat + lam v``), ``warnings`` and ``verdict``.

    Examples
    --------
    >>> import numpy as np
    >>> import coreselect as cs
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(20, 1, (500, 2))])
    >>> loss = np.r_[np.full(500, 0.1), np.full(500, 10.0)] + 0.01 * (X ** 2).sum(axis=1)
    >>> sel = cs.sensitivity_sample(X, loss.__getitem__, 100, n_clusters=10, seed=0)
    >>> rep = diagnose_sample(sel, loss[sel.indices])
    >>> bool(rep["design_effect"] < 1)
    True
    """
    q = check_fraction(quantile, "quantile", low_open=True)
    y = selection._sample_losses(losses)
    s = selection.size
    n = selection.n
    w = selection.weights
    est = selection.estimate_total(y)
    T = est.value
    var_t = est.stderr**2 if math.isfinite(est.stderr) else math.nan
    sum_l2 = float(np.dot(w, y * y))
    var_u_draw = n * sum_l2 - T * T
    deff = None
    if selection.replace and var_u_draw > 0 and math.isfinite(var_t):
        deff = s * var_t / var_u_draw  # Var(T_hat) against (n sum l^2 - T^2) / s
    elif not selection.replace and var_u_draw > 0 and math.isfinite(var_t):
        fpc = max(0.0, 1.0 - s / n)
        deff = var_t / (fpc * var_u_draw / s) if fpc > 0 else None
    uniform_se = math.sqrt(max(var_u_draw, 0.0) / s) if s else math.nan
    calls = selection.n_queries + s
    deff_calls = None if deff is None else deff * calls / s

    lam = float(selection.params.get("lam", math.nan))
    lam_res = None
    viol = None
    if selection.query_indices.shape[0] and selection.cluster_sizes.sum() > 0:
        pos = np.searchsorted(selection._sorted_queries[0], selection.centers)
        l_hat = selection.query_losses[selection._sorted_queries[1][pos]]
        # v(e) is not stored in a Selection; recover it from p where possible
        v = _distances_from_probabilities(selection, l_hat)
        if v is not None:
            ok = v > 0
            if ok.any():
                lam_res = float(np.quantile(np.abs(y[ok] - l_hat[ok]) / v[ok], q))
            if math.isfinite(lam):
                viol = float(np.mean(y > l_hat + lam * v + 1e-12 * (1.0 + np.abs(y))))

    warns: list[str] = []
    if deff is not None and deff > 1.0:
        warns.append(
            f"This sample is likely worse than a uniform sample of the same size: its "
            f"estimated variance is {deff:.3g} times a uniform sample's (estimated from the "
            f"same {s} draws). The loss does not follow the embeddings closely enough; "
            "fall back to uniform sampling, or use mix= (e.g. 0.3) or more centers."
        )
    if viol is not None and viol > 0.1:
        warns.append(
            f"{100 * viol:.0f}% of the draws have a loss above l_hat + lam v: lam = {lam:.3g} "
            f"is too small for this loss (the draws suggest about {lam_res:.3g})."
            if lam_res is not None else
            f"{100 * viol:.0f}% of the draws have a loss above l_hat + lam v: lam is too small."
        )
    if deff is not None and deff <= 1.0 < deff_calls:
        warns.append(
            f"Better than a uniform sample of {s} rows (variance ratio {deff:.3g}) but not "
            f"than one of {calls} rows, the same oracle calls ({selection.n_queries} queried "
            f"+ {s} drawn): worth it only if the queried rows' losses are needed anyway."
        )
    if s < 20:
        warns.append(f"Only {s} draws: these figures are rough.")
    if deff is None:
        verdict = "For estimating the total loss: no comparison with uniform sampling could be made."
    elif deff > 1.0:
        verdict = ("For estimating the total loss, worse than a uniform sample: use "
                   "design='stratified' (or 'auto') or mix > 0. This says nothing about "
                   "training on the selection.")
    elif deff_calls > 1.0:
        verdict = ("For estimating the total loss, better than a uniform sample of the same "
                   f"size, but not with the same oracle calls ({calls}).")
    else:
        verdict = (f"For estimating the total loss, better than a uniform sample, also with "
                   f"the same oracle calls (estimated variance ratio {deff:.3g}, "
                   f"{deff_calls:.3g} at equal calls).")
    return {
        "design_effect": _finite_or_none(deff),
        "design_effect_equal_calls": None if deff_calls is None else _finite_or_none(deff_calls),
        "oracle_calls": int(calls),
        "estimate": float(T),
        "stderr": _finite_or_none(est.stderr),
        "uniform_stderr": _finite_or_none(uniform_se),
        "lam_residual": _finite_or_none(lam_res),
        "model_violations": viol,
        "warnings": warns,
        "estimation_verdict": verdict,
        "verdict": verdict,
    }


def _distances_from_probabilities(selection, l_hat: np.ndarray) -> np.ndarray | None:
    """``v(e)`` of the drawn rows from ``p = (1 - mix) (l_hat + lam v) / Z + mix / n``.

    ``Z = sum l_hat + lam Phi`` comes from ``params`` ("hat_total", "cost"); None when the
    selection does not carry them, lam is 0, or it was drawn without replacement.
    """
    prm = selection.params
    lam = prm.get("lam")
    if not selection.replace or not lam or "hat_total" not in prm or "cost" not in prm:
        return None
    mix = float(prm.get("mix", 0.0) or 0.0)
    Z = float(prm["hat_total"]) + float(lam) * float(prm["cost"])
    if mix >= 1 or Z <= 0:
        return None
    base = (selection.probabilities - mix / selection.n) / (1.0 - mix) * Z
    return np.maximum(base - l_hat, 0.0) / float(lam)
