"""Image data sets in their official formats: IDX (MNIST, Fashion-MNIST).

Locations are searched in this order: a path the caller gives, an environment variable,
the Debian package path (Fashion-MNIST: ``apt-get install dataset-fashion-mnist``), a cache
directory (``$CORESELECT_DATA`` or ``~/.cache/coreselect``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "load_fashion_mnist", "DatasetNotFoundError"]

_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on this machine; the message says how to get it."""


def _open(path: Path):
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "x.idx")
    >>> with open(p, "wb") as fh:
    ...     _ = fh.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    with _open(Path(path)) as fh:
        head = fh.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
            raise ValueError(f"{path} is not an IDX file (bad magic number {head!r}).")
        dtype = np.dtype(_IDX_TYPES[head[2]])
        ndim = head[3]
        dims = np.frombuffer(fh.read(4 * ndim), dtype=">u4").astype(np.int64)
        if dims.shape[0] != ndim:
            raise ValueError(f"{path}: truncated IDX header.")
        count = int(np.prod(dims)) if ndim else 1
        raw = fh.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(
            f"{path}: truncated IDX data ({len(raw)} bytes for shape {tuple(dims)}, "
            f"expected {count * dtype.itemsize})."
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _cache_dir() -> Path:
    return Path(os.environ.get("CORESELECT_DATA", Path.home() / ".cache" / "coreselect"))


_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx_dir(name: str, path, env: str, extra: list[Path]) -> Path:
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    if os.environ.get(env):
        candidates.append(Path(os.environ[env]))
    candidates += extra
    candidates.append(_cache_dir() / name)
    for cand in candidates:
        if all(_locate(cand, f) for f in _FILES["train"] + _FILES["test"]):
            return cand
    raise DatasetNotFoundError(name, candidates)


def _locate(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        for s in (stem, stem.replace("-idx", ".idx")):
            p = folder / (s + suffix)
            if p.is_file():
                return p
    return None


def _load_idx_set(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img, lab = (_locate(folder, f) for f in _FILES[split])
    images = read_idx(img)
    labels = read_idx(lab).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels.")
    return images, labels


def load_fashion_mnist(path: str | os.PathLike | None = None, *, split: str = "train"):
    """Fashion-MNIST images (uint8, (n, 28, 28)) and labels (int64).

    Looked for in ``path``, ``$FASHION_MNIST_DIR``, the Debian package path
    (``/usr/share/datasets/fashion-mnist``) and the cache directory.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    try:
        folder = _find_idx_dir("fashion-mnist", path, "FASHION_MNIST_DIR", [DEBIAN_FASHION_MNIST])
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(
            "Fashion-MNIST was not found (looked in "
            + ", ".join(str(c) for c in exc.args[1])
            + "). On Debian/Ubuntu: apt-get install dataset-fashion-mnist; or put the four "
            "IDX files in one folder and pass path= or set FASHION_MNIST_DIR."
        ) from None
    return _load_idx_set(folder, split)
