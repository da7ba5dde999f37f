"""Surrogate losses: the model's own prediction of its loss on every row.

A model that can score the pool predicts, for free, how large its loss on each row will be:
under its own class probabilities ``p`` the expected cross-entropy is the entropy
``-sum_c p_c log p_c`` and the expected 0-1 error is ``1 - max_c p_c``. Given as
``surrogate=`` to :func:`coreselect.sensitivity_sample` (or
:meth:`coreselect.SensitivitySampler.sample`), such an (n,) array serves twice:

- **the proposal**: the k queried rows, whose true losses are known, calibrate it
  (:func:`calibrate_surrogate`: ``l ~ a + b g``), and each row gets its own predicted
  spread, about ``sqrt(a + b g)`` with a floor, in place of its center's loss, so that rows
  the model is unsure of are drawn more often;
- **a control variate**: the estimate is ``beta sum(g_hat) + sum w (l - beta g_hat)``, with
  ``beta`` tuned from the sample to minimise the estimated variance (as PPI++ tunes its
  power), so it is never much worse than ignoring the surrogate (``beta = 0``).

The weights stay unbiased whatever the surrogate: a poor one costs precision, not validity.

For choosing a *training set* rather than estimating, ``proposal_power=`` draws the rows in
proportion to the surrogate itself to that power (no calibration, no floor), which puts the
labels where the model is unsure; :func:`margin_uncertainty` is the score that measured best
for that (``coreselect.baselines.get_strategy("sensitivity")`` with ``probs=`` uses it with
``TRAINING_PROPOSAL_POWER``; see ``docs/which-method.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_probabilities

__all__ = [
    "expected_cross_entropy",
    "expected_zero_one",
    "margin_uncertainty",
    "TRAINING_PROPOSAL_POWER",
    "CALIBRATION_MIN_ROWS",
    "SPREAD_FLOOR",
    "SurrogateFit",
    "calibrate_surrogate",
]


def expected_cross_entropy(probs) -> np.ndarray:
    """The cross-entropy each row is expected to have under the model's own probabilities.

    ``-sum_c p_c log p_c`` (the entropy, in nats), for an (n, C) array of class
    probabilities whose rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> expected_cross_entropy(np.array([[1.0, 0.0], [0.5, 0.5]])).round(4).tolist()
    [0.0, 0.6931]
    """
    p = check_probabilities(probs).astype(np.float64)
    # entries within the tolerance below 0 count as 0 (log 0 for them), above 1 they give a
    # sum just below 0, taken back to 0
    log_p = np.log(np.where(p > 0, p, 1.0))
    return np.maximum(-(p * log_p).sum(axis=1), 0.0)


def expected_zero_one(probs) -> np.ndarray:
    """The 0-1 error each row is expected to have: ``1 - max_c p_c``.

    Examples
    --------
    >>> import numpy as np
    >>> expected_zero_one(np.array([[0.9, 0.1], [0.5, 0.5]])).tolist()
    [0.09999999999999998, 0.5]
    """
    top = check_probabilities(probs).max(axis=1).astype(np.float64)
    return np.maximum(1.0 - top, 0.0)


# Fewer queried rows than this: the surrogate's scale is fitted, its shape trusted.
def margin_uncertainty(probs) -> np.ndarray:
    """``1 - (p_(1) - p_(2))`` per row: one minus the gap between the two largest class
    probabilities, in [0, 1] (1 when the model cannot tell its two best classes apart).

    A score, not a loss: it ranks the rows as margin sampling does. Raised to
    ``TRAINING_PROPOSAL_POWER`` it is the proposal of the registry's score-aware
    sensitivity strategy.

    Examples
    --------
    >>> margin_uncertainty([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]).round(2).tolist()
    [0.5, 0.95]
    """
    p = check_probabilities(probs)  # at least 2 classes
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


# The power of the score in the proposal of a training-set selection (the registry's
# sensitivity strategy with probs=): chosen by measurement in benchmarks/bench_training.py
# among 2, 4, 6 and 8 (docs/which-method.md).
TRAINING_PROPOSAL_POWER = 4.0

CALIBRATION_MIN_ROWS = 30
# The proposal's floor, as a share of the mean predicted loss: rows the model is sure of
# keep a chance to be drawn (a confidently wrong row must not get a huge weight).
SPREAD_FLOOR = 0.05


@dataclass(frozen=True)
class SurrogateFit:
    """A surrogate calibrated on the queried rows.

    ``predict(g) = max(a + b g, 0)`` is the calibrated loss (the control variate);
    ``spread(g) = sqrt(max(shape_a + shape_b g, 0) + c0)`` the proposal's per-row mass: the
    predicted root mean square of the residual when its variance is proportional to the
    loss (exact for a 0-1 loss, ``E[(l - g)^2] = g (1 - g) ~ g``), with the floor ``c0``.
    The square root is what minimises the variance of the weighted estimate under that model;
    a proposal in proportion to ``g`` itself (active testing's) gives large weights to rows
    the model is sure of.

    Examples
    --------
    >>> import numpy as np
    >>> fit = SurrogateFit(a=0.0, b=2.0, shape_a=0.0, shape_b=1.0, c0=0.0, rows=10)
    >>> fit.predict(np.array([0.5])).tolist(), fit.spread(np.array([0.25])).tolist()
    ([1.0], [0.5])
    """

    a: float
    b: float
    shape_a: float
    shape_b: float
    c0: float
    rows: int

    def predict(self, g: np.ndarray) -> np.ndarray:
        return np.maximum(self.a + self.b * np.asarray(g, dtype=np.float64), 0.0)

    def spread(self, g: np.ndarray) -> np.ndarray:
        base = np.maximum(self.shape_a + self.shape_b * np.asarray(g, dtype=np.float64), 0.0)
        return np.sqrt(base + self.c0)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "shape_a": self.shape_a, "shape_b": self.shape_b,
                "c0": self.c0, "rows": self.rows}


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares ``y ~ alpha + beta x`` with ``alpha, beta >= 0`` (``x >= 0``)."""
    sw = float(w.sum())
    mx, my = float(np.dot(w, x) / sw), float(np.dot(w, y) / sw)
    vx = float(np.dot(w, (x - mx) ** 2))
    cov = float(np.dot(w, (x - mx) * y))
    if vx <= 0 or cov <= 0:  # no increasing relation: the mean alone
        return max(my, 0.0), 0.0
    beta = cov / vx
    alpha = my - beta * mx
    if alpha < 0:  # through the origin (x has spread, so sum w x^2 > 0)
        return 0.0, float(np.dot(w, x * y)) / float(np.dot(w, x * x))
    return alpha, beta


def calibrate_surrogate(g, losses, weights=None) -> SurrogateFit:
    """Calibrate a surrogate on the queried rows (their true losses are known).

    With at least ``CALIBRATION_MIN_ROWS`` rows: weighted least squares ``l ~ a + b g``
    with ``a, b >= 0`` (``weights``: e.g. the cluster sizes, so that the queried rows stand
    for the pool), and the proposal follows ``a + b g``; a surrogate that does not rise with
    the loss gets ``b = 0`` and a uniform proposal. With fewer rows, too few to judge: only
    the scale is fitted (``b = sum w l / sum w g``, ``a = 0``) and the proposal follows
    ``g`` as given. The floor ``c0`` is ``SPREAD_FLOOR`` times the mean of the proposal's
    base over the queried rows.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.linspace(0.01, 0.8, 40)
    >>> fit = calibrate_surrogate(g, 2 * g)
    >>> round(fit.a, 12), round(fit.b, 12)
    (0.0, 2.0)
    """
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    w = np.ones_like(g) if weights is None else np.asarray(weights, dtype=np.float64)
    if g.shape != y.shape or w.shape != g.shape:
        raise ValueError("calibrate_surrogate: g, losses and weights must have the same length.")
    keep = w > 0
    g, y, w = g[keep], y[keep], w[keep]
    m = int(g.shape[0])
    if m == 0:
        return SurrogateFit(0.0, 1.0, 0.0, 1.0, 0.0, 0)
    if m >= CALIBRATION_MIN_ROWS:
        a, b = _wls(g, y, w)
        shape_a, shape_b = (a, b) if b > 0 else (1.0, 0.0)
    else:
        sg = float(np.dot(w, g))
        b = float(np.dot(w, y)) / sg if sg > 0 else 0.0
        a = 0.0 if sg > 0 else float(np.dot(w, y) / w.sum())
        shape_a, shape_b = 0.0, 1.0
    base = np.maximum(shape_a + shape_b * g, 0.0)
    level = float(np.dot(w, base) / w.sum())
    c0 = SPREAD_FLOOR * level if level > 0 else 1.0
    return SurrogateFit(float(a), float(b), float(shape_a), float(shape_b), float(c0), m)
