"""Leverage-score sampling, the standard baseline for selecting rows for least squares.

The leverage score of row i of A (rank r) is ``h_i = ||U_i||^2`` where U is an orthonormal
basis of A's column space; ``sum(h) = r``. Sampling rows with ``p_i = h_i / r`` and weights
``1 / (s p_i)`` gives a subspace embedding with ``s = O(r log r / eps^2)`` rows.

- :func:`leverage_scores`: exact, by a thin QR (``O(n d^2)``), an SVD when A is rank-deficient
  (with a tolerance), or a Cholesky factor of the Gram matrix (fastest for tall matrices).
- :func:`sketched_leverage_scores`: the fast approximation of Drineas, Magdon-Ismail, Mahoney
  and Woodruff (2012): a CountSketch or a subsampled randomized trigonometric (Hadamard-like)
  transform ``S A``, its QR ``S A = Q R``, then the row norms of ``A R^-1`` (optionally times a
  Johnson-Lindenstrauss matrix with ``O(log n)`` columns): ``O(nnz(A) + n d log n + d^3)``.
- :func:`leverage_sample`: a :class:`~coreselect.Selection` drawn from either.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import linalg, sparse

from .._validation import (
    check_embeddings,
    check_positive_int,
    check_random_state,
    iter_chunks,
)
from ..selection import Selection
from ..sensitivity import draw_sample, draw_without_replacement, inclusion_probabilities
from .uniform import selectable_rows

__all__ = ["leverage_scores", "sketched_leverage_scores", "leverage_sample"]

logger = logging.getLogger(__name__)

_CHUNK = 16384
_CHOL_RTOL = 1e-5  # a triangular factor with min |R_jj| below this times max is suspect


def _default_rtol(n: int, d: int) -> float:
    return max(n, d) * np.finfo(np.float64).eps


def _row_norms_sq(A: np.ndarray, M: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``||(A M)_i||^2`` for every row, chunk by chunk (the product in ``dtype``)."""
    n = A.shape[0]
    out = np.empty(n)
    M = np.ascontiguousarray(M, dtype=dtype)
    for start, stop in iter_chunks(n, _CHUNK):
        Y = np.asarray(A[start:stop], dtype=dtype) @ M
        out[start:stop] = np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    return out


def _gram(A: np.ndarray) -> np.ndarray:
    """``A^T A`` in float64 by chunks, through BLAS syrk (half the flops of a GEMM)."""
    d = A.shape[1]
    G = np.zeros((d, d), order="F")
    for start, stop in iter_chunks(A.shape[0], _CHUNK):
        blk = np.asarray(A[start:stop], dtype=np.float64)
        # syrk on the Fortran view of blk.T: C := alpha * a a^T + beta * C with a = blk.T
        G = linalg.blas.dsyrk(1.0, blk.T, beta=1.0, c=G, lower=0, trans=0, overwrite_c=1)
    return np.triu(G) + np.triu(G, 1).T


def _independent_rows(A: np.ndarray, rtol: float) -> bool:
    """For n <= d: True when the rows are clearly linearly independent, so that every
    leverage score is 1. The Cholesky factor of the n x n Gram matrix of the rows scaled to
    unit norm is the R of a QR of their transpose; accepted when
    ``min R_jj > max(rtol, 1e-5) max R_jj``: ``O(n^2 d)``, about a third of a QR's time."""
    B = np.asarray(A, dtype=np.float64)
    norms = np.linalg.norm(B, axis=1)
    if not np.all(norms > 0):
        return False
    B = B / norms[:, None]
    try:
        R = linalg.cholesky(B @ B.T, lower=False, check_finite=False)
    except linalg.LinAlgError:
        return False
    diag = np.abs(np.diag(R))
    return bool(diag.min() > max(rtol, _CHOL_RTOL) * diag.max())


def _svd_scores(A: np.ndarray, rtol: float) -> np.ndarray:
    U, s, _ = np.linalg.svd(np.asarray(A, dtype=np.float64), full_matrices=False)
    r = int(np.count_nonzero(s > rtol * s[0])) if s.size and s[0] > 0 else 0
    return np.einsum("ij,ij->i", U[:, :r], U[:, :r])


