"""Sensitivity probabilities, the choice of lam, and the two ways of drawing a sample.

``p_e = (l_hat(e) + lam v(e)) / (lam Phi + sum l_hat)`` where ``l_hat(e)`` is the oracle's loss
at e's center and ``v(e) = ||e - A(e)||^z`` (Algorithm 1 of the paper).

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

import warnings

import numpy as np

from ._validation import check_lam

__all__ = [
    "resolve_lam",
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
    return float(hat_total / cost), "auto: lam = sum(l_hat) / Phi (half the mass each)"


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
    total = float(mass.sum())
    if not total > 0 or not np.isfinite(total):
        if not np.isfinite(total):
            raise ValueError("the sampling mass is not finite; are the losses or distances huge?")
        warnings.warn(
            "all query losses are 0 and all points coincide with their centers (total mass 0): "
            "falling back to uniform sampling.",
            RuntimeWarning,
            stacklevel=3,
        )
        return np.full(mass.shape[0], 1.0 / mass.shape[0])
    mass /= total
    if mix:
        mass *= 1.0 - mix
        mass += mix / mass.shape[0]
    return mass


def draw_with_replacement(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` i.i.d. draws from ``p`` (rows with p = 0 are never drawn)."""
    cdf = np.cumsum(p)
    u = rng.random(size) * cdf[-1]
    idx = np.searchsorted(cdf, u, side="right")
    return np.minimum(idx, p.shape[0] - 1).astype(np.int64)


def inclusion_probabilities(p: np.ndarray, size: int) -> np.ndarray:
    """``pi = min(1, c p)`` with c chosen so that ``sum(pi) = size`` (iterative capping).

    Rows with p > 0 are preferred; if fewer than ``size`` rows have p > 0, the rest of the
    inclusion mass goes uniformly to the zero-probability rows (so that ``size`` distinct rows
    can still be drawn).
    """
    n = p.shape[0]
    pi = np.zeros(n)
    pos = p > 0
    npos = int(pos.sum())
    if npos <= size:
        pi[pos] = 1.0
        rest = size - npos
        if rest:
            pi[~pos] = rest / (n - npos)
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
