"""Algorithm 3 of the paper: r rounds of sensitivity sampling over a prefix clustering order.

Round i asks the oracle for the next k rows of a prefix (k, z)-clustering order
(:func:`coreselect.prefix.prefix_order`), adds them to the centers (an incremental
assignment against the k new centers only), and draws a sample ``S_i`` with all ``i k``
queried rows as centers. The error bound of round i (Theorem 6) is Theorem 5's with the
clustering cost of the first ``i k`` rows of the order, which falls as i grows; with
``r k = n`` every row is queried and the estimate is exact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from ._validation import (
    check_choice,
    check_fraction,
    check_lam,
    check_mix,
    check_n_clusters,
    check_oracle,
    check_positive_int,
    check_random_state,
    check_size,
    check_z,
)
from .diagnostics import estimate_holder_constant
from .oracle import LossCache, ask_oracle
from .pools import as_pool, memory_rows
from .prefix import PREFIX_METHODS, IncrementalAssignment, _prefix_order
from .selection import Selection
from .sensitivity import resolve_lam, sample_selection

__all__ = ["adaptive_sample", "resolve_lam_with_holder"]

logger = logging.getLogger(__name__)


def resolve_lam_with_holder(lam, hat_total: float, cost: float, query_points: np.ndarray,
                            query_losses: np.ndarray, *, z: float = 2.0,
                            quantile: float = 0.9) -> tuple[float, str]:
    """Resolve ``lam``, where ``"holder"`` means the Hoelder estimate from the queried rows.

    ``"holder"``: :func:`coreselect.diagnostics.estimate_holder_constant` on the queried
    rows; when it is 0 or cannot be computed (fewer than 2 queried rows, constant losses)
    the ``"auto"`` rule is used instead, and the returned rule says so. Anything else goes
    to :func:`coreselect.sensitivity.resolve_lam`.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.linspace(0.0, 1.0, 11)[:, None]
    >>> resolve_lam_with_holder("holder", 10.0, 2.0, pts, 2.0 * pts[:, 0], z=1.0)[0]
    2.0
    """
    if isinstance(lam, str) and lam == "holder":
        if cost > 0 and query_points.shape[0] >= 2:
            est = estimate_holder_constant(query_points, query_losses, z=z, quantile=quantile)
            if est.lam > 0 and np.isfinite(est.lam):
                return est.lam, (f"holder: q{quantile:g} of |l(a)-l(b)|/||a-b||^z over "
                                 f"{est.n_pairs} close queried pairs")
        value, rule = resolve_lam("auto", hat_total, cost)
        return value, f"holder unavailable, {rule}"
    return resolve_lam(lam, hat_total, cost)


def adaptive_sample(X, oracle: Callable, size: int, *, rounds: int, n_clusters: int,
                    z: float = 2.0, lam="auto", seed=None, order: str | np.ndarray = "dz",
                    replace: bool = True, mix: float = 0.0, holder_quantile: float = 0.9,
                    batch_size: int | None = 1024,
                    cache: LossCache | str | os.PathLike | None = None,
                    chunk_size: int | None = None, progress: bool = False) -> list[Selection]:
    """r rounds of sensitivity sampling (Algorithm 3): one :class:`Selection` per round.

    Round i (1-based) asks ``oracle`` for rows ``(i-1) k .. i k - 1`` of a prefix
    clustering order (each row once, never twice), updates every row's nearest queried
    row and ``v(e)`` with those k new centers only, and draws ``size`` rows with
    ``p ~ l_hat + lam v`` using all ``i k`` queried rows as centers. The round costs
    ``k + size`` oracle calls (the sample's losses included). With ``rounds * n_clusters
    >= n`` every row is queried by the last round and its estimate is exact.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Embeddings.
    oracle : callable
        ``oracle(indices: ndarray[int64]) -> losses``; called with the k new rows of each
        round (in batches of ``batch_size``).
    size : int
        s, draws per round.
    rounds : int
        r >= 1. Every round must have a new row to query: ``(rounds - 1) * n_clusters < n``
        (the last round queries fewer than k rows when ``n`` runs out).
    n_clusters : int
        k, rows queried per round.
    z : float, default=2.0
        Power of the distance.
    lam : float, "auto" or "holder", default="auto"
        Weight of the distances in every round: a number; "auto" (the rule of
        :func:`coreselect.sensitivity.resolve_lam`, ``sum(l_hat) / Phi``, recomputed each
        round); or "holder" (the Hoelder constant estimated from the rows queried so far,
        :func:`coreselect.diagnostics.estimate_holder_constant`). On
        ``benchmarks/bench_adaptive.py`` "holder" was better on a clustered synthetic set
        and on digits, worse on Fashion-MNIST and, much worse in some rounds, on a loss
        unrelated to the embeddings (it trusts the queried losses more); it is not the
        default.
    seed : None, int or numpy.random.Generator
        Randomness of the order and of the draws.
    order : {"dz", "farthest"} or array of int, default="dz"
        The prefix order (see :func:`coreselect.prefix.prefix_order`), or a precomputed one
        (distinct rows, at least ``min(n, rounds * n_clusters)`` of them).
    replace : bool, default=True
        i.i.d. draws (the paper) or ``size`` distinct rows per round.
    mix : float, default=0.0
        Defensive mixing: ``p = mix / n + (1 - mix) p`` (see
        :func:`coreselect.sensitivity.sensitivity_probabilities`).
    holder_quantile : float, default=0.9
        Quantile for ``lam="holder"`` and for the diagnostics' Hoelder estimate.
    batch_size : int or None, default=1024
        Rows per oracle call.
    cache : LossCache, path or None
        Keep the oracle's answers in a file; a rerun asks only for missing ones.
    chunk_size : int, optional
        Rows per chunk of the distance passes; does not change the result.
    progress : bool, default=False
        Progress bars on stderr.

    Returns
    -------
    list of Selection
        One per round, ``method="adaptive"``; ``query_indices`` are the ``i k`` rows queried
        so far (in order), ``params["round"]`` is i and ``diagnostics`` the report of
        :func:`coreselect.diagnostics.selection_diagnostics` (Theorem 6).

    Examples
    --------
    >>> import numpy as np
    >>> import coreselect as cs
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 3))
    >>> loss = (X ** 2).sum(axis=1)
    >>> rounds = cs.adaptive_sample(X, loss.__getitem__, 50, rounds=3, n_clusters=20, seed=0)
    >>> [sel.n_queries for sel in rounds]
    [20, 40, 60]
    >>> bool(rounds[-1].diagnostics["Phi"] < rounds[0].diagnostics["Phi"])
    True
    """
    rng = check_random_state(seed)
    pool = as_pool(X)
    n = pool.n
    k = check_n_clusters(n_clusters, n)
    r = check_positive_int(rounds, "rounds")
    if (r - 1) * k >= n:
        raise ValueError(
            f"rounds must satisfy (rounds - 1) * n_clusters < n={n} so that every round has "
            f"a new row to query; got rounds={r} with n_clusters={k}."
        )
    z = check_z(z)
    size = check_size(size, n, replace=replace)
    lam = check_lam(lam, allowed=("auto", "holder"))
    mix = check_mix(mix)
    check_fraction(holder_quantile, "holder_quantile", low_open=True)
    check_oracle(oracle)
    m = min(n, r * k)

    if isinstance(order, str):
        method = check_choice(order, "order", PREFIX_METHODS)
        seq = _prefix_order(pool, m, z=z, method=method, rng=rng, chunk_size=chunk_size,
                            progress=progress)
    else:
        method = "given"
        seq = np.asarray(order)
        if seq.ndim != 1 or seq.shape[0] < m or seq.dtype.kind not in "iu":
            raise ValueError(
                f"order must be 'dz', 'farthest' or a 1-D int array of at least {m} rows; got "
                f"an array of shape {seq.shape} and dtype {seq.dtype}."
            )
        seq = seq[:m].astype(np.int64)
        if seq.min() < 0 or seq.max() >= n or np.unique(seq).shape[0] != m:
            raise ValueError(f"order must hold distinct rows in [0, {n}); it does not.")

    if cache is not None and not isinstance(cache, LossCache):
        cache = LossCache(cache)
    inc = IncrementalAssignment(pool, z=z, chunk_size=chunk_size)
    query_losses = np.empty(0)
    out: list[Selection] = []
    for i in range(1, r + 1):
        new = seq[(i - 1) * k: min(i * k, m)]
        got = ask_oracle(oracle, new, batch_size=batch_size, cache=cache, progress=progress,
                         state={"round": i, "queried": seq[: (i - 1) * k].copy(),
                                "query_losses": query_losses.copy()})
        query_losses = np.concatenate([query_losses, got])
        inc.add(new)
        queried = inc.centers
        rows = memory_rows(inc.labels, inc.distances, queried.shape[0])
        hat_total = float(np.dot(rows.sizes.astype(np.float64), query_losses))
        qpoints = np.asarray(pool.take(queried), dtype=np.float64)
        lam_value, lam_rule = resolve_lam_with_holder(
            lam, hat_total, rows.cost, qpoints, query_losses, z=z, quantile=holder_quantile)
        sel = sample_selection(
            rows, query_indices=queried, query_losses=query_losses, query_points=qpoints,
            size=size, lam=lam_value, lam_rule=lam_rule, replace=replace, rng=rng, mix=mix,
            z=z, n_clusters=k, method="adaptive", path=pool.kind if pool.kind != "in-memory"
            else "in-memory", holder_quantile=holder_quantile, theorem="Theorem 6",
            params={"round": i, "rounds": r, "n_queries": int(queried.shape[0]),
                    "order": method})
        logger.debug("adaptive_sample: round %d/%d queries=%d Phi=%.6g lam=%.6g", i, r,
                     queried.shape[0], rows.cost, lam_value)
        out.append(sel)
    return out
