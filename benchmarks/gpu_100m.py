"""Issue 9, GPU machine: select s = 10,000 from n = 100,000,000 x 128 on one GPU.

The library's pipeline with every step on the device (coreselect.backends.torch):
a fitting sample of ``max(20000, 40 k)`` rows; the library's default fit
(``--init scalable``: ``coreselect.seeding.fit_centers``, k-means|| seeding and its steps with
the torch backend, the candidates' reclustering on the host) or the earlier one on the device
(``--init greedy``: greedy D^2 seeding on ``max(4000, 8 k)`` rows, ``--lloyd`` Lloyd steps);
snapping to sample rows, one chunked ``addmm`` + argmin pass over all n rows
with float64 distances to the chosen centers, the oracle at the k centers (a synthetic loss),
the probabilities and s draws by a float64 cumulative sum and ``searchsorted``.

Prints the time of each step, the achieved TFLOP/s of the assignment pass (2 n k d flops)
against the card's peak (FP32, or TF32 with ``--tf32``), and a check against the numpy
reference on 200,000 rows (same centers): the share of equal labels and the largest
relative difference of v.

Run on a GPU machine (about 52 GB of device memory for the pool at n=1e8, d=128 float32;
``--data host`` streams it from pinned host memory instead):

    python benchmarks/gpu_100m.py                      # n=1e8, d=128, k=1000, s=10000
    python benchmarks/gpu_100m.py --tf32               # tensor cores for the GEMM
    python benchmarks/gpu_100m.py --k 10000            # k = 10,000
    python benchmarks/gpu_100m.py --device cpu --n 200000   # a smoke run without a GPU
    python benchmarks/gpu_100m.py --device cpu --n 60000 --k 10000   # the same at k = 10,000
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numpy as np

# Dense peak TFLOP/s (FP32 on CUDA cores, TF32 on tensor cores) of common cards.
PEAKS = {
    "H200": (67.0, 494.7),
    "H100 SXM": (67.0, 494.7),
    "H100 PCIe": (51.0, 378.0),
    "H100": (67.0, 494.7),
    "A100": (19.5, 156.0),
    "L40S": (91.6, 183.0),
    "L4": (30.3, 60.0),
    "A10": (31.2, 62.5),
    "V100": (15.7, 15.7),
    "T4": (8.1, 8.1),
}


def peak_for(name: str) -> tuple[float, float] | None:
    for key in sorted(PEAKS, key=len, reverse=True):
        if key.lower() in name.lower():
            return PEAKS[key]
    return None


def sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_pool(torch, n: int, d: int, k_true: int, device, where: str, seed: int = 0):
    """A float32 Gaussian mixture made chunk by chunk on the device (or in pinned host RAM)."""
    g = torch.Generator(device=device).manual_seed(seed)
    means = torch.randn(k_true, d, generator=g, device=device) * 4.0
    if where == "device":
        X = torch.empty(n, d, dtype=torch.float32, device=device)
    else:
        X = torch.empty(n, d, dtype=torch.float32, pin_memory=device.type == "cuda")
    chunk = 1 << 22
    for start in range(0, n, chunk):
        m = min(n, start + chunk) - start
        comp = torch.randint(k_true, (m,), generator=g, device=device)
        block = torch.randn(m, d, generator=g, device=device).add_(means[comp])
        X[start:start + m].copy_(block)
    return X


def rows_to(torch, X, rows, device):
    idx = rows if X.device == rows.device else rows.to(X.device)
    return X.index_select(0, idx).to(device)


def dz_seeding(torch, xs, k: int, gen, n_candidates: int | None = None):
    """Greedy D^2 seeding on the device (k-means++ with 2 + log k candidates per step)."""
    m = xs.shape[0]
    L = n_candidates or 2 + int(math.log(max(k, 2)))
    xn = (xs * xs).sum(1)
    first = int(torch.randint(m, (1,), generator=gen, device=xs.device))
    chosen = [first]
    mind = torch.clamp(xn - 2 * xs @ xs[first] + xn[first], min=0)
    for _ in range(1, k):
        total = mind.sum()
        if not float(total) > 0:
            break
        cand = torch.multinomial(mind / total, L, replacement=True, generator=gen)
        d = torch.clamp(xn[:, None] - 2 * xs @ xs[cand].T + xn[cand][None, :], min=0)
        d = torch.minimum(d, mind[:, None])
        best = int(torch.argmin(d.sum(0)))
        chosen.append(int(cand[best]))
        mind = d[:, best].contiguous()
    return torch.tensor(chosen, device=xs.device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--s", type=int, default=10_000)
    ap.add_argument("--lloyd", type=int, default=20, help="Lloyd steps on the fitting sample")
    ap.add_argument("--init", choices=["scalable", "greedy"], default="scalable",
                    help="the library's default fit (scalable) or the earlier greedy one")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--data", choices=["device", "host"], default="device",
                    help="keep the pool on the device, or stream it from pinned host memory")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores in the GEMM")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the card's peak")
    ap.add_argument("--chunk", type=int, default=None, help="rows per assignment chunk")
    args = ap.parse_args(argv)

    import torch

    from coreselect.assign import assign as np_assign
    from coreselect.backends.torch import TorchBackend, assign_tensor, lloyd

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    n, d, k, s = args.n, args.d, args.k, args.s
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"python {platform.python_version()}, torch {torch.__version__}, device {device} "
          f"({name}), {os.cpu_count()} CPUs, load {os.getloadavg()}")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        print(f"device memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB; "
              f"pool {n * d * 4 / 2**30:.1f} GiB on the {args.data}")
    else:
        print(f"torch threads: {torch.get_num_threads()}")
    gen = torch.Generator(device=device).manual_seed(1)
    times: dict[str, float] = {}

    def step(label):
        sync(torch, device)
        times[label] = time.perf_counter()

    t0 = time.perf_counter()
    X = make_pool(torch, n, d, k, device, args.data)
    sync(torch, device)
    print(f"made the pool in {time.perf_counter() - t0:.1f}s")

    with torch.no_grad():
        step("start")
        m = min(n, max(20_000, 40 * k))
        rows = torch.sort(torch.randperm(n, generator=gen, device=device)[:m]).values
        xs = rows_to(torch, X, rows, device)
        step("fit rows")
        if args.init == "scalable":
            from coreselect.seeding import fit_centers

            xs64 = xs.cpu().numpy().astype(np.float64)
            pos, _, _ = fit_centers(xs64, min(k, m), z=2.0, rng=np.random.default_rng(1),
                                    backend=TorchBackend(device), max_iter=args.lloyd)
            step("fit")
            center_rows = rows[torch.as_tensor(pos, device=rows.device)]
            del xs64
        else:
            ms = min(m, max(4_000, 8 * k))
            seed_rows = torch.randperm(m, generator=gen, device=device)[:ms]
            init = dz_seeding(torch, xs[seed_rows], k, gen)
            step("seeding")
            centers, _, _ = lloyd(xs, xs[seed_rows[init]], n_iter=args.lloyd)
            step("lloyd")
            # snap every center to its nearest sample row (distinct rows), a block of centers
            # at a time: a (k, m) block would be 16 GB at k = 10,000
            cn = (xs * xs).sum(1)
            per = max(1, (1 << 28) // max(1, m))
            snap = torch.cat([torch.argmin(cn[None, :] - 2 * centers[a:a + per] @ xs.T, dim=1)
                              for a in range(0, centers.shape[0], per)])
            center_rows = torch.unique(rows[snap])
        kc = int(center_rows.shape[0])
        c64 = rows_to(torch, X, center_rows, device).to(torch.float64)
        c32 = c64.to(torch.float32)
        cnorm = (c32 * c32).sum(1)
        step("snap")
        labels = torch.empty(n, dtype=torch.int64, device=device)
        v = torch.empty(n, dtype=torch.float64, device=device)
        chunk = args.chunk or TorchBackend(device).chunk_rows(kc, d)
        for start in range(0, n, chunk):
            xb = X[start:start + chunk]
            if xb.device != device:
                xb = xb.to(device, non_blocking=True)
            lab, sq = assign_tensor(xb, c32, cnorm, c64)
            labels[start:start + chunk] = lab
            v[start:start + chunk] = sq
        # a center's own row: its own label and distance 0
        labels[center_rows] = torch.arange(kc, device=device)
        v[center_rows] = 0.0
        step("assign")
        w = torch.randn(d, generator=gen, device=device)
        losses = torch.log1p(torch.abs(rows_to(torch, X, center_rows, device) @ w))
        losses = losses.to(torch.float64)
        step("oracle")
        sizes = torch.bincount(labels, minlength=kc).to(torch.float64)
        hat_total = float(sizes @ losses)
        cost = float(v.sum())
        lam = hat_total / cost if cost > 0 else 1.0
        p = losses[labels] + lam * v
        p /= p.sum()
        cdf = torch.cumsum(p, 0)
        u = torch.rand(s, generator=gen, device=device, dtype=torch.float64) * cdf[-1]
        idx = torch.clamp(torch.searchsorted(cdf, u, right=True), max=n - 1)
        weights = 1.0 / (s * p[idx])
        step("draw")
        del cdf

    stamps = list(times.items())
    print(f"\nn={n:,} d={d} k={kc} s={s:,} (init {args.init}, steps at most {args.lloyd}, "
          f"chunk {chunk:,} rows, "
          f"TF32 {'on' if args.tf32 else 'off'})")
    print(f"{'step':10s} {'seconds':>9s}")
    for (label, t1), (_, t_prev) in zip(stamps[1:], stamps[:-1], strict=True):
        print(f"{label:10s} {t1 - t_prev:9.3f}")
    total = stamps[-1][1] - stamps[0][1]
    t_assign = times["assign"] - times["snap"]
    print(f"{'total':10s} {total:9.3f}")
    flops = 2.0 * n * kc * d
    achieved = flops / t_assign / 1e12
    peak = (args.peak_tflops,) * 2 if args.peak_tflops else peak_for(name)
    line = f"assignment pass: {flops / 1e12:.1f} TFLOP in {t_assign:.3f}s = {achieved:.1f} TFLOP/s"
    if peak:
        pk = peak[1] if args.tf32 else peak[0]
        line += f" = {100 * achieved / pk:.0f}% of the card's {'TF32' if args.tf32 else 'FP32'} " \
                f"peak ({pk:g} TFLOP/s)"
    print(line)
    whole = 2.0 * n * kc * d / total / 1e12
    print(f"whole selection: {total:.2f}s, {whole:.1f} TFLOP/s counted on the assignment flops; "
          f"sum of weights / n = {float(weights.sum()) / n:.3f}")

    # check against the numpy reference on a slice, same centers
    m_chk = min(n, 200_000)
    xchk = X[:m_chk].cpu().numpy()
    ref_l, ref_v = np_assign(xchk, c64.cpu().numpy())
    got_l = labels[:m_chk].cpu().numpy()
    got_v = v[:m_chk].cpu().numpy()
    own = center_rows[center_rows < m_chk].cpu().numpy()
    ref_l[own] = np.searchsorted(center_rows.cpu().numpy(), own)
    ref_v[own] = 0.0
    same = float(np.mean(got_l == ref_l))
    rel = np.abs(got_v - ref_v) / np.maximum(ref_v, 1e-12)
    print(f"check on {m_chk:,} rows against numpy (same centers): {100 * same:.3f}% equal labels, "
          f"largest relative difference of v {float(rel.max()):.2e} "
          f"(where labels agree: {float(rel[got_l == ref_l].max()):.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