def leverage_scores(A, *, method: str = "qr", rtol: float | None = None) -> np.ndarray:
    """Exact leverage scores of the rows of A.

    Parameters
    ----------
    A : array-like of shape (n, d)
    method : {"qr", "svd", "cholesky"}, default="qr"
        "qr": thin QR, ``h = rowsum(Q^2)``; when ``|R_jj| <= rtol max|R_jj|`` for some j
        (A looks rank-deficient) the SVD is used instead. "svd": always the thin SVD, with
        singular values ``<= rtol s_max`` dropped. "cholesky": the Cholesky factor R of
        ``A^T A`` and ``h = rowsum((A R^-1)^2)``: the fastest for tall A, but it squares
        the condition number, so it falls back to "qr" when ``R`` is ill-conditioned
        (``min R_jj / max R_jj < 1e-5``). Either way, when ``n <= d`` and the rows are
        clearly independent (checked on the Cholesky factor of their ``n x n`` Gram matrix,
        a third of a QR's time) every score is 1 and A is not factorised.
    rtol : float, optional
        Relative tolerance of the rank decision; ``max(n, d) * eps`` by default.

    Returns
    -------
    ndarray of float64, shape (n,)
        Scores in [0, 1] summing to rank(A).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> leverage_scores(A).round(6).tolist()
    [1.0, 0.5, 0.5]
    """
    A = check_embeddings(A, name="A")
    n, d = A.shape
    rtol = _default_rtol(n, d) if rtol is None else float(rtol)
    if not (rtol >= 0 and np.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite float >= 0; got {rtol}.")
    if method not in ("qr", "svd", "cholesky"):
        raise ValueError(f"method must be 'qr', 'svd' or 'cholesky'; got {method!r}.")
    return trusted_leverage_scores(A, method=method, rtol=rtol)


def trusted_leverage_scores(A: np.ndarray, *, method: str = "qr",
                            rtol: float | None = None) -> np.ndarray:
    """:func:`leverage_scores` on a finite float array its caller has validated."""
    n, d = A.shape
    rtol = _default_rtol(n, d) if rtol is None else rtol
    if method == "svd":
        return _svd_scores(A, rtol)
    if n <= d and _independent_rows(A, rtol):
        return np.ones(n)  # n independent rows span R^n: each is its own direction
    if method == "cholesky":
        G = _gram(A)
        try:
            R = linalg.cholesky(G, lower=False, check_finite=False)
        except linalg.LinAlgError:
            R = None
        if R is not None:
            diag = np.abs(np.diag(R))
            if diag.min() > _CHOL_RTOL * diag.max():
                Rinv = linalg.solve_triangular(R, np.eye(d), lower=False, check_finite=False)
                return np.minimum(_row_norms_sq(A, Rinv), 1.0)
        logger.info("leverage_scores: Gram matrix ill-conditioned; using QR")
    Q, R = np.linalg.qr(np.asarray(A, dtype=np.float64), mode="reduced")
    diag = np.abs(np.diag(R))
    if diag.size == 0 or diag.max() == 0 or diag.min() <= rtol * diag.max():
        logger.info("leverage_scores: A looks rank-deficient; using the SVD")
        return _svd_scores(A, rtol)
    return np.einsum("ij,ij->i", Q, Q)


def _count_sketch(A: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    n = A.shape[0]
    rows = rng.integers(m, size=n)
    signs = rng.integers(2, size=n).astype(np.float64) * 2.0 - 1.0
    S = sparse.csr_matrix((signs, (rows, np.arange(n))), shape=(m, n))
    return np.asarray(S @ np.asarray(A, dtype=np.float64))


def _trig_sketch(A: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Subsampled randomized trigonometric transform: ``sqrt(n/m) P DCT(D A)``."""
    from scipy import fft

    n = A.shape[0]
    signs = rng.integers(2, size=n).astype(np.float64) * 2.0 - 1.0
    DA = np.asarray(A, dtype=np.float64) * signs[:, None]
    T = fft.dct(DA, type=2, norm="ortho", axis=0, overwrite_x=True, workers=-1)
    rows = rng.choice(n, size=m, replace=False)
    return T[rows] * math.sqrt(n / m)


def sketched_leverage_scores(A, *, sketch: str = "countsketch", sketch_size: int | None = None,
                             jl_dim: int | str | None = "auto", rtol: float | None = None,
                             seed=None) -> np.ndarray:
    """Approximate leverage scores by sketching (Drineas et al., 2012).

    Parameters
    ----------
    A : array-like of shape (n, d)
    sketch : {"countsketch", "srht"}, default="countsketch"
        The sketch ``S``: CountSketch (``O(nnz(A))``), or a subsampled randomized
        trigonometric transform (random signs, an orthonormal DCT, row sampling;
        ``O(n d log n)``, the real-valued cousin of the subsampled Hadamard transform).
    sketch_size : int, optional
        Rows of ``S A``; ``min(n, 20 d)`` by default.
    jl_dim : int, "auto" or None, default="auto"
        Columns of the Gaussian Johnson-Lindenstrauss matrix applied after ``R^-1``, so that
        the last pass costs ``O(n d jl_dim)`` instead of ``O(n d^2)``. None: none (exact
        ``A R^-1``). "auto": ``ceil(8 ln n)`` when that is below ``d / 4``, else none.
    rtol : float, optional
        Relative tolerance for the rank of ``S A`` (``max(m, d) * eps`` by default).
    seed : None, int or numpy.random.Generator

    Returns
    -------
    ndarray of float64, shape (n,)
        Approximate scores (each within a small constant factor of the exact one with high
        probability), clipped to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).normal(size=(2000, 5))
    >>> h = sketched_leverage_scores(A, seed=0)
    >>> bool(np.all(h / leverage_scores(A) < 2) and np.all(h / leverage_scores(A) > 0.5))
    True
    """
    A = check_embeddings(A, name="A")
    n, d = A.shape
    rng = check_random_state(seed)
    m = min(n, 20 * d) if sketch_size is None else check_positive_int(sketch_size, "sketch_size")
    if m < d:
        logger.warning("sketch_size=%d < d=%d: the scores will be poor", m, d)
    if sketch == "countsketch":
        SA = _count_sketch(A, m, rng)
    elif sketch == "srht":
        SA = _trig_sketch(A, min(m, n), rng)
    else:
        raise ValueError(f"sketch must be 'countsketch' or 'srht'; got {sketch!r}.")
    rtol = _default_rtol(*SA.shape) if rtol is None else float(rtol)
    R = np.linalg.qr(SA, mode="r")
    diag = np.abs(np.diag(R))
    if R.shape[0] == d and diag.max() > 0 and diag.min() > rtol * diag.max():
        M = linalg.solve_triangular(R, np.eye(d), lower=False, check_finite=False)
    else:  # rank-deficient sketch: the pseudo-inverse through the SVD, on the range only
        _, s, Vt = np.linalg.svd(SA, full_matrices=False)
        r = int(np.count_nonzero(s > rtol * s[0])) if s.size and s[0] > 0 else 0
        M = Vt[:r].T / s[:r]
    r = M.shape[1]
    if jl_dim == "auto":
        t = math.ceil(8 * math.log(max(n, 2)))
        jl = t if 4 * t <= r else None
    elif jl_dim is None:
        jl = None
    else:
        jl = check_positive_int(jl_dim, "jl_dim")
        jl = jl if jl < r else None
    if jl is not None:
        M = M @ (rng.standard_normal((r, jl)) / math.sqrt(jl))
    # the last pass in float32: an approximation anyway, and twice the GEMM speed
    return np.minimum(_row_norms_sq(A, M, dtype=np.float32), 1.0)


def leverage_sample(A, size: int, *, method: str = "exact", replace: bool = True, seed=None,
                    scores=None, exclude=None, **score_params) -> Selection:
    """Sample rows of A with probability proportional to their leverage scores.

    Parameters
    ----------
    A : array-like of shape (n, d)
    size : int
        s, the number of draws (``replace=True``) or of distinct rows.
    method : {"exact", "sketched"}, default="exact"
        :func:`leverage_scores` or :func:`sketched_leverage_scores`.
    replace : bool, default=True
        i.i.d. draws with weights ``1/(s p)``, or distinct rows with inclusion probabilities
        ``min(1, c p)`` and weights ``1/pi``.
    seed : None, int or numpy.random.Generator
    scores : array-like of shape (n,), optional
        Precomputed leverage scores (then ``method`` only names the selection).
    exclude : array-like of int, optional
        Rows that must not be drawn (e.g. the ones already labelled). The scores are those of
        the whole of A; the excluded rows get probability 0 and the others share the mass
        (the weights then estimate totals over the rows not excluded).
    **score_params
        Passed to the score function (``sketch``, ``sketch_size``, ``rtol``...).

    Returns
    -------
    Selection
        ``method`` is "leverage" or "leverage-sketched"; no oracle queries.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).normal(size=(100, 3))
    >>> sel = leverage_sample(A, 10, seed=0)
    >>> sel.indices.shape, sel.method
    ((10,), 'leverage')
    """
    rng = check_random_state(seed)
    A = check_embeddings(A, name="A")
    n = A.shape[0]
    rows, pool, size = selectable_rows(n, exclude, size, replace=replace, verb="draw")
    if method not in ("exact", "sketched"):
        raise ValueError(f"method must be 'exact' or 'sketched'; got {method!r}.")
    if scores is None:
        if method == "exact":
            h = leverage_scores(A, **score_params)
        else:
            h = sketched_leverage_scores(A, seed=rng, **score_params)
    else:
        h = np.asarray(scores, dtype=np.float64).reshape(-1)
        if h.shape[0] != n:
            raise ValueError(f"scores must have one entry per row of A ({n}); got {h.shape[0]}.")
        if not np.all(np.isfinite(h)) or np.any(h < 0):
            raise ValueError("scores must be finite and >= 0.")
    total = float(h.sum())
    if not total > 0:
        raise ValueError("all leverage scores are 0 (A is zero); nothing to sample.")
    if rows is None:
        p = h / total
        idx, prob, weights = draw_sample(p, size, replace, rng)
    else:
        p = np.zeros(n)
        p[rows] = h[rows]
        kept = float(p.sum())
        if not kept > 0:  # every row left has score 0: uniform over them
            p[rows] = 1.0
            kept = float(pool)
        p /= kept
        if replace:
            idx, prob, weights = draw_sample(p, size, replace, rng)
        else:
            eligible = np.zeros(n, dtype=bool)
            eligible[rows] = True
            pi = inclusion_probabilities(p, size, eligible)
            idx = draw_without_replacement(pi, rng)
            prob = pi[idx]
            weights = 1.0 / prob
    name = "leverage" if method == "exact" else "leverage-sketched"
    return Selection(indices=idx, weights=weights, probabilities=prob, n=n, replace=replace,
                     method=name, params={"method": method, "size": int(size),
                                          "score_total": total, "n_excluded": n - pool})
