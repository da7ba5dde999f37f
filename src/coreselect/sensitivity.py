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

import math

import numpy as np

from ._validation import check_lam
from ._warnings import warn_user
from .diagnostics import selection_diagnostics
from .selection import Selection
from .surrogates import CALIBRATION_MIN_ROWS

# The sampling designs of the one sample step.
DESIGNS = ("auto", "sensitivity", "stratified")
QUERIES = ("centers", "random")

__all__ = [
    "DESIGNS",
    "QUERIES",
    "proportional_allocation",
    "neyman_allocation",
    "choose_design",
    "draw_in_strata",
    "draw_members",
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


def _block_p(labels, v, losses, row_mass, lam, total, mix, n):
    """A block's probabilities: from the centers' losses, or from per-row masses."""
    if row_mass is None:
        return block_probabilities(labels, v, losses, lam, total, mix, n)
    return block_probabilities(slice(None), v, row_mass, lam, total, mix, n)


def _iid_block(labels, v, start, arg):
    """Probabilities of one block, and the draws of the uniforms ``u`` that fell in it."""
    losses, lam, total, mix, n, u, carry, out, row_mass = arg
    p = _block_p(labels, v, losses, row_mass, lam, total, mix, n)
    if out.size:  # excluded rows: never drawn
        p[out] = 0.0
        stats = _p_stats(np.delete(p, out))
    else:
        stats = _p_stats(p)
    stats += (_zero_v(v),)
    if u.size == 0:
        return stats, None
    cdf = np.cumsum(np.concatenate([[carry], p]))[1:]
    pos = np.minimum(np.searchsorted(cdf, u, side="right"), p.shape[0] - 1)
    return stats, (start + pos, p[pos], np.asarray(labels[pos], dtype=np.int64))


def _all_block(labels, v, start, arg):
    losses, lam, total, mix, n = arg[:5]
    row_mass = arg[6] if len(arg) > 6 else None
    p = _block_p(labels, v, losses, row_mass, lam, total, mix, n)
    if len(arg) > 5 and arg[5].size:
        p[arg[5]] = 0.0
    return p


def _zero_v(v) -> int:
    """Rows at distance 0 from their center (the diagnostics' coincident rows)."""
    return int(np.count_nonzero(np.asarray(v) == 0))


def _all_block_counted(labels, v, start, arg):
    """:func:`_all_block`, and the block's rows at distance 0, in the same read."""
    return _all_block(labels, v, start, arg), _zero_v(v)


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


def _available_counts(rows, out: np.ndarray) -> np.ndarray:
    """Per block and stratum, the rows that may be drawn (``out`` removed)."""
    avail = rows.counts.copy()
    if out.size:
        out_lab, _ = rows.take_rows(out)
        out_block = np.searchsorted(rows.starts, out, side="right") - 1
        np.add.at(avail, (out_block, out_lab), -1)
    return avail


def _local_out(rows, out: np.ndarray) -> list[np.ndarray]:
    """``out`` split by block, as positions inside each block."""
    if not out.size:
        return [np.empty(0, dtype=np.int64)] * rows.n_blocks
    cuts = np.searchsorted(out, rows.starts)
    return [out[cuts[b]:cuts[b + 1]] - rows.starts[b] for b in range(rows.n_blocks)]


def draw_in_strata(rows, alloc: np.ndarray, rng: np.random.Generator,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``alloc[h]`` rows drawn uniformly without replacement from each stratum (cluster) h
    of a fitted pool, skipping the sorted rows ``out``: ``(rows, strata)``, sorted by row.

    The draw is made where the blocks live: each pick is a (stratum, rank) pair, sent to the
    block holding that rank of the stratum's available rows.

    Examples
    --------
    >>> from coreselect.pools.state import memory_rows
    >>> rows = memory_rows(np.array([0, 0, 1, 1, 1]), np.zeros(5), 2, 5)
    >>> idx, strata = draw_in_strata(rows, np.array([2, 1]), np.random.default_rng(0))
    >>> idx[strata == 0].tolist(), int(idx[strata == 1][0]) in (2, 3, 4)
    ([0, 1], True)
    """
    out = np.empty(0, dtype=np.int64) if out is None else np.asarray(out, dtype=np.int64)
    avail = _available_counts(rows, out)
    strata_sizes = avail.sum(axis=0)
    alloc = np.asarray(alloc, dtype=np.int64)
    if np.any(alloc > strata_sizes):
        raise ValueError("draw_in_strata: an allocation exceeds its stratum's available rows.")
    size = int(alloc.sum())
    strata = np.repeat(np.arange(alloc.shape[0]), alloc)
    if size == 0:
        return np.empty(0, dtype=np.int64), strata.astype(np.int64)
    ranks = np.concatenate([rng.choice(int(N), int(a), replace=False)
                            for N, a in zip(strata_sizes, alloc, strict=True) if a > 0])
    cum = np.cumsum(avail, axis=0) - avail  # available rows of each stratum before block b
    block_of = (cum[:, strata] <= ranks[None, :]).sum(axis=0) - 1
    local_rank = ranks - cum[block_of, strata]
    order = np.argsort(block_of, kind="stable")
    cuts = np.searchsorted(block_of[order], np.arange(rows.n_blocks + 1))
    local = _local_out(rows, out)
    args = [(rows.k, local[b], strata[order[cuts[b]:cuts[b + 1]]],
             local_rank[order[cuts[b]:cuts[b + 1]]]) for b in range(rows.n_blocks)]
    picked = rows.map_blocks(_strata_block, args)
    idx = np.empty(size, dtype=np.int64)
    for b in range(rows.n_blocks):
        idx[order[cuts[b]:cuts[b + 1]]] = picked[b]
    sort = np.argsort(idx, kind="stable")
    return idx[sort], strata[sort]


def draw_members(rows, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """One uniformly random row of every cluster (none of ``exclude``), in cluster order.

    The queried rows of the designs that count them in the sample (``queries="random"``):
    each is a uniform draw from its stratum, so its loss enters the stratified estimate like
    any other draw.

    Examples
    --------
    >>> import numpy as np
    >>> from coreselect.pools.state import memory_rows
    >>> rows = memory_rows(np.array([0, 0, 1, 1, 1]), np.zeros(5), 2, 5)
    >>> m = draw_members(rows, np.random.default_rng(0))
    >>> m.shape, bool(m[0] in (0, 1)), bool(m[1] in (2, 3, 4))
    ((2,), True, True)
    """
    out = np.empty(0, dtype=np.int64) if exclude is None else np.asarray(exclude, np.int64)
    sizes = _available_counts(rows, out).sum(axis=0)
    if np.any(sizes <= 0):
        raise ValueError("draw_members: a cluster has no row to draw.")
    idx, strata = draw_in_strata(rows, np.ones(rows.k, dtype=np.int64), rng, out)
    members = np.empty(rows.k, dtype=np.int64)
    members[strata] = idx
    return members


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


def neyman_allocation(sizes: np.ndarray, spreads: np.ndarray, size: int,
                      minimum: np.ndarray | int = 1) -> np.ndarray:
    """Draws per stratum in proportion to ``N_h S_h`` (Neyman), capped at ``N_h``, at least
    ``minimum`` in every non-empty stratum, rounded to sum to ``size``.

    With every spread equal it is :func:`proportional_allocation`'s allocation up to ties in
    the rounding. ``size`` must be at least the sum of the minima.

    Examples
    --------
    >>> neyman_allocation(np.array([10, 10, 10]), np.array([1.0, 1.0, 8.0]), 10).tolist()
    [1, 1, 8]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    nonempty = sizes > 0
    base = np.where(nonempty, np.minimum(np.broadcast_to(minimum, sizes.shape), sizes), 0)
    base = base.astype(np.int64)
    share = np.where(nonempty, sizes * np.maximum(np.asarray(spreads, np.float64), 0.0), 0.0)
    if share.sum() <= 0:
        share = sizes.astype(np.float64)
    # continuous Neyman quota with caps: quota_h = min(N_h, c share_h), sum = size
    quota = np.zeros(sizes.shape[0])
    capped = ~nonempty
    for _ in range(sizes.shape[0] + 1):
        free = ~capped & (share > 0)
        left = size - float(sizes[capped & nonempty].sum())
        if not free.any() or left <= 0:
            break
        c = left / float(share[free].sum())
        over = free & (c * share >= sizes)
        if not over.any():
            quota[free] = c * share[free]
            break
        capped |= over
    quota[capped & nonempty] = sizes[capped & nonempty]
    quota = np.maximum(quota, base)
    alloc = np.minimum(np.maximum(np.floor(quota).astype(np.int64), base), sizes)
    excess = int(alloc.sum()) - size
    if excess > 0:  # the minima took too much: trim where the quota is most exceeded
        room = alloc - base
        order = np.argsort(quota - alloc, kind="stable")
        order = order[room[order] > 0]
        take = np.zeros_like(alloc)
        for j in order:
            if excess <= 0:
                break
            d = min(int(room[j]), excess)
            take[j] = d
            excess -= d
        alloc -= take
    rest = size - int(alloc.sum())
    while rest > 0:
        room = sizes - alloc
        order = np.argsort(-(quota - alloc), kind="stable")
        order = order[room[order] > 0]
        if not order.size:
            break
        alloc[order[:rest]] += 1
        rest = size - int(alloc.sum())
    return alloc


# The auto design: Algorithm 1 only where the queried rows show a loss that follows the
# embedding; without that evidence the stratified design, which is never much worse than
# uniform sampling.
AUTO_MIN_R2 = 0.5
AUTO_MIN_QUERIES = 10
# With a surrogate, the per-row proposal only when its predicted variance is below this
# share of the stratified design's: a variance predicted from k rows misses the tails.
AUTO_PROPOSAL_MARGIN = 0.75
# The per-row proposal's variance predicted from the random queried rows is a sum of one
# term per cluster; a heavy-tailed loss (a confident row with a large cross-entropy) makes
# it uncertain, so the prediction is its upper bound at this many standard errors.
AUTO_PROPOSAL_Z = 2.0


def choose_design(query_points, query_losses, sizes, *, surrogate_var: dict | None = None
                  ) -> tuple[str, str]:
    """The design ``design="auto"`` picks, and why.

    Without a surrogate: ``"sensitivity"`` when at least ``AUTO_MIN_QUERIES`` rows were
    queried and their nearest-neighbour R^2 (each queried loss predicted by the nearest
    other queried row's, weighted by cluster size, i.e. cross-validated) is at least
    ``AUTO_MIN_R2``: the loss is smooth in the embedding and the centers' losses are a
    good proposal. Otherwise ``"stratified"``. With a surrogate (``surrogate_var``: the
    predicted variance of each design under the calibrated surrogate, from the queried rows'
    residuals when they are random rows), the per-row proposal (``"sensitivity"``) when its
    predicted variance (an upper bound, see :func:`_predicted_variances`) is below
    ``AUTO_PROPOSAL_MARGIN`` times the stratified design's,
    else ``"stratified"``.

    Examples
    --------
    >>> x = np.arange(20.0)[:, None]
    >>> choose_design(x, x[:, 0] ** 2, np.ones(20))[0]           # smooth in x
    'sensitivity'
    >>> choose_design(x, np.tile([0.0, 5.0], 10), np.ones(20))[0]  # not
    'stratified'
    """
    if surrogate_var is not None:
        # the per-row proposal must win clearly (its tails are unseen); without a stratified
        # prediction (fewer draws than strata) it is the only one
        sens = surrogate_var.get("sensitivity", math.inf)
        best = "stratified"
        if "stratified" not in surrogate_var or sens < (AUTO_PROPOSAL_MARGIN
                                                       * surrogate_var["stratified"]):
            best = "sensitivity"
        shown = ", ".join(f"{d} {v:.4g}" for d, v in surrogate_var.items())
        return best, (f"auto: predicted variances under the calibrated surrogate ({shown}); "
                      f"the per-row proposal below {AUTO_PROPOSAL_MARGIN:g} x the stratified "
                      "design's")
    from .diagnostics import nearest_neighbour_r2

    k = 0 if query_points is None else int(np.asarray(query_points).shape[0])
    if k < AUTO_MIN_QUERIES:
        return "stratified", f"auto: {k} queried rows, too few to check that the loss is smooth"
    r2 = nearest_neighbour_r2(query_points, query_losses, weights=sizes)
    if r2 is not None and r2 >= AUTO_MIN_R2:
        return "sensitivity", (f"auto: nearest-neighbour R^2 of the queried losses {r2:.3f} "
                               f">= {AUTO_MIN_R2}: the loss follows the embedding")
    shown = "undefined" if r2 is None else f"{r2:.3f}"
    return "stratified", (f"auto: nearest-neighbour R^2 of the queried losses {shown} < "
                          f"{AUTO_MIN_R2}: the loss does not follow the embedding")


def _sq_block(labels, v, start, arg):
    """Per-stratum sums of the squared spreads of one block's rows (``out`` left out)."""
    spread, out, k = arg
    w = spread * spread
    if out.size:
        w = w.copy()
        w[out] = 0.0
    return np.bincount(np.asarray(labels, dtype=np.int64), weights=w, minlength=k)


def _moment_block(labels, v, start, arg):
    """``sum spread^2 / p`` over one block's rows (``p`` the sensitivity probabilities)."""
    spread, lam, total, mix, n, out = arg
    p = block_probabilities(slice(None), v, spread, lam, total, mix, n)
    # p = 0 only where spread + lam v = 0 (and mix = 0): such a row adds 0 / tiny = 0
    m = spread * spread / np.maximum(p, np.finfo(np.float64).tiny)
    m[out] = 0.0
    return float(m.sum())


def _stratum_spreads(rows, spread: np.ndarray, out: np.ndarray, avail_sizes) -> np.ndarray:
    """Each stratum's predicted root mean square residual ``sqrt(mean_h spread^2)``."""
    local = _local_out(rows, out)
    args = [(spread[rows.starts[b]:rows.starts[b + 1]], local[b], rows.k)
            for b in range(rows.n_blocks)]
    sq = np.sum(rows.map_blocks(_sq_block, args), axis=0)
    return np.sqrt(sq / np.maximum(avail_sizes, 1))


def sample_selection(rows, *, query_indices: np.ndarray, query_losses: np.ndarray,
                     query_points, size: int, lam, replace: bool, rng: np.random.Generator,
                     mix: float = 0.0, z: float = 2.0, n_clusters: int | None = None,
                     method: str = "sensitivity", path: str = "in-memory",
                     lam_rule: str | None = None, params: dict | None = None,
                     holder_quantile: float = 0.9, theorem: str = "Theorem 5",
                     exclude: np.ndarray | None = None,
                     design: str = "sensitivity", surrogate: np.ndarray | None = None,
                     queries: str = "centers",
                     proposal_power: float | None = None) -> Selection:
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
        s, the rows to draw (new oracle calls).
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
    design : {"sensitivity", "stratified", "auto"}, default="sensitivity"
        "sensitivity": Algorithm 1 (draws with probability ``p``). "stratified": the
        clusters are strata, drawn uniformly without replacement inside each (weights
        ``N_h / n_h``; :meth:`Selection.estimate_total` uses the stratified variance); the
        allocation is proportional to the cluster sizes, or Neyman (``N_h S_h``, ``S_h``
        the surrogate's predicted spread) with a surrogate, at least one draw per
        non-empty cluster; ``lam`` and ``mix`` do not enter. With ``queries="centers"``
        the queried centers are a take-all stratum (known losses) and ``size`` rows are
        drawn; with ``queries="random"`` each queried row is the first uniform draw of its
        cluster, belongs to the sample (listed first in ``indices``) and ``size`` more are
        drawn. "auto": :func:`choose_design` decides (``params["design_rule"]`` says why).
    surrogate : ndarray of shape (n,), optional
        A predicted loss >= 0 for every row (validated by the caller). Calibrated on the
        queried rows (:func:`coreselect.surrogates.calibrate_surrogate`); its predicted
        spread replaces the centers' losses in the proposal, row by row (``p ~ spread(e) +
        lam v(e)``); the calibrated values are kept in ``Selection.surrogate`` for the
        control-variate estimate.
    queries : {"centers", "random"}, default="centers"
        What the queried rows are: the clustering's centers (Algorithm 1) or one uniformly
        random member of each cluster (:func:`draw_members`).
    proposal_power : float > 0, optional
        With ``surrogate``: the proposal's mass per row is ``surrogate ** proposal_power``
        as given (no calibration, no floor; ``+ lam v(e)``), which concentrates the draws
        on the rows the surrogate ranks highest: a training set rather than the
        lowest-variance estimate. ``"auto"`` then takes the "sensitivity" design (the
        only one that follows a per-row proposal); "stratified" is refused. The weights
        stay unbiased for every row with a positive mass; the calibration and the control
        variate are as without it. None (default): the calibrated spread above. Validated
        by the caller (:func:`coreselect._validation.check_proposal_power`).

    Returns
    -------
    Selection
        With ``diagnostics`` (:func:`coreselect.diagnostics.selection_diagnostics`).
    """
    losses = np.asarray(query_losses, dtype=np.float64)
    query_indices = np.asarray(query_indices, dtype=np.int64)
    n = rows.n
    sizes = rows.sizes
    members = queries == "random"
    user_out = (np.empty(0, dtype=np.int64) if exclude is None
                else np.asarray(exclude, dtype=np.int64))
    fit = ghat = spread = mass = None
    if surrogate is not None:
        from .surrogates import calibrate_surrogate

        surrogate = np.asarray(surrogate, dtype=np.float64)
        fit = calibrate_surrogate(surrogate[query_indices], losses, weights=sizes)
        ghat, spread = fit.predict(surrogate), fit.spread(surrogate)
        if proposal_power is not None:
            mass = surrogate ** float(proposal_power)
    design_rule = "given"
    if design == "auto" and mass is not None:
        design, design_rule = "sensitivity", (
            f"auto: proposal_power={float(proposal_power):g} asks for draws in proportion "
            "to the surrogate to that power, which only the per-row proposal follows")
    elif design == "auto":
        predicted = None
        if surrogate is not None:
            predicted = _predicted_variances(rows, spread, size=size, lam=lam, mix=mix,
                                             exclude=exclude, query_indices=query_indices,
                                             replace=replace, members=members, ghat=ghat,
                                             losses=losses)
        design, design_rule = choose_design(query_points, losses, sizes,
                                            surrogate_var=predicted)
        room = n - np.union1d(user_out, query_indices).shape[0]
        if design == "stratified" and size > room:
            design, design_rule = "sensitivity", (
                f"auto: size={size} is more than the {room} rows a draw without replacement "
                "can take")
        elif (design == "stratified" and not members
              and size < int(np.count_nonzero(sizes))):
            design, design_rule = "sensitivity", (
                f"auto: size={size} is less than one draw per cluster")
    common = dict(query_indices=query_indices, losses=losses, query_points=query_points,
                  size=size, rng=rng, z=z, n_clusters=n_clusters, path=path,
                  holder_quantile=holder_quantile, theorem=theorem, user_out=user_out,
                  ghat=ghat, spread=spread, fit=fit, members=members)
    if design == "stratified":
        sel_parts = _stratified_draw(rows, mix=mix, **common)
    else:
        if mass is not None:
            common["spread"] = mass
            if lam == "auto" and lam_rule is None:
                lam, lam_rule = 0.0, ("auto with proposal_power: 0, each row has its own "
                                      "mass (the surrogate to that power)")
        sel_parts = _sensitivity_draw(rows, lam=lam, replace=replace, mix=mix,
                                      lam_rule=lam_rule, **common)
        if mass is not None:
            sel_parts[1]["proposal"] = (f"surrogate ** {float(proposal_power):g} per row "
                                        "+ lam v")
            sel_parts[1]["proposal_power"] = float(proposal_power)
    sel_kwargs, out_params, diagnostics = sel_parts
    out_params["design_rule"] = design_rule
    out_params["queries"] = queries
    if params:
        out_params.update(params)
    return Selection(**sel_kwargs, n=n, query_indices=query_indices, query_losses=losses,
                     cluster_sizes=sizes, method=method, params=out_params,
                     diagnostics=diagnostics)


def _predicted_variances(rows, spread, *, size, lam, mix, exclude, query_indices, replace,
                         members, ghat=None, losses=None) -> dict:
    """The variance each design would have with the surrogate.

    With ``CALIBRATION_MIN_ROWS`` random queried rows or more (``members``: one uniform row
    of each cluster, so a stratified sample of the pool) the residuals ``r = l - g_hat`` of
    those rows are used as they are: the Neyman-stratified design's variance with a common
    within-cluster variance (the queried residuals' cluster-weighted variance), and the
    per-row proposal's
    ``sum_h t_h / s`` with ``t_h = N_h r_h^2 / p_h``, raised by ``AUTO_PROPOSAL_Z`` standard
    errors of that sum (``sqrt(k / (k - 1) sum (t_h - mean t)^2)``): an upper bound, since
    a few rows of a heavy-tailed loss carry most of it. Otherwise, under the surrogate's own
    model: the residual of row e has mean 0 and mean square ``spread(e)^2``."""
    out = _excluded(rows.n, size, exclude, query_indices, replace and not members)
    avail = _available_counts(rows, out).sum(axis=0)
    s_h = _stratum_spreads(rows, spread, out, avail)
    n_strata = int(np.count_nonzero(avail))
    result = {}
    if size >= n_strata:
        alloc = neyman_allocation(avail, s_h, size)
        pos = alloc > 0
        fpc = 1.0 - alloc[pos] / avail[pos]
        result["stratified"] = float(np.sum(avail[pos] ** 2 * s_h[pos] ** 2 * fpc / alloc[pos]))
    out_s = _excluded(rows.n, size, exclude, query_indices, replace)
    keep = np.ones(rows.n, dtype=bool)
    keep[out_s] = False
    sp = np.where(keep, spread, 0.0)
    cost = float(rows.cost) - float(rows.take_rows(out_s)[1].sum())
    lam_value = 0.0 if lam == "auto" else float(check_lam(lam))
    total = float(sp.sum()) + lam_value * max(cost, 0.0)
    if total > 0:
        local = _local_out(rows, out_s)
        args = [(sp[rows.starts[b]:rows.starts[b + 1]], lam_value, total, mix,
                 int(keep.sum()), local[b]) for b in range(rows.n_blocks)]
        moment = float(np.sum(rows.map_blocks(_moment_block, args)))
        result["sensitivity"] = moment / size
    if (members and losses is not None and ghat is not None
            and query_indices.shape[0] >= CALIBRATION_MIN_ROWS):
        big_n = rows.sizes.astype(np.float64)
        r = losses - ghat[query_indices]
        var_r = float(np.dot(big_n, (r - np.dot(big_n, r) / big_n.sum()) ** 2) / big_n.sum())
        if "stratified" in result:
            result["stratified"] = float(np.sum(avail[pos] ** 2 * var_r * fpc / alloc[pos]))
        if "sensitivity" in result:
            v_q = rows.take_rows(query_indices)[1]
            # each queried row stands for the rows of its cluster: the probability a row like
            # it gets (whether or not it can itself be drawn again)
            # > 0: the spread has a floor c0 > 0
            p_q = ((1.0 - mix) * (spread[query_indices] + lam_value * v_q) / total
                   + mix / keep.sum())
            terms = big_n * r ** 2 / p_q
            k = terms.shape[0]
            spread_of_sum = np.sqrt(k / (k - 1) * np.sum((terms - terms.mean()) ** 2))
            result["sensitivity"] = float(terms.sum() + AUTO_PROPOSAL_Z * spread_of_sum) / size
    return result or {"stratified": 0.0}


def _params(cost, hat_total, size, lam, lam_rule, z, k, n_clusters, mix, path,
            design) -> dict:
    return {"lam": lam, "lam_rule": lam_rule, "z": float(z),
            "n_clusters": int(k if n_clusters is None else n_clusters), "cost": float(cost),
            "hat_total": hat_total, "size": int(size), "mix": float(mix), "path": path,
            "design": design}


def _surrogate_params(out_params, fit, ghat, idx, user_out, known_rows):
    """The calibration and the surrogate's total over the rows the estimate covers (not
    excluded, not known exactly) into ``out_params``; the selected rows' calibrated values."""
    if ghat is None:
        return None
    cover = np.ones(ghat.shape[0], dtype=bool)
    cover[user_out] = False
    cover[known_rows] = False
    out_params["surrogate"] = fit.to_dict()
    out_params["surrogate_total"] = float(ghat[cover].sum())
    return ghat[idx]


def _coverage_params(out_params, n, user_out, known_total, hat_total) -> None:
    out_params.update({"excluded": int(user_out.shape[0]), "n_covered": int(n - user_out.shape[0]),
                       "known_total": float(known_total),
                       "hat_covered": float(hat_total + known_total)})


def _stratified_draw(rows, *, mix, query_indices, losses, query_points, size, rng, z,
                     n_clusters, path, holder_quantile, theorem, user_out, ghat,
                     spread, fit, members):
    """The stratified design: the clusters as strata, uniform draws without replacement."""
    n, k = rows.n, int(query_indices.shape[0])
    sizes = rows.sizes
    known_rows = np.empty(0, dtype=np.int64) if members else query_indices
    out = np.union1d(user_out, query_indices)
    if n - out.shape[0] < size:
        raise ValueError(f"design='stratified': size={size} rows asked for but only "
                         f"{n - out.shape[0]} rows are neither queried nor excluded.")
    avail = _available_counts(rows, out).sum(axis=0)   # per stratum, queried rows removed
    if members:
        strata_sizes = avail + 1   # the member belongs to its stratum's sample
        total_draws, minimum = size + k, 1
    else:
        strata_sizes = avail
        total_draws, minimum = size, 1
    nonempty = int(np.count_nonzero(strata_sizes))
    if not members and size < nonempty:
        raise ValueError(
            f"design='stratified' draws at least one row in each of the {nonempty} "
            f"non-empty clusters; got size={size}. Raise size or lower n_clusters."
        )
    if members:
        # two draws in every cluster that has two rows, when the budget allows: every
        # stratum then has its own variance estimate (no collapsing)
        two = np.minimum(strata_sizes, 2)
        if total_draws >= int(two.sum()):
            minimum = two
    if spread is not None:
        s_h = _stratum_spreads(rows, spread, user_out if members else out,
                               strata_sizes)
        alloc = neyman_allocation(strata_sizes, s_h, total_draws, minimum)
        allocation = "neyman (surrogate spreads)"
    elif members:
        alloc = neyman_allocation(strata_sizes, np.ones(strata_sizes.shape[0]), total_draws,
                                  minimum)
        allocation = "proportional"
    else:
        alloc = proportional_allocation(strata_sizes, total_draws)
        allocation = "proportional"
    extra = alloc - 1 if members else alloc
    idx, strata = draw_in_strata(rows, extra, rng, out)
    if members:
        idx = np.concatenate([query_indices, idx])
        strata = np.concatenate([np.arange(k), strata])
    prob = alloc[strata] / strata_sizes[strata]
    weights = 1.0 / prob
    hat_total = float(np.dot(sizes.astype(np.float64), losses))
    known_total = 0.0 if members else float(losses.sum())
    hat_total -= 0.0 if not user_out.size else float(losses[rows.take_rows(user_out)[0]].sum())
    hat_total -= known_total
    gone = user_out if members else out
    cost = float(rows.cost) - (float(rows.take_rows(gone)[1].sum()) if gone.size else 0.0)
    cost = max(cost, 0.0)
    out_params = _params(cost, hat_total, size, 0.0,
                         "not used by design='stratified'", z, k, n_clusters, mix, path,
                         "stratified")
    out_params.update({"allocation": allocation, "strata": int(np.count_nonzero(alloc)),
                       "queried_in_sample": k if members else 0})
    _coverage_params(out_params, n, user_out, known_total, hat_total)
    g_sel = _surrogate_params(out_params, fit, ghat, idx, user_out, known_rows)
    n_draws = int(idx.shape[0])
    stats = (int(np.count_nonzero(strata_sizes[alloc == 0])),
             float(prob.min()) / n_draws if n_draws else 0.0,
             float(prob.max()) / n_draws if n_draws else 0.0)
    diagnostics = selection_diagnostics(
        p_summary=(n - gone.shape[0],) + stats, indices=idx, weights=weights,
        query_points=query_points, query_losses=losses, cluster_sizes=sizes, cost=cost,
        hat_total=hat_total, lam=0.0, lam_rule="not used", z=z, size=n_draws, replace=False,
        mix=0.0, holder_quantile=holder_quantile, theorem=theorem)
    diagnostics["design"] = "stratified"
    diagnostics["warnings"] = []
    diagnostics["estimation_verdict"] = diagnostics["verdict"] = (
        f"For estimating the total loss: stratified by the clusters ({allocation} allocation"
        + (", the queried rows counted as the first draw of their cluster" if members
           else ", the queried centers known exactly")
        + "): unbiased, with a variance at most a uniform sample's of the same size up to "
          "the rounding of the allocation.")
    return (dict(indices=idx, weights=weights, probabilities=prob,
                 centers=query_indices[strata], replace=False, surrogate=g_sel),
            out_params, diagnostics)


def _sensitivity_draw(rows, *, lam, replace, mix, lam_rule, query_indices, losses,
                      query_points, size, rng, z, n_clusters, path, holder_quantile,
                      theorem, user_out, ghat, spread, fit, members):
    """Algorithm 1's draw: probabilities from the queried losses (or the surrogate's
    per-row spreads) and the distances, i.i.d. or without replacement."""
    n = rows.n
    sizes = rows.sizes
    cost = rows.cost
    out = _excluded(n, size, user_out if user_out.size else None, query_indices, replace)
    local = _local_out(rows, out)
    n_avail = n - out.shape[0]
    row_mass = None
    # sum of l_hat over the rows that can be drawn (the queried losses at their clusters)
    hat_total = float(np.dot(sizes.astype(np.float64), losses))
    if spread is not None:
        row_mass = spread.copy()
        row_mass[out] = 0.0
    if out.size:
        out_lab, out_v = rows.take_rows(out)
        out_block = np.searchsorted(rows.starts, out, side="right") - 1
        hat_total -= float(losses[out_lab].sum())
        cost = max(cost - float(out_v.sum()), 0.0)
    if lam_rule is None and row_mass is not None and lam == "auto":
        lam_value, lam_rule = 0.0, ("auto with a surrogate: 0, each row has its own "
                                    "predicted spread (with a floor)")
    elif lam_rule is None:
        lam_value, lam_rule = resolve_lam(
            lam, hat_total if row_mass is None else float(row_mass.sum()), cost)
    else:
        lam_value = float(lam)
    if row_mass is None:
        masses = block_masses(rows, losses, lam_value)
    else:
        masses = (np.add.reduceat(row_mass, rows.starts[:-1]) * (np.diff(rows.starts) > 0)
                  if n else np.zeros(rows.n_blocks)) + lam_value * rows.vsum
    block_rows = np.diff(rows.starts).astype(np.float64)
    if out.size:
        own = lam_value * out_v if row_mass is not None else losses[out_lab] + lam_value * out_v
        masses = np.maximum(masses - np.bincount(out_block, weights=own,
                                                 minlength=rows.n_blocks), 0.0)
        block_rows -= np.bincount(out_block, minlength=rows.n_blocks)
    total = float(masses.sum())
    d_losses, d_lam, d_mix, d_mass = losses, lam_value, mix, row_mass
    if not _checked_total(total):
        _zero_mass_warning()
        d_losses, d_lam, d_mix, total = np.zeros_like(losses), 0.0, 1.0, 1.0
        d_mass = None
        masses = np.zeros_like(masses)

    def mass_of(b):
        return None if d_mass is None else d_mass[rows.starts[b]:rows.starts[b + 1]]

    if replace:
        shares = masses / total
        if d_mix:  # p = mix / n + (1 - mix) p, block by block (over the rows not excluded)
            shares = (1.0 - d_mix) * shares + d_mix * block_rows / n_avail
        bounds = np.cumsum(shares)
        u = rng.random(size) * bounds[-1]
        block_of = np.minimum(np.searchsorted(bounds, u, side="right"), rows.n_blocks - 1)
        order = np.argsort(block_of, kind="stable")
        cuts = np.searchsorted(block_of[order], np.arange(rows.n_blocks + 1))
        args = [(d_losses, d_lam, total, d_mix, n_avail, u[order[cuts[b]:cuts[b + 1]]],
                 0.0 if b == 0 else float(bounds[b - 1]), local[b], mass_of(b))
                for b in range(rows.n_blocks)]
        results = rows.map_blocks(_iid_block, args)
        idx = np.empty(size, dtype=np.int64)
        prob = np.empty(size)
        labs = np.empty(size, dtype=np.int64)
        for b, (_, got) in enumerate(results):
            if got is not None:
                where = order[cuts[b]:cuts[b + 1]]
                idx[where], prob[where], labs[where] = got
        stats = [st[:3] for st, _ in results]
        zeros = sum(st[3] for st, _ in results)
        weights = 1.0 / (size * prob)
    else:
        args = [(d_losses, d_lam, total, d_mix, n_avail, local[b], mass_of(b))
                for b in range(rows.n_blocks)]
        got = rows.map_blocks(_all_block_counted, args)
        p = np.concatenate([pb for pb, _ in got]) if rows.n_blocks else np.empty(0)
        zeros = sum(z for _, z in got)
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
    p_summary = (n_avail, sum(st[0] for st in stats), min(st[1] for st in stats),
                 max(st[2] for st in stats))
    k = int(query_indices.shape[0])
    out_params = _params(cost, hat_total, size, lam_value, lam_rule, z, k,
                         n_clusters, mix, path, "sensitivity")
    if row_mass is not None:
        out_params["proposal"] = "surrogate spread per row + lam v"
    known_rows = np.empty(0, dtype=np.int64)
    if out.size:
        known_rows = np.setdiff1d(query_indices, user_out)
        queried_out = not replace and known_rows.size and np.isin(known_rows, out).all()
        if not queried_out:
            known_rows = np.empty(0, dtype=np.int64)
        pos = np.searchsorted(np.sort(query_indices), known_rows)
        order_q = np.argsort(query_indices, kind="stable")
        known_total = float(losses[order_q[pos]].sum()) if known_rows.size else 0.0
        _coverage_params(out_params, n, user_out, known_total, hat_total)
    g_sel = _surrogate_params(out_params, fit, ghat, idx, user_out, known_rows)
    zeros -= int(np.count_nonzero(rows.take_rows(query_indices)[1] == 0))
    diagnostics = selection_diagnostics(
        p_summary=p_summary, indices=idx, weights=weights, query_points=query_points,
        query_losses=losses, cluster_sizes=sizes, cost=cost, hat_total=hat_total,
        lam=lam_value, lam_rule=lam_rule, z=z, size=size, replace=replace, mix=mix,
        holder_quantile=holder_quantile, theorem=theorem, coincident_rows=max(zeros, 0))
    return (dict(indices=idx, weights=weights, probabilities=prob,
                 centers=query_indices[labs], replace=replace, surrogate=g_sel),
            out_params, diagnostics)
