"""Diagnostics that tell whether to trust a sensitivity sample, and a Hoelder-constant estimate.

The guarantees of the paper (Theorems 5 and 6) assume that the loss is (z, lam)-Hoelder in
the embeddings, ``|l(a) - l(b)| <= lam ||a - b||^z``, and users do not know lam. Everything
here is computed from what a run already has: the queried rows, their losses, the clustering
cost and the sampling probabilities. No extra oracle call is made.

:func:`estimate_holder_constant`
    From pairs of queried rows that are close in the embedding (each row with its nearest
    other queried rows): a robust quantile of ``|l(a) - l(b)| / ||a - b||^z``.
:func:`loo_design_effect`
    A leave-one-out check of the sampling model on the queried rows: each queried loss is
    hidden, predicted from the nearest *other* queried row, and the variance of the
    resulting importance-sampling estimator is compared with uniform sampling's. A design
    effect above 1 means that the losses do not follow the embedding closely enough for
    sensitivity sampling to beat uniform sampling.
:func:`selection_diagnostics`
    The report attached to every :class:`~coreselect.Selection` as ``diagnostics``: Phi,
    sum of l_hat, the lam used and how it was chosen, Theorem 5's error bound for this s,
    the effective sample size, the largest weight share, the two checks above, and plain
    sentences (``warnings``, ``verdict``) when the sample is likely worse than uniform.
"""

from __future__ import annotations

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
from .assign import power_of_distance

