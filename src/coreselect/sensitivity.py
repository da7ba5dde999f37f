"""The one sample step: the lam rule, the probabilities, the draw, and the Selection.

``p_e = (l_hat(e) + lam v(e)) / (lam Phi + sum l_hat)`` where ``l_hat(e)`` is the oracle's loss
at e's center and ``v(e) = ||e - A(e)||^z`` (Algorithm 1 of the paper), mixed with uniform when
``mix > 0``: ``p = mix / n + (1 - mix) p``. The formula is written once
(:func:`block_probabilities`), and so is the fallback to uniform sampling when the total mass
is 0. :func:`sample_selection` is the step every strategy and every kind of pool uses: from a
fitted pool's per-row state (:mod:`coreselect.pools.state`) it gets each block's mass from the
block's per-center counts, sends each of the ``s`` uniforms of an i.i.d. draw to its block by
the cumulative block masses, and draws inside a block where the block lives (in memory, from a
spill file, on a Dask worker); the result is the draw from the full vector ``p``, for the
same seed, whatever the pool. Draws without replacement gather ``p`` (8 bytes a row).

``lam="auto"`` sets ``lam = sum(l_hat) / Phi``: the queried losses and the distances then each
carry half of the sampling mass, so every ``p_e`` is at least half of what the pure loss
proposal (``p ~ l_hat``) and the pure distance proposal (``p ~ v``) would give it. The
estimator's second moment ``sum l^2 / p`` is therefore at most twice that of the better of the
two pure proposals, whatever the loss is; a lam far from the true Hoelder constant can cost
much more than that in either direction (too small: points in clusters whose center has a
small loss are almost never drawn; too large: the losses are ignored). The benchmark
``benchmarks/bench_lam.py`` compares this rule with a grid.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_lam
from ._warnings import warn_user
from .diagnostics import selection_diagnostics
from .selection import Selection

# The sampling designs of the one sample step.
DESIGNS = ("sensitivity", "stratified")

__all__ = [
    "DESIGNS",
    "proportional_allocation",
    "resolve_lam",
    "block_probabilities",
    "block_masses",
    "row_probabilities",
    "sample_selection",
    "sensitivity_probabilities",
    "draw_with_replacement",
    "inclusion_probabilities",
    "draw_without_replacement",
    "draw_sample",
]


def resolve_lam(lam, hat_total: float, cost: float) -> tuple[float, str]:
    """The lam to use and how it was chosen (``"given"`` or the auto rule's name)."""
    lam = check_lam(lam)
    if lam != "auto":
        return float(lam), "given"
    if cost <= 0:
        return 0.0, "auto: Phi = 0, distances carry no mass"
    if hat_total <= 0:
        return 1.0, "auto: all query losses are 0, sampling by distance only"
    lam_value = float(hat_total / cost)
    if not np.isfinite(lam_value):  # Phi underflows next to the losses: distances weigh 0
        return 0.0, "auto: Phi is negligible next to sum(l_hat), distances carry no mass"
    return lam_value, "auto: lam = sum(l_hat) / Phi (half the mass each)"


def block_probabilities(labels: np.ndarray, v: np.ndarray, losses: np.ndarray, lam: float,
                        total: float, mix: float, n: int) -> np.ndarray:
    """``p = (losses[labels] + lam v) / total``, mixed: ``p = mix / n + (1 - mix) p``.

    The probability formula of the library, for a block of rows or for all of them.
    """
    p = losses[labels] + lam * np.asarray(v, dtype=np.float64)
    p /= total
    if mix:
        p *= 1.0 - mix
        p += mix / n
    return p


def _zero_mass_warning() -> None:
    warn_user(
        "all query losses are 0 and all points coincide with their centers (total mass 0): "
        "falling back to uniform sampling.",
        RuntimeWarning,
    )


def _checked_total(total: float) -> bool:
    """True when the total mass can be used; False when it is 0 (uniform fallback)."""
    if not np.isfinite(total):
        raise ValueError("the sampling mass is not finite; are the losses or distances huge?")
    return total > 0


def sensitivity_probabilities(l_hat: np.ndarray, v: np.ndarray, lam: float,
                              mix: float = 0.0) -> np.ndarray:
    """``p = (l_hat + lam v) / sum(l_hat + lam v)``; uniform (with a warning) if the mass is 0.

    ``mix`` (alpha in [0, 1]) is defensive mixing: ``p = alpha / n + (1 - alpha) p``. Every
    row then has ``p >= alpha / n``, so the estimator's second moment ``sum l^2 / p`` is at
    most ``1 / alpha`` times uniform sampling's whatever the loss is (no row is starved when
    the loss is not Hoelder), at the price of at most a factor ``1 / (1 - alpha)`` on the
    sensitivity part when the loss is.

    Examples
    --------
    >>> import numpy as np
    >>> sensitivity_probabilities(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0]), 1.0)
    array([0.25, 0.5 , 0.  , 0.25])
    >>> sensitivity_probabilities(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0]), 1.0, mix=0.2)
    array([0.25, 0.45, 0.05, 0.25])
    """
    mass = np.asarray(l_hat, dtype=np.float64) + lam * np.asarray(v, dtype=np.float64)
    n = mass.shape[0]
    total = float(mass.sum())
    if not _checked_total(total):
        _zero_mass_warning()
        return np.full(n, 1.0 / n)
    # block_probabilities with every row its own center (labels = arange) and v folded in
    return block_probabilities(slice(None), 0.0, mass, 0.0, total, mix, n)


def draw_with_replacement(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` i.i.d. draws from ``p`` (rows with p = 0 are never drawn)."""
    cdf = np.cumsum(p)
    u = rng.random(size) * cdf[-1]
    idx = np.searchsorted(cdf, u, side="right")
    return np.minimum(idx, p.shape[0] - 1).astype(np.int64)


def inclusion_probabilities(p: np.ndarray, size: int,
                            eligible: np.ndarray | None = None) -> np.ndarray:
    """``pi = min(1, c p)`` with c chosen so that ``sum(pi) = size`` (iterative capping).

    Rows with p > 0 are preferred; if fewer than ``size`` rows have p > 0, the rest of the
    inclusion mass goes uniformly to the zero-probability rows that are ``eligible`` (all by
    default; excluded rows never), so that ``size`` distinct rows can still be drawn.
    """
    n = p.shape[0]
    pi = np.zeros(n)
    pos = p > 0
    npos = int(pos.sum())
    if npos <= size:
        pi[pos] = 1.0
        rest = size - npos
        if rest:
            spare = ~pos if eligible is None else (~pos & eligible)
            pi[spare] = rest / int(spare.sum())
        return pi
    capped = np.zeros(n, dtype=bool)
    for _ in range(n):
        free = ~capped
        budget = size - capped.sum()
        c = budget / p[free].sum()
        newcap = free & (c * p >= 1.0)
        if not newcap.any():
            pi[free] = c * p[free]
            pi[capped] = 1.0
            break
        capped |= newcap
    return np.minimum(pi, 1.0)


def draw_without_replacement(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fixed-size sample with inclusion probabilities ``pi`` (randomized systematic sampling).

    The rows are put in random order, and a systematic sample (one uniform start, unit
    steps along the cumulative ``pi``) is taken: each row is included with probability
    exactly ``pi`` and the size is ``round(sum(pi))``. Returned sorted.
    """
    n = pi.shape[0]
    order = rng.permutation(n)
    cum = np.cumsum(pi[order])
    size = int(round(cum[-1]))
    cum *= size / cum[-1]  # remove rounding drift so that the last point is exactly `size`
    u = rng.random()
    points = u + np.arange(size)
    pos = np.searchsorted(cum, points, side="right")
    pos = np.minimum(pos, n - 1)
    return np.sort(order[pos]).astype(np.int64)


def draw_sample(p: np.ndarray, size: int, replace: bool,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw from ``p`` and weight: ``(indices, probabilities, weights)``.

    ``replace=True``: ``size`` i.i.d. draws, per-draw probability ``p``, weight ``1/(size p)``.
    ``replace=False``: ``size`` distinct rows with inclusion probabilities
    ``pi = min(1, c p)``, weight ``1/pi`` (Horvitz-Thompson).
    """
    if replace:
        idx = draw_with_replacement(p, size, rng)
        prob = p[idx]
        return idx, prob, 1.0 / (size * prob)
    pi = inclusion_probabilities(p, size)
    idx = draw_without_replacement(pi, rng)
    prob = pi[idx]
    return idx, prob, 1.0 / prob


# --------------------------------------------------------------------------------------------
# The one sample step


def _p_stats(p: np.ndarray) -> tuple[int, float, float]:
    if p.size == 0:
        return 0, np.inf, -np.inf
    return int(np.count_nonzero(p <= 0)), float(p.min()), float(p.max())


def _iid_block(labels, v, start, arg):
    """Probabilities of one block, and the draws of the uniforms ``u`` that fell in it."""
    losses, lam, total, mix, n, u, carry, out = arg
    p = block_probabilities(labels, v, losses, lam, total, mix, n)
    if out.size:  # excluded rows: never drawn
        p[out] = 0.0
        stats = _p_stats(np.delete(p, out))
    else:
        stats = _p_stats(p)
    if u.size == 0:
        return stats, None
    cdf = np.cumsum(np.concatenate([[carry], p]))[1:]
    pos = np.minimum(np.searchsorted(cdf, u, side="right"), p.shape[0] - 1)
    return stats, (start + pos, p[pos], np.asarray(labels[pos], dtype=np.int64))


def _all_block(labels, v, start, arg):
    losses, lam, total, mix, n = arg[:5]
    p = block_probabilities(labels, v, losses, lam, total, mix, n)
    if len(arg) > 5 and arg[5].size:
        p[arg[5]] = 0.0
    return p


def block_masses(rows, losses: np.ndarray, lam: float) -> np.ndarray:
    """Every block's sampling mass ``sum_j count[b, j] l_j + lam V_b``, from its counts."""
    return rows.counts @ np.asarray(losses, dtype=np.float64) + lam * rows.vsum


def row_probabilities(rows, losses: np.ndarray, lam: float, mix: float = 0.0) -> np.ndarray:
    """The sampling probability of every row of a fitted pool (8 bytes a row), block by block
    where the blocks live; uniform when the total mass is 0."""
    losses = np.asarray(losses, dtype=np.float64)
    total = float(block_masses(rows, losses, lam).sum())
    if not _checked_total(total):
        return np.full(rows.n, 1.0 / rows.n)
    args = [(losses, lam, total, mix, rows.n)] * rows.n_blocks
    return np.concatenate(rows.map_blocks(_all_block, args))


def _strata_block(labels, v, start, arg):
    """The rows of one block picked by (stratum, rank among the block's available rows)."""
    k, out, strata, ranks = arg
    if strata.size == 0:
        return np.empty(0, dtype=np.int64)
    lab = np.array(labels, dtype=np.int64)
    if out.size:
        lab[out] = k  # excluded rows sort last and are never picked
    order = np.argsort(lab, kind="stable")
    first = np.concatenate([[0], np.cumsum(np.bincount(lab, minlength=k + 1))])
    return start + order[first[strata] + ranks]


def proportional_allocation(sizes: np.ndarray, size: int) -> np.ndarray:
    """Draws per stratum: ``size N_h / N`` rounded (largest remainders), at least 1 for every
    non-empty stratum and never more than a stratum holds; ``size`` must be at least the
    number of non-empty strata.

    Examples
    --------
    >>> proportional_allocation(np.array([10, 30, 0, 60]), 10).tolist()
    [1, 3, 0, 6]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    nonempty = sizes > 0
    quota = size * sizes / float(max(1, sizes.sum()))
    alloc = np.where(nonempty, np.maximum(1, np.floor(quota)), 0).astype(np.int64)
    alloc = np.minimum(alloc, sizes)
    frac = quota - np.floor(quota)
    while alloc.sum() > size:  # the minimum of one draw took too much: trim the largest
        over = np.flatnonzero(alloc > 1)
        j = over[np.argmin(frac[over] - alloc[over] * 1e-9)] if over.size else None
        if j is None:
            break
        alloc[j] -= 1
        frac[j] += 1.0
    rest = size - int(alloc.sum())
    if rest > 0:
        room = sizes - alloc
        order = np.argsort(-frac, kind="stable")
        order = order[room[order] > 0]
        while rest > 0 and order.size:
            take = order[:rest]
            alloc[take] += 1
            rest = size - int(alloc.sum())
            room = sizes - alloc
            order = order[room[order] > 0]
    return alloc


def _excluded(n: int, size: int, exclude, query_indices, replace: bool) -> np.ndarray:
    """The sorted rows the draw must skip: ``exclude``, and the queried rows when drawing
    without replacement (their losses are known exactly) as long as ``size`` rows remain."""
    user = (np.empty(0, dtype=np.int64) if exclude is None
            else np.asarray(exclude, dtype=np.int64))
    if replace:
        return user
    both = np.union1d(user, np.asarray(query_indices, dtype=np.int64))
    return both if n - both.shape[0] >= size else user


def sample_selection(rows, *, query_indices: np.ndarray, query_losses: np.ndarray,
                     query_points, size: int, lam, replace: bool, rng: np.random.Generator,
                     mix: float = 0.0, z: float = 2.0, n_clusters: int | None = None,
                     method: str = "sensitivity", path: str = "in-memory",
                     lam_rule: str | None = None, params: dict | None = None,
                     holder_quantile: float = 0.9, theorem: str = "Theorem 5",
                     exclude: np.ndarray | None = None,
                     design: str = "sensitivity") -> Selection:
    """Draw the weighted sample of a fitted pool and build its :class:`Selection`.

    Rows in ``exclude`` (e.g. rows already labelled) are never drawn: the sample and its
    estimate cover the other rows. Without replacement the queried rows are not drawn
    either: their losses are known, so the estimate adds them exactly
    (``params["known_total"]``) and the draws go to rows not yet paid for.

    Parameters
    ----------
    rows : RowState
        The fitted pool's per-row state (labels, ``v``, per-block counts).
    query_indices, query_losses : ndarray of shape (k,)
        The queried rows (label j of ``rows`` is ``query_indices[j]``) and their losses.
    query_points : ndarray of shape (k, d) or None
        Their embeddings (for the diagnostics).
    size : int
        s.
    lam : float or "auto"
        The weight of the distances; with ``lam_rule`` given it is used as it is.
    replace : bool
        i.i.d. draws with weights ``1/(s p)``, or s distinct rows with inclusion probabilities
        ``min(1, c p)`` and weights ``1/pi``.
    rng : Generator
        The draw's randomness.
    mix : float, default=0.0
        The uniform share.
    z : float
        The power of the distance (provenance and diagnostics).
    n_clusters : int, optional
        The k asked for (provenance; default: the number of queried rows).
    method, path : str
        Provenance: the strategy, and how the pool was read.
    lam_rule : str, optional
        How ``lam`` was chosen, when the caller resolved it.
    params : dict, optional
        More provenance, merged into ``Selection.params``.
    holder_quantile : float, default=0.9
        Quantile of the diagnostics' Hoelder estimate.
    theorem : str, default="Theorem 5"
        The bound the diagnostics report.
    exclude : ndarray of int64, optional
        Sorted rows never to draw (validated by the caller).
    design : {"sensitivity", "stratified"}, default="sensitivity"
        "sensitivity": Algorithm 1 (draws with probability ``p``). "stratified": the
        clusters are strata; the queried centers are a take-all stratum (known losses); the
        ``size`` draws are allocated to the clusters in proportion to their sizes (at least
        one each: ``size`` must be at least the number of non-empty clusters) and drawn
        uniformly without replacement inside each; weights ``N_h / n_h``, and
        :meth:`Selection.estimate_total` uses the stratified variance. ``lam`` and ``mix`` do
        not enter this design.

    Returns
    -------
    Selection
        With ``diagnostics`` (:func:`coreselect.diagnostics.selection_diagnostics`).
    """
    losses = np.asarray(query_losses, dtype=np.float64)
    n = rows.n
    sizes = rows.sizes
    cost = rows.cost
    hat_total = float(np.dot(sizes.astype(np.float64), losses))
    if design == "stratified":
        replace = False
    out = _excluded(n, size, exclude, query_indices, replace)
    n_user_out = 0 if exclude is None else int(np.asarray(exclude).shape[0])
    if out.size:
        out_lab, out_v = rows.take_rows(out)
        out_block = np.searchsorted(rows.starts, out, side="right") - 1
        hat_total -= float(losses[out_lab].sum())
        cost -= float(out_v.sum())
        cost = max(cost, 0.0)
    n_avail = n - out.shape[0]
    if lam_rule is None:
        lam_value, lam_rule = resolve_lam(lam, hat_total, cost)
    else:
        lam_value = float(lam)
    masses = block_masses(rows, losses, lam_value)
    block_rows = np.diff(rows.starts).astype(np.float64)
    local = [np.empty(0, dtype=np.int64)] * rows.n_blocks
    if out.size:
        masses = masses - np.bincount(out_block, weights=losses[out_lab] + lam_value * out_v,
                                      minlength=rows.n_blocks)
        masses = np.maximum(masses, 0.0)
        block_rows -= np.bincount(out_block, minlength=rows.n_blocks)
        cuts = np.searchsorted(out, rows.starts)
        local = [out[cuts[b]:cuts[b + 1]] - rows.starts[b] for b in range(rows.n_blocks)]
    total = float(masses.sum())
    d_losses, d_lam, d_mix = losses, lam_value, mix
    if not _checked_total(total):
        _zero_mass_warning()
        d_losses, d_lam, d_mix, total = np.zeros_like(losses), 0.0, 1.0, 1.0
        masses = np.zeros_like(masses)
    if design == "stratified":
        avail = rows.counts.copy()
        if out.size:
            np.add.at(avail, (out_block, out_lab), -1)
        strata_sizes = avail.sum(axis=0)
        nonempty = int(np.count_nonzero(strata_sizes))
        if size < nonempty:
            raise ValueError(
                f"design='stratified' draws at least one row in each of the {nonempty} "
                f"non-empty clusters; got size={size}. Raise size or lower n_clusters."
            )
        alloc = proportional_allocation(strata_sizes, size)
        size = int(alloc.sum())
        strata = np.repeat(np.arange(alloc.shape[0]), alloc)
        ranks = np.concatenate([rng.choice(int(N), int(a), replace=False)
                                for N, a in zip(strata_sizes, alloc, strict=True) if a > 0]
                               ) if size else np.empty(0, dtype=np.int64)
        cum = np.cumsum(avail, axis=0) - avail  # available rows of each stratum before block b
        block_of = (cum[:, strata] <= ranks[None, :]).sum(axis=0) - 1
        local_rank = ranks - cum[block_of, strata]
        order = np.argsort(block_of, kind="stable")
        cuts = np.searchsorted(block_of[order], np.arange(rows.n_blocks + 1))
        args = [(rows.k, local[b], strata[order[cuts[b]:cuts[b + 1]]],
                 local_rank[order[cuts[b]:cuts[b + 1]]]) for b in range(rows.n_blocks)]
        picked = rows.map_blocks(_strata_block, args)
        idx = np.empty(size, dtype=np.int64)
        for b in range(rows.n_blocks):
            idx[order[cuts[b]:cuts[b + 1]]] = picked[b]
        sort = np.argsort(idx, kind="stable")
        idx, strata = idx[sort], strata[sort]
        prob = alloc[strata] / strata_sizes[strata]
        weights = 1.0 / prob
        labs = strata
        stats = [(int(np.count_nonzero(strata_sizes[alloc == 0])), float(prob.min()) / size,
                  float(prob.max()) / size)] if size else [(0, 0.0, 0.0)]
    elif replace:
        shares = masses / total
        if d_mix:  # p = mix / n + (1 - mix) p, block by block (over the rows not excluded)
            shares = (1.0 - d_mix) * shares + d_mix * block_rows / n_avail
        bounds = np.cumsum(shares)
        u = rng.random(size) * bounds[-1]
        block_of = np.minimum(np.searchsorted(bounds, u, side="right"), rows.n_blocks - 1)
        order = np.argsort(block_of, kind="stable")
        cuts = np.searchsorted(block_of[order], np.arange(rows.n_blocks + 1))
        args = [(d_losses, d_lam, total, d_mix, n_avail, u[order[cuts[b]:cuts[b + 1]]],
                 0.0 if b == 0 else float(bounds[b - 1]), local[b])
                for b in range(rows.n_blocks)]
        results = rows.map_blocks(_iid_block, args)
        idx = np.empty(size, dtype=np.int64)
        prob = np.empty(size)
        labs = np.empty(size, dtype=np.int64)
        for b, (_, got) in enumerate(results):
            if got is not None:
                where = order[cuts[b]:cuts[b + 1]]
                idx[where], prob[where], labs[where] = got
        stats = [st for st, _ in results]
        weights = 1.0 / (size * prob)
    else:
        args = [(d_losses, d_lam, total, d_mix, n_avail, local[b]) for b in range(rows.n_blocks)]
        p = np.concatenate(rows.map_blocks(_all_block, args)) if rows.n_blocks else np.empty(0)
        eligible = None
        if out.size:
            eligible = np.ones(n, dtype=bool)
            eligible[out] = False
        stats = [_p_stats(p if eligible is None else p[eligible])]
        pi = inclusion_probabilities(p, size, eligible)
        del p
        idx = draw_without_replacement(pi, rng)
        prob = pi[idx]
        del pi
        labs = rows.take(idx)
        weights = 1.0 / prob
    p_summary = (n, sum(st[0] for st in stats), min(st[1] for st in stats),
                 max(st[2] for st in stats))
    k = int(query_indices.shape[0])
    out_params = {
        "lam": lam_value, "lam_rule": lam_rule, "z": float(z),
        "n_clusters": int(k if n_clusters is None else n_clusters), "cost": float(cost),
        "hat_total": hat_total, "size": int(size), "mix": float(mix), "path": path,
    }
    if design == "stratified":
        out_params.update({"design": "stratified", "allocation": "proportional",
                           "strata": int(np.count_nonzero(alloc)), "lam": 0.0,
                           "lam_rule": "not used by design='stratified'"})
    else:
        out_params["design"] = "sensitivity"
    if out.size:
        known = np.setdiff1d(np.asarray(query_indices, dtype=np.int64),
                             np.asarray(exclude if exclude is not None else [], dtype=np.int64))
        pos = np.searchsorted(np.sort(query_indices), known)
        order_q = np.argsort(query_indices, kind="stable")
        queried_out = not replace and known.size and np.isin(known, out).all()
        known_total = float(losses[order_q[pos]].sum()) if queried_out else 0.0
        out_params.update({"excluded": int(n_user_out), "n_covered": int(n - n_user_out),
                           "known_total": known_total,
                           "hat_covered": hat_total + known_total})
    if params:
        out_params.update(params)
    p_summary = (n_avail, p_summary[1], p_summary[2], p_summary[3])
    diagnostics = selection_diagnostics(
        p_summary=p_summary, indices=idx, weights=weights, query_points=query_points,
        query_losses=losses, cluster_sizes=sizes, cost=cost, hat_total=hat_total,
        lam=lam_value, lam_rule=lam_rule, z=z, size=size, replace=replace, mix=mix,
        holder_quantile=holder_quantile, theorem=theorem)
    if design == "stratified":
        diagnostics["design"] = "stratified"
        diagnostics["warnings"] = []
        diagnostics["verdict"] = (
            "Stratified by the clusters (proportional allocation, the queried centers known "
            "exactly): unbiased, with a variance at most a uniform sample's of the same size "
            "up to the rounding of the allocation.")
    return Selection(
        indices=idx, weights=weights, probabilities=prob, n=n,
        centers=np.asarray(query_indices)[labs], query_indices=query_indices,
        query_losses=losses, cluster_sizes=sizes, replace=replace, method=method,
        params=out_params, diagnostics=diagnostics,
    )
