"""Issue 9 benchmark: backends, out-of-core pools and Dask, as ratios measured in one run.

Prints, on a synthetic Gaussian mixture (float32, d=128, k=1000 unless ``--k``, s=10,000):
  [1M]   n = 1,000,000 in memory: the floor (one chunked float32 GEMM nearest-center pass),
         ``sensitivity_sample`` with each backend (numpy, faiss, torch on CPU, auto), and the
         pipelines users would write instead: faiss k-means (20 iterations) + search, sklearn
         MiniBatchKMeans, and (``--kmeans``, about 3 minutes) sklearn KMeans; each one then
         snaps, asks the oracle at the k centers and samples. Target: ours <= 3x the floor.
  [20M]  n = 20,000,000 memory-mapped (10 GB written under ``--dir``, deleted at the end):
         time of the out-of-core path (fresh process, ``memory_limit``) and its peak RSS,
         against the floor for the same n. Targets: <= 4x the floor, peak RSS <= 1.5 GB.
  [dask] the same file as shards on ``LocalCluster(n_workers=2, threads_per_worker=1)``:
         time against the single-process out-of-core time, and whether the probabilities
         are the same. Target: <= 2x.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_scale.py``
(``--quick``: 200k / 2M rows; ``--skip 20m dask``; ``--n-big 5000000`` for a smaller file;
``--k 5000`` for issue 16's large-k check of the out-of-core and Dask paths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Timer, gaussian_mixture, machine_header  # noqa: E402
from bench_core import floor_pass, oracle_for  # noqa: E402

import coreselect as cs  # noqa: E402
from coreselect.assign import assign  # noqa: E402
from coreselect.sensitivity import draw_with_replacement, sensitivity_probabilities  # noqa: E402


def _snap_oracle_sample(X, centers, oracle, s: int) -> None:
    """What a user does after any clustering: snap, ask the oracle, assign, sample."""
    snap = np.unique(assign(np.asarray(centers, dtype=np.float64), X)[0])
    labels, v = assign(X, np.asarray(X[snap], dtype=np.float64))
    q = oracle(snap)
    lh = q[labels]
    p = sensitivity_probabilities(lh, v, float(lh.sum() / v.sum()))
    draw_with_replacement(p, s, np.random.default_rng(0))


def section_1m(n: int, d: int, k: int, s: int, with_kmeans: bool) -> list[tuple[str, float]]:
    X, _ = gaussian_mixture(n, d, k, seed=0)
    oracle = oracle_for(X)
    C = X[np.random.default_rng(2).choice(n, k, replace=False)]
    floor_pass(X[:50_000], C)  # warm up BLAS
    rows = []
    with Timer() as t:
        floor_pass(X, C)
    rows.append(("floor: one chunked GEMM assignment pass", t.seconds))
    backends = ["numpy", "faiss", "torch", "auto"]
    for be in backends:
        try:
            if be == "torch":
                import torch  # noqa: F401
            elif be == "faiss":
                import faiss  # noqa: F401
        except ImportError:
            rows.append((f"ours, backend={be} (not installed)", float("nan")))
            continue
        with Timer() as t:
            cs.sensitivity_sample(X, oracle, s, n_clusters=k, seed=0, backend=be)
        label = f"ours, backend={be}"
        if be == "auto":
            from coreselect.backends import get_backend

            label += f" (chose {get_backend('auto').choose(k, d).name})"
        rows.append((label, t.seconds))
    try:
        from coreselect.backends.faiss import FaissBackend, kmeans

        with Timer() as t:
            centers = kmeans(X, k, n_iter=20, seed=0)
            labels, _ = FaissBackend().assign(X, centers)
            _snap_oracle_sample(X, centers, oracle, s)
        rows.append(("faiss k-means (20 it.) + search, snap, sample", t.seconds))
    except ImportError:
        rows.append(("faiss k-means (not installed)", float("nan")))
    from sklearn.cluster import KMeans, MiniBatchKMeans

    with Timer() as t:
        mb = MiniBatchKMeans(k, batch_size=4096, n_init=1, random_state=0).fit(X)
        _snap_oracle_sample(X, mb.cluster_centers_, oracle, s)
    rows.append(("sklearn MiniBatchKMeans + snap, sample", t.seconds))
    if with_kmeans:
        with Timer() as t:
            km = KMeans(k, n_init=1, random_state=0).fit(X)
            _snap_oracle_sample(X, km.cluster_centers_, oracle, s)
        rows.append(("sklearn KMeans(n_init=1) + snap, sample", t.seconds))
    return rows


def write_big(path: str, n: int, d: int, k: int, chunk: int = 500_000) -> None:
    """An (n, d) float32 .npy written chunk by chunk (never held in memory)."""
    rng = np.random.default_rng(7)
    means = rng.normal(0.0, 4.0, size=(k, d)).astype(np.float32)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (n, d)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, header)
        for start in range(0, n, chunk):
            m = min(n, start + chunk) - start
            block = rng.standard_normal((m, d), dtype=np.float32)
            block += means[rng.integers(k, size=m)]
            fh.write(block.tobytes())


def vm_hwm_mb() -> float:
    """Peak resident set of this process (VmHWM; ru_maxrss can carry the parent's over)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ooc(path: str, k: int, s: int, limit: str) -> None:
    """Fresh process: select from the memory-mapped file; print time and peak RSS."""
    from coreselect.pools import open_pool

    base = vm_hwm_mb()
    X = np.load(path, mmap_mode="r")
    oracle = oracle_for(open_pool(X))
    t0 = time.perf_counter()
    sampler = cs.SensitivitySampler(k, seed=0, memory_limit=limit).fit(X)
    t_fit = time.perf_counter() - t0
    sel = sampler.sample(oracle(sampler.query_indices_), s, seed=0)
    t_all = time.perf_counter() - t0
    rows = sampler.state_.rows
    print(json.dumps({"fit_s": t_fit, "total_s": t_all, "peak_mb": vm_hwm_mb(),
                      "start_mb": base,
                      "plan": f"{type(rows).__name__}, {rows.n_blocks} blocks",
                      "query": sampler.query_indices_.tolist(),
                      "sel_idx": sel.indices[:1000].tolist(),
                      "sel_p": sel.probabilities[:1000].tolist()}))


def child_floor(path: str, k: int, with_file: bool) -> None:
    """Fresh process: the floor pass over 1M rows in RAM (x n / 1M) and, if asked, over the
    whole file read in chunks."""
    from coreselect.pools import open_pool

    pool = open_pool(path)
    n = pool.shape[0]
    C = pool[np.sort(np.random.default_rng(2).choice(n, k, replace=False))]
    x1 = pool[: min(n, 1_000_000)]
    floor_pass(x1[:50_000], C)
    t0 = time.perf_counter()
    floor_pass(x1, C)
    t_mem = (time.perf_counter() - t0) * n / x1.shape[0]
    del x1
    t_file = float("nan")
    if with_file:
        t0 = time.perf_counter()
        chunk = 262_144
        buf = np.empty((chunk, pool.shape[1]), dtype=pool.dtype)
        for start in range(0, n, chunk):
            floor_pass(pool.read(start, start + chunk, out=buf), C)
        t_file = time.perf_counter() - t0
    print(json.dumps({"floor_mem_s": t_mem, "floor_file_s": t_file}))


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_dask(path: str, k: int, s: int) -> dict:
    from distributed import Client, LocalCluster

    from coreselect.pools import open_pool
    from coreselect.pools.dask import from_npy_shards

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        t_start = time.perf_counter() - t0
        X = from_npy_shards([path], chunk_rows=500_000)
        oracle_pool = open_pool(path)
        oracle = oracle_for(oracle_pool)
        t0 = time.perf_counter()
        sampler = cs.SensitivitySampler(k, seed=0).fit(X)
        t_fit = time.perf_counter() - t0
        sel = sampler.sample(oracle(sampler.query_indices_), s, seed=0)
        t_all = time.perf_counter() - t0
        cost = sampler.cost_
    return {"start_s": t_start, "fit_s": t_fit, "total_s": t_all, "cost": cost,
            "query": sampler.query_indices_.tolist(), "sel_idx": sel.indices[:1000].tolist(),
            "sel_p": sel.probabilities[:1000].tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--kmeans", action="store_true", help="also run sklearn KMeans (minutes)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["1m", "20m", "dask"])
    ap.add_argument("--n-big", type=int, default=None, help="rows of the memory-mapped pool")
    ap.add_argument("--memory-limit", default="1.2GB")
    ap.add_argument("--k", type=int, default=1000, help="centers (default 1000)")
    ap.add_argument("--dir", default=None, help="where to write the big file (default /tmp)")
    ap.add_argument("--child-ooc", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--file-floor", action="store_true",
                    help="also time the floor pass reading the whole file (one more pass)")
    ap.add_argument("--child-floor", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_ooc:
        p, k, s, lim = args.child_ooc
        child_ooc(p, int(k), int(s), lim)
        return 0
    if args.child_floor:
        child_floor(args.child_floor[0], int(args.child_floor[1]), args.child_floor[2] == "1")
        return 0
    d, k, s = 128, args.k, 10_000
    n1 = 200_000 if args.quick else 1_000_000
    n_big = args.n_big or (2_000_000 if args.quick else 20_000_000)
    print(machine_header())
    print(f"load average at the start: {os.getloadavg()}")
    if "1m" not in args.skip:
        rows = section_1m(n1, d, k, s, args.kmeans)
        floor = rows[0][1]
        print(f"\n[1M] n={n1:,} d={d} k={k} s={s:,}, in memory (float32)")
        print(f"{'pipeline':58s} {'seconds':>8s} {'x floor':>8s}")
        for name, sec in rows:
            print(f"{name:58s} {sec:8.2f} {sec / floor:8.2f}")
        print(f"load average: {os.getloadavg()}")
    if "20m" in args.skip and "dask" in args.skip:
        return 0
    tmp = tempfile.mkdtemp(prefix="coreselect-bench-", dir=args.dir)
    try:
        path = os.path.join(tmp, "pool.npy")
        with Timer() as t:
            write_big(path, n_big, d, k)
        size_gb = os.path.getsize(path) / 1e9
        print(f"\nwrote {n_big:,} x {d} float32 ({size_gb:.1f} GB) in {t.seconds:.0f}s; "
              f"load {os.getloadavg()}")
        ooc = None
        if "20m" not in args.skip:
            fl = _child(["--child-floor", path, str(k), "1" if args.file_floor else "0"])
            ooc = _child(["--child-ooc", path, str(k), str(s), args.memory_limit])
            print(f"\n[memmap] n={n_big:,} memory-mapped, memory_limit={args.memory_limit} "
                  f"({ooc['plan']})")
            print(f"floor, compute only (1M rows in RAM, x n/1M):  {fl['floor_mem_s']:8.2f}s")
            line = (f"ours out-of-core (fit {ooc['fit_s']:.1f}s):              "
                    f"{ooc['total_s']:8.2f}s = {ooc['total_s'] / fl['floor_mem_s']:.2f}x the "
                    "compute floor")
            if args.file_floor:
                print(f"floor, reading the file in chunks:            "
                      f"{fl['floor_file_s']:8.2f}s")
                line += f", {ooc['total_s'] / fl['floor_file_s']:.2f}x the file floor"
            print(line + " (target <= 4)")
            print(f"peak RSS (VmHWM) of the selecting process: {ooc['peak_mb']:.0f} MB "
                  f"(interpreter + imports at start {ooc['start_mb']:.0f} MB; target <= 1536)")
            print(f"load average: {os.getloadavg()}")
        if "dask" not in args.skip:
            r = section_dask(path, k, s)
            line = (f"\n[dask] LocalCluster(n_workers=2, threads_per_worker=1), blocks of 500k "
                    f"rows: start {r['start_s']:.1f}s, fit {r['fit_s']:.1f}s, total "
                    f"{r['total_s']:.2f}s")
            if ooc is not None:
                same_q = r["query"] == ooc["query"]
                same_i = r["sel_idx"] == ooc["sel_idx"]
                rel = float(np.max(np.abs(np.array(r["sel_p"]) / np.array(ooc["sel_p"]) - 1)))
                line += (f" = {r['total_s'] / ooc['total_s']:.2f}x the single-process "
                         f"out-of-core time (target <= 2); same centers as out-of-core: "
                         f"{same_q}; same first 1,000 draws: {same_i}, their probabilities' "
                         f"largest relative difference {rel:.1e}")
            print(line)
            print(f"load average: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