__all__ = [
    "HolderEstimate",
    "estimate_holder_constant",
    "loo_design_effect",
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
        g = P[start:stop] @ P.T
        g *= -2.0
        g += norms[None, :]
        g += norms[start:stop, None]
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
    m = P.shape[0]
    y = check_losses(losses, np.arange(m), name="losses")
    z = check_z(z)
    q = check_fraction(quantile, "quantile", low_open=True)
    nn = check_positive_int(n_neighbors, "n_neighbors")
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
    ratios = dl[~zero] / dz
    if ratios.size == 0:
        return HolderEstimate(0.0, q, 0.0, 0.0, 0, conflicts, z)
    return HolderEstimate(
        lam=float(np.quantile(ratios, q)), quantile=q, median=float(np.median(ratios)),
        max_ratio=float(ratios.max()), n_pairs=int(ratios.size), n_conflicts=conflicts, z=z,
    )


def loo_design_effect(points, losses, *, lam: float, z: float = 2.0, weights=None,
                      mix: float = 0.0) -> dict:
    """Leave-one-out check of sensitivity sampling against uniform sampling on known rows.

    Each row q of ``points`` plays a pool row whose loss is unknown: its center is its
    nearest other row b, ``l_hat(q) = l(b)`` and ``v(q) = ||q - b||^z``. With the
    probabilities ``p ~ l_hat + lam v`` (mixed with uniform by ``mix``) over these rows,
    each counted ``weights[q]`` times, the per-draw variance of the importance-sampling
    estimate of the total is compared with uniform sampling's.

    Parameters
    ----------
    points : array-like of shape (m, d)
        Embeddings of the rows whose loss is known.
    losses : array-like of shape (m,)
        Their losses.
    lam : float
        The weight of the distances (as in the sampler).
    z : float, default=2.0
        Power of the distance.
    weights : array-like of shape (m,), optional
        How many pool rows each row stands for (cluster sizes); 1 each by default.
    mix : float, default=0.0
        Share of uniform probability mixed in (defensive mixing).

    Returns
    -------
    dict
        ``design_effect`` (variance ratio sensitivity / uniform; inf when a row with a
        positive loss gets probability 0), ``r2`` (share of the variance of the losses
        explained by the nearest-neighbour prediction; <= 0 means no better than the mean)
        and ``m`` (rows used).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.repeat(np.arange(5.0), 2)[:, None] * 10 + np.tile([0.0, 0.1], 5)[:, None]
    >>> loss = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 2)     # constant on each pair of rows
    >>> out = loo_design_effect(x, loss, lam=0.0)
    >>> out["design_effect"] == 0.0, round(out["r2"], 6)
    (True, 1.0)
    """
    P = np.ascontiguousarray(check_embeddings(points, name="points"), dtype=np.float64)
    m = P.shape[0]
    y = check_losses(losses, np.arange(m), name="losses")
    z = check_z(z)
    mix = check_fraction(mix, "mix")
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != m:
        raise ValueError(f"weights must have {m} entries, one per row of points; got {w.shape[0]}.")
    if m < 3 or w.sum() <= 0:
        return {"design_effect": None, "r2": None, "m": int(m)}
    idx, sq = _nearest_others(P, 1)
    nb = idx[:, 0]
    pred = y[nb]
    v = power_of_distance(sq[:, 0].copy(), z)
    N = float(w.sum())
    T = float(np.dot(w, y))
    mean = T / N
    ss_tot = float(np.dot(w, (y - mean) ** 2))
    ss_res = float(np.dot(w, (y - pred) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else -math.inf)
    mass = pred + lam * v
    Z = float(np.dot(w, mass))
    p = mass / Z if Z > 0 else np.full(m, 1.0 / N)
    if mix > 0:
        p = (1.0 - mix) * p + mix / N
    var_u = N * float(np.dot(w, y * y)) - T * T
    pos = y > 0
    if np.any(pos & (p <= 0)):
        var_s = math.inf
    else:
        var_s = float(np.dot(w[pos], y[pos] ** 2 / p[pos])) - T * T
    if var_u <= 0:
        deff = 0.0 if var_s <= 1e-12 * max(T * T, 1e-300) else math.inf
    else:
        deff = max(var_s, 0.0) / var_u
    return {"design_effect": float(deff), "r2": float(r2), "m": int(m)}


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


def selection_diagnostics(*, p: np.ndarray, indices: np.ndarray, weights: np.ndarray,
                          query_points, query_losses, cluster_sizes, cost: float,
                          hat_total: float, lam: float, lam_rule: str, z: float, size: int,
                          replace: bool, mix: float = 0.0, holder_quantile: float = 0.9,
                          theorem: str = "Theorem 5") -> dict:
    """The diagnostics report of a sensitivity sample (a JSON-serialisable dict).

    Parameters
    ----------
    p : ndarray of shape (n,)
        The per-draw probabilities of every pool row.
    indices, weights : ndarray of shape (s,)
        The selection's rows and weights.
    query_points : array-like of shape (k, d) or None
        Embeddings of the queried rows (None: the Hoelder estimate and the leave-one-out
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

    Returns
    -------
    dict
        Keys: ``Phi``, ``sum_l_hat``, ``lam``, ``lam_rule``, ``lam_holder`` (the estimate
        from the queried rows; None with fewer than 2), ``holder`` (its details), ``eps``,
        ``error_bound`` (``eps (sum l_hat + 3 lam Phi)``: Theorem 5's
        ``eps (sum l + 2 lam Phi)`` with ``sum l <= sum l_hat + lam Phi``; it holds with
        probability >= 1 - 1/e *if* the loss is (z, lam)-Hoelder),
        ``relative_error_bound`` (divided by ``sum l_hat``), ``effective_sample_size``
        (Kish: ``(sum w)^2 / sum w^2`` over the distinct drawn rows), ``max_weight_share``,
        ``zero_probability_rows``, ``min_np`` and ``max_np`` (extremes of ``n p``; 1 is
        uniform), ``loo_design_effect`` and ``loo_r2`` (see :func:`loo_design_effect`),
        ``warnings`` (plain sentences) and ``verdict`` (one sentence).

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
    p = np.asarray(p, dtype=np.float64)
    n = p.shape[0]
    Q = None if query_points is None else np.asarray(query_points, dtype=np.float64)
    ql = np.asarray(query_losses, dtype=np.float64)
    sizes = np.asarray(cluster_sizes, dtype=np.float64)
    eps = theorem5_epsilon(size)
    bound = eps * (hat_total + 3.0 * lam * cost)
    rel = bound / hat_total if hat_total > 0 else None

    uniq, inverse = np.unique(np.asarray(indices), return_inverse=True)
    wsum = np.bincount(inverse, weights=np.asarray(weights, dtype=np.float64),
                       minlength=uniq.shape[0])
    total_w = float(wsum.sum())
    ess = total_w**2 / float(np.dot(wsum, wsum)) if total_w > 0 else 0.0
    share = float(wsum.max() / total_w) if total_w > 0 else 1.0
    zero_rows = int(np.count_nonzero(p <= 0))

    holder = None
    loo = {"design_effect": None, "r2": None, "m": 0 if Q is None else int(Q.shape[0])}
    if Q is not None and Q.ndim == 2 and Q.shape[0] >= 2:
        holder = estimate_holder_constant(Q, ql, z=z, quantile=holder_quantile)
        loo = loo_design_effect(Q, ql, lam=lam, z=z, weights=sizes, mix=mix)

    warns: list[str] = []
    deff = loo["design_effect"]
    if deff is not None and deff > 1.0:
        what = "infinite" if not math.isfinite(deff) else f"{deff:.3g}"
        r2 = loo["r2"]
        r2s = "" if r2 is None else f", R^2 of that prediction {r2:.2f}"
        warns.append(
            f"Likely worse than uniform sampling: predicting each queried loss from its nearest "
            f"other queried row gives a design effect of {what} (> 1: more variance than a "
            f"uniform sample of the same size{r2s}). The loss does not look "
            f"{z:g}-Hoelder in these embeddings; use mix= (e.g. 0.3) or uniform sampling."
        )
    elif loo["r2"] is not None and loo["r2"] <= 0:
        warns.append(
            "The queried losses are predicted no better by their nearest queried neighbour than "
            "by their mean (R^2 <= 0): the loss may not follow the embeddings; check the "
            "estimate's interval against a uniform sample's."
        )
    if holder is not None and holder.n_conflicts:
        warns.append(
            f"{holder.n_conflicts} pair(s) of queried rows have identical embeddings but "
            "different losses: no Hoelder constant covers them."
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
    if any(w.startswith("Likely worse") for w in warns):
        verdict = "Likely worse than uniform sampling: fall back to uniform or use mix > 0."
    elif warns:
        verdict = "Usable, with the caveats in warnings."
    else:
        verdict = "No sign that this sample is worse than uniform sampling."

    return {
        "Phi": float(cost),
        "sum_l_hat": float(hat_total),
        "lam": float(lam),
        "lam_rule": str(lam_rule),
        "lam_holder": None if holder is None else holder.lam,
        "holder": None if holder is None else holder.to_dict(),
        "mix": float(mix),
        "theorem": theorem,
        "eps": float(eps),
        "error_bound": float(bound),
        "relative_error_bound": _finite_or_none(rel),
        "effective_sample_size": float(ess),
        "max_weight_share": share,
        "zero_probability_rows": zero_rows,
        "min_np": float(p.min() * n),
        "max_np": float(p.max() * n),
        "loo_design_effect": _finite_or_none(deff) if deff is not None else None,
        "loo_design_effect_infinite": bool(deff is not None and not math.isfinite(deff)),
        "loo_r2": _finite_or_none(loo["r2"]),
        "loo_rows": int(loo["m"]),
        "warnings": warns,
        "verdict": verdict,
    }
