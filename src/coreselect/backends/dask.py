"""Dask backend (``pip install coreselect[dask]``): pools spread over a Dask cluster.

:meth:`coreselect.SensitivitySampler.fit` and :func:`coreselect.sensitivity_sample` send a
``dask.array.Array`` here. The steps follow the in-memory path exactly:

1. the fitting sample (the same rows as the in-memory path draws for the same seed) is
   gathered from the partitions and the (k, z)-clustering is fitted on the client, so the
   centers are those of the in-memory path;
2. the centers are put in the graph once and every block is assigned by ``map_blocks``
   (labels and ``v(e)`` stay on the workers, persisted); one small reduction brings back
   each block's per-center row counts and sum of ``v``, which give Phi and, once the oracle
   has answered on the client, every block's mass ``sum_j count[b, j] l_j + lam V_b``;
3. ``sample`` allocates the ``s`` draws to the blocks by one multinomial over the block
   masses and draws inside each block on its worker with its own seed: i.i.d. draws from
   exactly the in-memory distribution ``p_e``. The probabilities are those of the in-memory
   path (equal up to the rounding of sums taken in another order).

Whatever scheduler is active is used: the threaded one by default, or a
``distributed.Client`` (see ``docs/dask.md`` for running on a real cluster).
"""

from __future__ import annotations

import logging

import numpy as np

from .._optional import require
from .._validation import check_n_clusters, check_random_state, check_z
from ..assign import assign as _np_assign
from ..outofcore import (
    OutOfCoreState,
    ShardedArray,
    _check_finite_block,
    _set_fitted,
    fit_centers_on_sample,
    fit_rows,
)

__all__ = ["DaskBackend", "fit_sampler", "from_npy_shards", "import_dask", "DaskState"]

logger = logging.getLogger(__name__)


def import_dask():
    """Import dask.array, or say how to install it."""
    da = require("dask.array", "dask", "the Dask backend")
    return require("dask", "dask", "the Dask backend"), da


