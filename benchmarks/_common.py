"""Shared helpers of the benchmark scripts: machine description, timers, synthetic data."""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np


def machine_header() -> str:
    """One paragraph on where the figures were measured: CPU, BLAS, threads, load."""
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
             f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"]
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            lines.append(
                f"{info.get('internal_api')} {info.get('version')} "
                f"kernel={info.get('architecture')} threads={info.get('num_threads')}"
            )
    except ImportError:
        lines.append("threadpoolctl not installed: BLAS unknown")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        if var in os.environ:
            lines.append(f"{var}={os.environ[var]}")
    return "\n".join(lines)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    VmHWM from /proc (Linux) when there: ru_maxrss can carry over the parent's peak into a
    process started by fork and exec.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gaussian_mixture(n: int, d: int, k: int, *, seed: int = 0, spread: float = 1.0,
                     dtype=np.float32, chunk: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """n rows of a k-component Gaussian mixture in float32, made chunk by chunk."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(k, d)).astype(dtype)
    comp = rng.integers(k, size=n)
    X = np.empty((n, d), dtype=dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        X[start:stop] = means[comp[start:stop]]
        X[start:stop] += rng.standard_normal((stop - start, d), dtype=np.float32) * spread
    return X, comp
