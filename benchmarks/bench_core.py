"""Issue 2 benchmark: one-round sensitivity sampling against the floor and the paper's pipeline.

Prints, measured in one run on a synthetic Gaussian mixture (float32, d=128, k=1000, s=10,000):
  1. n = 1,000,000: full ``sensitivity_sample`` time / one chunked-GEMM nearest-center pass
     (the floor). Target <= 3.
  2. n = 200,000: speed-up over sklearn ``KMeans(1000, n_init=1)`` + snapping + assignment +
     sampling, and the clustering cost ratio (both snapped to data rows). Targets >= 20x, <= 1.1.
  3. Peak RSS of a fresh process selecting from n = 1,000,000 rows held in memory, against
     the size of X. Target <= size of X + 300 MB.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_core.py``
(``--quick`` for a small version).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Timer, gaussian_mixture, machine_header, peak_rss_mb  # noqa: E402

import coreselect as cs  # noqa: E402
from coreselect.assign import assign, default_chunk_size  # noqa: E402
from coreselect.sensitivity import draw_with_replacement, sensitivity_probabilities  # noqa: E402


def floor_pass(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """The floor: one chunked float32 GEMM pass, argmin only (no exact distances)."""
    ct = np.ascontiguousarray(C.T, dtype=np.float32)
    cn = np.einsum("ij,ij->i", C, C).astype(np.float32)
    chunk = default_chunk_size(C.shape[0], X.shape[1])
    labels = np.empty(X.shape[0], dtype=np.int64)
    buf = np.empty((chunk, C.shape[0]), dtype=np.float32)
    for s in range(0, X.shape[0], chunk):
        e = min(X.shape[0], s + chunk)
        b = np.matmul(X[s:e], ct, out=buf[: e - s])
        b *= -2.0
        b += cn
        labels[s:e] = b.argmin(axis=1)
    return labels


def oracle_for(X: np.ndarray):
    """A cheap loss that depends on the embedding (stands in for a model)."""
    w = np.random.default_rng(1).normal(size=X.shape[1]).astype(np.float32)

    def oracle(idx):
        return np.log1p(np.abs(X[idx] @ w))

    return oracle


def section_floor(n: int, d: int, k: int, s: int) -> dict:
    X, _ = gaussian_mixture(n, d, k, seed=0)
    C = X[np.random.default_rng(2).choice(n, k, replace=False)]
    floor_pass(X[:50_000], C)  # warm up BLAS
    with Timer() as t_floor:
        floor_pass(X, C)
    with Timer() as t_assign:
        assign(X, C)
    with Timer() as t_ours:
        sel = cs.sensitivity_sample(X, oracle_for(X), s, n_clusters=k, seed=0)
    return {"n": n, "floor_s": t_floor.seconds, "assign_s": t_assign.seconds,
            "ours_s": t_ours.seconds, "ratio": t_ours.seconds / t_floor.seconds,
            "queries": sel.n_queries}


def section_sklearn(n: int, d: int, k: int, s: int) -> dict:
    from sklearn.cluster import KMeans

    X, _ = gaussian_mixture(n, d, k, seed=1)
    oracle = oracle_for(X)
    with Timer() as t_ours:
        sampler = cs.SensitivitySampler(k, seed=0).fit(X)
        sel = sampler.sample(oracle(sampler.query_indices_), s, seed=0)
    with Timer() as t_sk:
        km = KMeans(k, n_init=1, random_state=0).fit(X)
        snap = np.unique(assign(km.cluster_centers_, X)[0])  # each center -> nearest row
        labels, v = assign(X, X[snap])
        q = oracle(snap)
        p = sensitivity_probabilities(q[labels], v, float(q[labels].sum() / v.sum()))
        draw_with_replacement(p, s, np.random.default_rng(0))
    return {"n": n, "ours_s": t_ours.seconds, "sklearn_s": t_sk.seconds,
            "speedup": t_sk.seconds / t_ours.seconds, "ours_cost": sampler.cost_,
            "sklearn_cost": float(v.sum()), "cost_ratio": sampler.cost_ / float(v.sum()),
            "sklearn_iter": int(km.n_iter_), "size": sel.size}


def _read_npy_in_place(path: str) -> np.ndarray:
    """Read a .npy file into one array without a second copy (np.load may hold two)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        X = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        view = memoryview(X.reshape(-1).view(np.uint8))
        step = 64 * 2**20
        for start in range(0, len(view), step):
            fh.readinto(view[start:start + step])
    return X


def child_memory(path: str, k: int, s: int) -> None:
    X = _read_npy_in_place(path)  # fully in memory
    base = peak_rss_mb()
    cs.sensitivity_sample(X, oracle_for(X), s, n_clusters=k, seed=0)
    print(json.dumps({"x_mb": X.nbytes / 2**20, "after_load_mb": base, "peak_mb": peak_rss_mb()}))


def section_memory(n: int, d: int, k: int, s: int) -> dict:
    X, _ = gaussian_mixture(n, d, k, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, X)
        del X
        out = subprocess.run([sys.executable, __file__, "--child-memory", path, str(k), str(s)],
                             capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["over_x_mb"] = res["peak_mb"] - res["x_mb"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--child-memory", nargs=3, metavar=("PATH", "K", "S"), help=argparse.SUPPRESS)
    ap.add_argument("--skip", nargs="*", default=[], choices=["floor", "sklearn", "memory"])
    args = ap.parse_args(argv)
    if args.child_memory:
        child_memory(args.child_memory[0], int(args.child_memory[1]), int(args.child_memory[2]))
        return 0
    d, k, s = 128, 1000, 10_000
    n1, n2 = (1_000_000, 200_000) if not args.quick else (100_000, 20_000)
    if args.quick:
        k, s = 100, 1000
    print(machine_header())
    print()
    if "floor" not in args.skip:
        r = section_floor(n1, d, k, s)
        print(f"[floor] n={r['n']:,} d={d} k={k} s={s:,}: floor pass {r['floor_s']:.2f}s, "
              f"assign (exact distances) {r['assign_s']:.2f}s, sensitivity_sample "
              f"{r['ours_s']:.2f}s -> ratio {r['ratio']:.2f} (target <= 3)")
    if "sklearn" not in args.skip:
        r = section_sklearn(n2, d, k, s)
        print(f"[sklearn] n={r['n']:,}: ours {r['ours_s']:.2f}s, KMeans(n_init=1) pipeline "
              f"{r['sklearn_s']:.2f}s ({r['sklearn_iter']} iterations) -> {r['speedup']:.1f}x faster "
              f"(target >= 20); snapped cost ours/sklearn {r['cost_ratio']:.3f} (target <= 1.1)")
    if "memory" not in args.skip:
        r = section_memory(n1, d, k, s)
        print(f"[memory] n={n1:,}: X {r['x_mb']:.0f} MB, RSS after loading X {r['after_load_mb']:.0f} MB, "
              f"peak {r['peak_mb']:.0f} MB -> peak - size(X) = {r['over_x_mb']:.0f} MB (target <= 300)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
