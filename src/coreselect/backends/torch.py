"""PyTorch backend (``pip install coreselect[torch]``): assignment and Lloyd steps on a device.

The nearest center comes from a float32 matrix product ``-2 x c^T + ||c||^2`` (``addmm``) and
an argmin on the device ("cuda" when available, else the CPU); the distance to the chosen
center is recomputed in float64 from the difference vector, as the numpy reference does.
Rows travel to the device in chunks sized to its free memory, so the pool never has to fit
on the device. :func:`lloyd` runs whole k-means iterations on the device (used by
``benchmarks/gpu_100m.py``).
"""

from __future__ import annotations

import numpy as np

from .._optional import require
from ..kernels import CenterSet, default_chunk_size
from .numpy import BackendBase

__all__ = ["TorchBackend", "import_torch", "assign_tensor", "lloyd", "default_device"]


def import_torch():
    """Import torch, or say how to install it."""
    return require("torch", "torch", "the torch backend")


def default_device() -> str:
    """"cuda" when a GPU is visible to torch, else "cpu"."""
    torch = import_torch()
    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_chunk(torch, device, k: int, d: int, fraction: float = 0.25) -> int:
    """Rows per chunk: a quarter of the device's free memory on a GPU, 32 MiB blocks on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_row = 4 * k + 8 * d + 8 * d + 24  # distance block, row copies, results
        return int(max(1024, min(1 << 22, fraction * free // per_row)))
    return default_chunk_size(k, d)


def assign_tensor(x, c32, cnorm, c64):
    """Labels and squared distances of the rows of the device tensor ``x`` (one chunk).

    ``c32`` (k, d) float32 centers, ``cnorm`` their squared norms, ``c64`` the float64 centers,
    all on the device of ``x``. Returns (labels int64, squared distances float64) tensors.
    """
    torch = import_torch()
    block = torch.addmm(cnorm, x.to(torch.float32), c32.T, beta=1.0, alpha=-2.0)
    lab = torch.argmin(block, dim=1)
    del block
    diff = x.to(torch.float64) - c64.index_select(0, lab)
    sq = torch.einsum("ij,ij->i", diff, diff)
    return lab, sq


class TorchBackend(BackendBase):
    """Nearest-center assignment on a torch device, exact float64 distances.

    Parameters
    ----------
    device : str or torch.device, optional
        Where to compute; "cuda" when available, else "cpu".

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    >>> labels, dist = TorchBackend("cpu").assign(X, np.array([[0.0, 0.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 0, 1], [0.0, 1.0, 0.0])
    """

    name = "torch"

    def __init__(self, device=None):
        self._torch = import_torch()
        self.device = self._torch.device(device if device is not None else default_device())

    def chunk_rows(self, k: int, d: int) -> int:
        return _device_chunk(self._torch, self.device, k, d)

    def nearest(self, x: np.ndarray, centers: CenterSet, scale: float):
        """Labels and exact float64 squared distances of the rows ``x``, on the device."""
        torch = self._torch
        key = ("torch", str(self.device), scale)
        got = centers.extra.get(key)
        if got is None:
            c64 = torch.from_numpy(centers.c64).to(self.device) * scale
            c32 = c64.to(torch.float32)
            got = centers.extra[key] = (c32, (c32 * c32).sum(dim=1), c64)
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            lab, sq = assign_tensor(xt, *got)
            return lab.cpu().numpy(), sq.cpu().numpy()


def lloyd(x, centers, *, n_iter: int = 10, chunk_size: int | None = None):
    """k-means Lloyd iterations on a device tensor ``x`` (n, d) from ``centers`` (k, d).

    Each iteration is one chunked ``addmm`` + argmin pass and an ``index_add_`` of the rows
    into their centers' sums; empty clusters keep their center. Returns (centers float32,
    labels int64, squared distances float32) tensors on the device of ``x``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0], [9.0], [10.0]])
    >>> c, lab, _ = lloyd(x, torch.tensor([[0.0], [1.0]]), n_iter=3)
    >>> c.ravel().tolist(), lab.tolist()
    ([0.5, 9.5], [0, 0, 1, 1])
    """
    torch = import_torch()
    n, d = x.shape
    c = centers.to(device=x.device, dtype=torch.float32).clone()
    k = c.shape[0]
    chunk = int(chunk_size) if chunk_size else _device_chunk(torch, x.device, k, d)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    sq = torch.empty(n, dtype=torch.float32, device=x.device)
    with torch.no_grad():
        for it in range(n_iter + 1):
            cnorm = (c * c).sum(dim=1)
            sums = torch.zeros_like(c)
            counts = torch.zeros(k, dtype=torch.float32, device=x.device)
            for start in range(0, n, chunk):
                xb = x[start:start + chunk].to(torch.float32)
                block = torch.addmm(cnorm, xb, c.T, beta=1.0, alpha=-2.0)
                mn, lab = torch.min(block, dim=1)
                labels[start:start + chunk] = lab
                sq[start:start + chunk] = torch.clamp(mn + (xb * xb).sum(dim=1), min=0.0)
                if it < n_iter:
                    sums.index_add_(0, lab, xb)
                    counts.index_add_(0, lab, torch.ones_like(mn))
            if it == n_iter:
                break
            ok = counts > 0
            c[ok] = sums[ok] / counts[ok, None]
    return c, labels, sq
