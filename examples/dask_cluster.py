"""Tutorial (e): the same selection on a Dask cluster.

The pool's embeddings are written as ``.npy`` shards (as an embedding job on many machines
would leave them), opened as one Dask array with ``from_npy_shards`` (only the file names
travel to the workers), and given to ``coreselect.sensitivity_sample`` as they are: the
clustering is fitted on the client from a sample of rows, every block is assigned on its
worker, and the draws are made on the workers. The same call on the array in memory gives the
same clustering and the same sampling distribution; the script checks both and compares the
estimates and the time.

Here the cluster is a ``distributed.LocalCluster`` on this machine; on a real cluster only
the ``Client(...)`` line changes (see the Dask page of the docs). Run
``python examples/dask_cluster.py``, or ``--small`` for a quick check (threads, no worker
processes). ``pip install coreselect[dask]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import coreselect as cs


def make_pool(n: int, d: int, seed: int):
    """A clustered pool of embeddings and a loss that is smooth in them."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, size=(50, d))
    comp = rng.integers(50, size=n)
    X = (means[comp] + rng.normal(size=(n, d))).astype(np.float32)
    loss = np.log1p(np.exp(X[:, 0] + 0.5 * X[:, 1])) + rng.exponential(0.1, size=n)
    return X, loss


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--clusters", type=int, default=500)
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true",
                   help="a quick run: 20,000 rows, 4 shards, threads instead of processes")
    args = p.parse_args(argv)
    if args.small:
        args.rows, args.dim, args.shards = 20_000, 16, 4
        args.clusters, args.size = 50, 500
    return args


def main(argv=None) -> int:
    args = parse(argv)
    try:
        from distributed import Client, LocalCluster

        from coreselect.pools.dask import from_npy_shards
    except ImportError as exc:
        print(f"{exc}: pip install coreselect[dask]", file=sys.stderr)
        return 2
    X, loss = make_pool(args.rows, args.dim, args.seed)
    truth = loss.sum()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, part in enumerate(np.array_split(X, args.shards)):
            paths.append(Path(tmp) / f"part-{i:03d}.npy")
            np.save(paths[-1], part)
        print(f"pool: {args.rows} x {args.dim} float32 in {args.shards} shards; "
              f"k={args.clusters}, s={args.size}")

        # In memory, for comparison.
        t0 = time.perf_counter()
        ref = cs.sensitivity_sample(X, loss.__getitem__, args.size, n_clusters=args.clusters,
                                    seed=args.seed)
        t_mem = time.perf_counter() - t0

        # On the cluster. processes=False keeps the workers in this process (--small).
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               processes=not args.small, dashboard_address=":0")
        with cluster, Client(cluster) as client:
            Xd = from_npy_shards([str(p) for p in paths], chunk_rows=-(-args.rows // args.shards))
            print(f"dask array {Xd.shape} in {Xd.numblocks[0]} blocks on "
                  f"{len(client.scheduler_info()['workers'])} workers")
            t0 = time.perf_counter()
            sel = cs.sensitivity_sample(Xd, loss.__getitem__, args.size,
                                        n_clusters=args.clusters, seed=args.seed)
            t_dask = time.perf_counter() - t0

    same_centers = np.array_equal(np.sort(sel.query_indices), np.sort(ref.query_indices))
    common = np.intersect1d(sel.query_indices, ref.query_indices).size
    print(f"centers in common with the in-memory run: {common} of {ref.n_queries}")
    # The draw must be the in-memory one: same rows, same probabilities (same seed).
    same_rows = np.array_equal(sel.indices, ref.indices)
    max_rel = float(np.max(np.abs(sel.probabilities / ref.probabilities - 1)))
    print(f"design: {sel.params['design']} ({sel.params['design_rule']})")
    print(f"same centers as in memory: {same_centers}; same rows drawn: {same_rows}; largest "
          f"relative difference of the drawn rows' probabilities: {max_rel:.2e}")
    e_mem, e_dask = ref.estimate_total(loss), sel.estimate_total(loss)
    print(f"in memory : {e_mem}  ({t_mem:.2f} s)")
    print(f"dask      : {e_dask}  ({t_dask:.2f} s, cluster start not counted)")
    print(f"truth     : {truth:.6g}")
    return 0 if same_centers and same_rows and max_rel < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