def from_npy_shards(paths, *, chunk_rows: int | None = None):
    """A Dask array over ``.npy`` shards, read by plain file reads on the workers.

    Only the file names travel in the graph (not the data, as a pickled memmap would).

    Parameters
    ----------
    paths : sequence of str or path
        The shards, concatenated in order (see :class:`coreselect.outofcore.ShardedArray`).
    chunk_rows : int, optional
        Rows per block; by default about 128 MiB of rows.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.ones((10, 2), np.float32))
    >>> x = from_npy_shards([path], chunk_rows=4)
    >>> x.chunks[0], float(x.sum().compute())
    ((4, 4, 2), 20.0)
    """
    _, da = import_dask()
    pool = ShardedArray(paths)
    n, d = pool.shape
    if chunk_rows is None:
        chunk_rows = max(1, (128 * 2**20) // max(1, d * pool.dtype.itemsize))
    X = da.from_array(pool, chunks=(int(chunk_rows), d), asarray=True,
                      meta=np.empty((0, d), dtype=pool.dtype))
    _SHARD_POOLS[X.name] = pool  # lets the fit read its sample rows alone (see _gather_rows)
    return X


# Dask arrays made by from_npy_shards, by name: their sample rows can be read one by one.
_SHARD_POOLS: dict[str, ShardedArray] = {}


def _take_rows(pool: ShardedArray, rows: np.ndarray) -> np.ndarray:
    return pool.take(rows)


def _gather_rows(X, rows: np.ndarray) -> np.ndarray:
    """``X[rows]`` on the client. For arrays from :func:`from_npy_shards`, tasks on the workers
    read just those rows; for any other Dask array each block holding a row is computed."""
    dask, _ = import_dask()
    pool = _SHARD_POOLS.get(X.name)
    if pool is None or pool.shape != X.shape:
        return np.asarray(X[rows].compute())
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
    cuts = np.searchsorted(rows, starts)
    tasks = [dask.delayed(_take_rows)(pool, rows[a:b])
             for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
    return np.concatenate(dask.compute(*tasks))


def _assign_block(xb, centers, center_rows, z, backend, block_info=None):
    """Labels and v of one block as an (m, 2) float64 array (labels exact below 2**53)."""
    start = block_info[0]["array-location"][0][0] if block_info else 0
    xb = np.asarray(xb)
    if xb.dtype.kind != "f":
        xb = xb.astype(np.float64)
    _check_finite_block(xb, np.arange(start, start + xb.shape[0]), "X")
    if backend is None or backend == "numpy":
        lab, v = _np_assign(xb, centers, z=z)
    else:
        from . import get_backend

        lab, v = get_backend(backend).assign(xb, centers, z=z)
    lo, hi = np.searchsorted(center_rows, [start, start + xb.shape[0]])
    if hi > lo:  # a center's own row: its own label, distance exactly 0
        own = center_rows[lo:hi] - start
        lab[own] = np.arange(lo, hi)
        v[own] = 0.0
    out = np.empty((xb.shape[0], 2))
    out[:, 0] = lab
    out[:, 1] = v
    return out


def _block_counts(out, k):
    lab = out[:, 0].astype(np.int64)
    res = np.empty((1, k + 1))
    res[0, :k] = np.bincount(lab, minlength=k)
    res[0, k] = out[:, 1].sum()
    return res


def _block_probabilities(out, losses, lam, total, mix, n):
    p = losses[out[:, 0].astype(np.int64)] + lam * out[:, 1]
    p /= total
    if mix:
        p *= 1.0 - mix
        p += mix / n
    return p


def _draw_block(out, start, count, seed, losses, lam, total, mix, n):
    """``count`` i.i.d. draws inside one block, proportional to the block's p."""
    p = _block_probabilities(np.asarray(out), losses, lam, total, mix, n)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(p)
    pos = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    pos = np.minimum(pos, p.shape[0] - 1)
    return start + pos, p[pos], np.asarray(out)[pos, 0].astype(np.int64)


class DaskState(OutOfCoreState):
    """What the Dask fit keeps: the persisted (labels, v) blocks and the block counts."""

    kind = "dask"

    def __init__(self, out, chunk_starts, chunk_counts, chunk_v):
        self.out = out  # persisted (n, 2) Dask array: label, v
        self.chunk_starts = chunk_starts
        self.chunk_counts = chunk_counts
        self.chunk_v = chunk_v
        self.n = int(chunk_starts[-1])

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.asarray(self.out[start:stop].compute())
        return out[:, 0].astype(np.int64), out[:, 1]

    def take_labels(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows)
        got = np.empty(rows.shape[0], dtype=np.int64)
        got[order] = np.asarray(self.out[rows[order], 0].compute()).astype(np.int64)
        return got

    def probabilities(self, losses: np.ndarray, lam: float, mix: float = 0.0) -> np.ndarray:
        """Every row's probability, gathered on the client (8 bytes a row)."""
        total = float(self.chunk_masses(losses, lam).sum())
        if not total > 0:
            return np.full(self.n, 1.0 / self.n)
        p = self.out.map_blocks(_block_probabilities, losses, lam, total, mix, self.n,
                                drop_axis=1, dtype=np.float64)
        return np.asarray(p.compute())

    def draw_with_replacement(self, losses, lam, size, rng, mix=0.0):
        """One multinomial over the block masses, then draws inside each block."""
        dask, _ = import_dask()
        masses = self.chunk_masses(losses, lam)
        total = float(masses.sum())
        if not np.isfinite(total):
            raise ValueError("the sampling mass is not finite; are the losses or distances huge?")
        if not total > 0:
            import warnings

            warnings.warn(
                "all query losses are 0 and all points coincide with their centers (total mass "
                "0): falling back to uniform sampling.", RuntimeWarning, stacklevel=4)
            lam, mix, losses, total = 0.0, 1.0, np.zeros_like(losses), 1.0
            shares = np.diff(self.chunk_starts) / self.n
        else:
            shares = masses / total
            if mix:
                shares = (1.0 - mix) * shares + mix * np.diff(self.chunk_starts) / self.n
        shares = np.clip(shares, 0.0, None)
        counts = rng.multinomial(size, shares / shares.sum())
        seeds = rng.integers(0, 2**63 - 1, size=counts.shape[0])
        blocks = self.out.to_delayed().ravel()
        tasks = [dask.delayed(_draw_block)(blocks[b], int(self.chunk_starts[b]), int(counts[b]),
                                           int(seeds[b]), losses, lam, total, mix, self.n)
                 for b in np.flatnonzero(counts)]
        parts = dask.compute(*tasks)
        idx = np.concatenate([q[0] for q in parts]).astype(np.int64)
        prob = np.concatenate([q[1] for q in parts])
        labs = np.concatenate([q[2] for q in parts])
        order = rng.permutation(size)  # i.i.d. draws come in no particular order
        return idx[order], prob[order], labs[order]


def _as_rows_array(X):
    _, da = import_dask()
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of shape (n_samples, n_features); got a "
                         f"{X.ndim}-D Dask array of shape {X.shape}.")
    if any(np.isnan(c) for dim in X.chunks for c in dim):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first.")
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(f"X has shape {X.shape}; at least 1 row and 1 column are required.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold numbers (bool, int or float); got dtype {X.dtype}.")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def fit_sampler(sampler, X) -> None:
    """Fit ``sampler`` (a :class:`coreselect.SensitivitySampler`) on a Dask array ``X``."""
    dask, _ = import_dask()
    X = _as_rows_array(X)
    n, d = X.shape
    k = check_n_clusters(sampler.n_clusters, n)
    z = check_z(sampler.z)
    rng = sampler._rng = check_random_state(sampler.seed)
    rows = fit_rows(n, k, sampler.fit_sample_size, rng)
    xs = np.asarray(_gather_rows(X, rows), dtype=np.float64)  # gathered from the partitions
    _check_finite_block(xs, rows, "X")
    cl, center_rows, ccoords = fit_centers_on_sample(
        xs, rows, k, z=z, rng=rng, max_iter=sampler.max_iter, chunk_size=sampler.chunk_size,
        backend=sampler.backend, progress=sampler.progress)
    del xs
    kc = center_rows.shape[0]
    centers = dask.delayed(ccoords, pure=True)  # one copy in the graph, sent to each worker
    out = X.map_blocks(_assign_block, centers, center_rows, z, sampler.backend,
                       chunks=(X.chunks[0], (2,)), dtype=np.float64)
    (out,) = dask.persist(out)
    agg = out.map_blocks(_block_counts, kc, chunks=((1,) * out.numblocks[0], (kc + 1,)),
                         dtype=np.float64).compute()
    counts = agg[:, :kc].astype(np.int64)
    vsum = agg[:, kc]
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    from ..clustering import Clustering

    labels = out[:, 0].astype(np.int64)
    dist = out[:, 1]
    clustering = Clustering(
        center_indices=center_rows, labels=labels, distances=dist, cost=float(vsum.sum()),
        cluster_sizes=counts.sum(axis=0).astype(np.int64), fitted_centers=cl.fitted_centers,
        z=float(z), fit_sample_size=int(rows.shape[0]), n_iter=int(cl.n_iter))
    logger.debug("dask fit: n=%d d=%d k=%d blocks=%d", n, d, kc, out.numblocks[0])
    _set_fitted(sampler, clustering, DaskState(out, starts, counts, vsum), (n, d), ccoords)


class DaskBackend:
    """The assignment contract on Dask: numpy or Dask rows in, numpy (labels, v) out.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    >>> labels, dist = DaskBackend().assign(X, np.array([[0.0, 0.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 0, 1], [0.0, 1.0, 0.0])
    """

    name = "dask"

    def __init__(self):
        import_dask()

    def assign(self, X, centers, *, z: float = 2.0, chunk_size: int | None = None,
               progress=False) -> tuple[np.ndarray, np.ndarray]:
        dask, da = import_dask()
        if not hasattr(X, "__dask_graph__"):
            rows = int(chunk_size) if chunk_size else max(1, (64 * 2**20) // (8 * X.shape[1]))
            X = da.from_array(np.asarray(X), chunks=(rows, X.shape[1]))
        X = _as_rows_array(X)
        c = np.ascontiguousarray(centers, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != X.shape[1]:
            raise ValueError(f"centers must have shape (k, {X.shape[1]}); got {c.shape}.")
        if c.shape[0] == 0:
            raise ValueError("centers is empty; at least one center is required.")
        out = X.map_blocks(_assign_block, dask.delayed(c, pure=True), np.empty(0, np.int64),
                           float(z), None, chunks=(X.chunks[0], (2,)),
                           dtype=np.float64).compute()
        return out[:, 0].astype(np.int64), out[:, 1].copy()
