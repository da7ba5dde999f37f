"""Surrogate losses: the model's own prediction of its loss on every row.

A model that can score the pool predicts, for free, how large its loss on each row will be:
under its own class probabilities ``p`` the expected cross-entropy is the entropy
``-sum_c p_c log p_c`` and the expected 0-1 error is ``1 - max_c p_c``. Given as
``surrogate=`` to :func:`coreselect.sensitivity_sample` (or
:meth:`coreselect.SensitivitySampler.sample`), such an (n,) array serves twice:

- **the proposal**: the k queried rows, whose true losses are known, calibrate it
  (:func:`calibrate_surrogate`: ``l ~ a + b g`` and ``(l - a - b g)^2 ~ c0 + c1 (a + b g)``)
  and each row gets its own predicted spread ``sqrt(c0 + c1 (a + b g))`` in place of its
  center's loss, so that rows the model is unsure of are drawn more often;
- **a control variate**: the estimate is ``beta sum(g_hat) + sum w (l - beta g_hat)``, with
  ``beta`` tuned from the sample to minimise the estimated variance (as PPI++ tunes its
  power), so it is never much worse than ignoring the surrogate (``beta = 0``).

The weights stay unbiased whatever the surrogate: a poor one costs precision, not validity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_probabilities

__all__ = [
    "expected_cross_entropy",
    "expected_zero_one",
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
    p = np.clip(check_probabilities(probs, name="probs"), 0.0, 1.0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.maximum(-terms.sum(axis=1), 0.0)


def expected_zero_one(probs) -> np.ndarray:
    """The 0-1 error each row is expected to have: ``1 - max_c p_c``.

    Examples
    --------
    >>> import numpy as np
    >>> expected_zero_one(np.array([[0.9, 0.1], [0.5, 0.5]])).tolist()
    [0.09999999999999998, 0.5]
    """
    p = np.clip(check_probabilities(probs, name="probs"), 0.0, 1.0).astype(np.float64)
    return np.maximum(1.0 - p.max(axis=1), 0.0)


@dataclass(frozen=True)
class SurrogateFit:
    """A surrogate calibrated on the queried rows.

    ``predict(g) = max(a + b g, 0)`` is the calibrated loss; ``spread(g) =
    sqrt(c0 + c1 predict(g))`` the predicted root mean square of ``l - predict(g)``, the
    proposal's per-row mass (the variance-optimal proposal for the control-variate estimator
    when the model is right; for a 0-1 loss and a calibrated surrogate ``c0 = 0, c1 = 1``).

    Examples
    --------
    >>> import numpy as np
    >>> fit = SurrogateFit(a=0.0, b=2.0, c0=0.0, c1=1.0, rows=10)
    >>> fit.predict(np.array([0.5])).tolist(), fit.spread(np.array([0.5])).tolist()
    ([1.0], [1.0])
    """

    a: float
    b: float
    c0: float
    c1: float
    rows: int

    def predict(self, g: np.ndarray) -> np.ndarray:
        return np.maximum(self.a + self.b * np.asarray(g, dtype=np.float64), 0.0)

    def spread(self, g: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.c0 + self.c1 * self.predict(g), 0.0))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "c0": self.c0, "c1": self.c1, "rows": self.rows}


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares ``y ~ alpha + beta x`` with ``alpha, beta >= 0``."""
    sw = float(w.sum())
    mx, my = float(np.dot(w, x) / sw), float(np.dot(w, y) / sw)
    vx = float(np.dot(w, (x - mx) ** 2))
    beta = float(np.dot(w, (x - mx) * (y - my)) / vx) if vx > 0 else 0.0
    alpha = my - beta * mx
    if beta < 0 or vx <= 0:  # no increasing relation: the mean alone
        return max(my, 0.0), 0.0
    if alpha < 0:  # through the origin
        sxx = float(np.dot(w, x * x))
        return 0.0, max(float(np.dot(w, x * y)) / sxx, 0.0) if sxx > 0 else 0.0
    return alpha, beta


def calibrate_surrogate(g, losses, weights=None) -> SurrogateFit:
    """Fit ``l ~ a + b g`` and ``(l - a - b g)^2 ~ c0 + c1 (a + b g)`` on the queried rows.

    Weighted least squares with non-negative coefficients (``weights``: e.g. the cluster
    sizes, so that the queried rows stand for the pool). With fewer than 3 rows the
    surrogate is only rescaled (``b = sum w l / sum w g``); a surrogate that does not rise
    with the loss gets ``b = 0`` (every row the same predicted loss and spread: the
    proposal is then uniform).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([0.1, 0.2, 0.4, 0.8])
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
        return SurrogateFit(0.0, 1.0, 0.0, 1.0, 0)
    if m < 3:
        sg = float(np.dot(w, g))
        b = float(np.dot(w, y)) / sg if sg > 0 else 0.0
        a = 0.0 if sg > 0 else float(np.dot(w, y) / w.sum())
    else:
        a, b = _wls(g, y, w)
    pred = np.maximum(a + b * g, 0.0)
    r2 = (y - pred) ** 2
    if m < 3:
        mean_pred = float(np.dot(w, pred) / w.sum())
        c0, c1 = 0.0, (float(np.dot(w, r2) / w.sum()) / mean_pred if mean_pred > 0 else 0.0)
        if c1 == 0.0:
            c0 = float(np.dot(w, r2) / w.sum())
    else:
        c0, c1 = _wls(pred, r2, w)
    if c0 + c1 * float(pred.max(initial=0.0)) <= 0:  # every residual 0: spread by the level
        c0, c1 = 0.0, 1.0
    return SurrogateFit(float(a), float(b), float(c0), float(c1), m)
