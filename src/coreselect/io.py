"""Files in, files out: embeddings, loss tables and selections; atomic writes; fingerprints.

Embeddings are read from ``.npy`` (memory-mapped, never with pickles), ``.npz`` (one array,
chosen with ``key``), ``.parquet`` (a list column or wide numeric columns; needs pyarrow,
``pip install coreselect[parquet]``) or ``.csv`` (numbers, with or without a header line).
Loss tables are CSV or Parquet files with an ``index`` and a ``loss`` column; every bad row is
reported by its line (CSV) or row (Parquet) number. Outputs are written to a temporary file in
the same folder and renamed into place, so that a run that fails or is killed never leaves a
partial file behind; an existing output is kept unless ``force=True``. Outputs get the
permissions of any new file (``0666`` less the umask), and :func:`check_output` can make sure,
before any work is done, that the folder exists (or is created), is writable and has room.

Errors name the files and this module's parameters (``force=True``, ``key=``,
``columns=``); the command line turns those into its flags.

A *fingerprint* (shape, dtype and a SHA-256 of the values) ties a saved plan or a loss cache to
the embeddings it was computed from.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._optional import require
from ._progress import Progress
from ._validation import check_embeddings, iter_chunks

__all__ = [
    "EMBEDDING_FORMATS",
    "TABLE_FORMATS",
    "load_embeddings",
    "fingerprint",
    "compare_fingerprints",
    "embeddings_summary",
    "read_losses",
    "match_losses",
    "read_table",
    "write_table",
    "atomic_path",
    "check_output",
    "write_selection",
    "read_selection",
]

logger = logging.getLogger(__name__)

EMBEDDING_FORMATS = (".npy", ".npz", ".parquet", ".csv")
TABLE_FORMATS = (".csv", ".parquet")
# Bytes hashed per block by :func:`fingerprint` (and rows scanned per block by the summary).
_HASH_BLOCK_BYTES = 64 * 2**20
_SELECTION_COLUMNS = ("index", "weight", "probability", "center", "cluster_size")
_SELECTION_FORMAT = "coreselect.Selection/1"


def _suffix(path: str | os.PathLike) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _need_pyarrow(what: str):
    return require("pyarrow.parquet", "parquet", what)


# --------------------------------------------------------------------------- outputs
def check_output(path: str | os.PathLike, *, force: bool = False,
                 formats: tuple[str, ...] | None = None, name: str = "output",
                 create: bool = False, room: int = 0) -> str:
    """Check that ``path`` may be written: a known suffix, a folder that exists, no file there.

    Raises ``FileExistsError`` when the file exists and ``force`` is False, ``ValueError``
    for an unknown suffix and ``FileNotFoundError`` when the folder does not exist.
    ``create=True`` creates the folder instead, and checks that it is writable (a file is
    created and removed: ``PermissionError`` otherwise) and that it has ``room`` bytes free
    (``OSError`` ENOSPC otherwise), so that a caller can refuse before paying for a result
    it could not write. Messages name ``path`` as given.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "sel.csv")
    >>> check_output(out, formats=(".csv",)) == out
    True
    """
    path = os.fspath(path)
    if formats is not None and _suffix(path) not in formats:
        raise ValueError(
            f"{name} must end in one of {', '.join(formats)}; got {path!r}."
        )
    folder = os.path.dirname(os.path.abspath(path))
    if create and not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            kind = (PermissionError if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                    else type(exc))
            raise kind(exc.errno, f"{name} {path}: cannot create folder {folder!r} "
                       f"({exc.strerror})") from None
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name}: folder {folder!r} does not exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{name}: {path!r} is a folder; give a file name.")
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} already exists; pass force=True to overwrite it.")
    if create:
        try:
            fd, probe = tempfile.mkstemp(prefix=".coreselect-probe-", dir=folder)
            os.close(fd)
            os.remove(probe)
        except OSError as exc:
            raise PermissionError(exc.errno, f"{name} {path}: cannot write in folder "
                                  f"{folder!r} ({exc.strerror})") from None
        free = shutil.disk_usage(folder).free
        if room and free < room:
            raise OSError(errno.ENOSPC, f"{name} {path}: folder {folder!r} has {free} bytes "
                          f"free; the output needs about {int(room)}")
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_path(out) as tmp:
    ...     with open(tmp, "w") as fh:
    ...         _ = fh.write("done")
    >>> open(out).read()
    'done'
    """
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} already exists; pass force=True to overwrite it.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:  # name the user's file, not the temporary one
        raise type(exc)(exc.errno, f"cannot write {path} ({exc.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from the team
        if os.path.exists(path) and not force:
            raise FileExistsError(f"{path} already exists; pass force=True to overwrite it.")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if exc.filename and os.path.basename(str(exc.filename)).endswith(".tmp"):
            raise type(exc)(exc.errno, f"cannot write {path} ({exc.strerror})") from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else str(value))
    return str(value)


def write_table(path: str | os.PathLike, columns: Mapping[str, Any], *, force: bool = False,
                metadata: Mapping[str, Any] | None = None, fmt: str | None = None,
                atomic: bool = True) -> str:
    """Write equal-length columns to ``.csv`` or ``.parquet`` (by suffix), atomically.

    Floats are written in CSV with Python's shortest round-trip form, so that reading the
    file back gives the same numbers. ``None`` (or an empty string) is an empty cell.
    ``metadata`` (JSON-serialisable) goes into the Parquet schema under ``"coreselect"``;
    CSV files carry none. ``atomic=False`` writes ``path`` directly, in the format ``fmt``
    (``".csv"`` or ``".parquet"``), for a caller that manages its own temporary file.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = write_table(out, {"index": [3, 1], "loss": [0.5, None]})
    >>> open(out).read()
    'index,loss\\n3,0.5\\n1,\\n'
    """
    if atomic:
        path = check_output(path, force=force, formats=TABLE_FORMATS)
        fmt = _suffix(path)
        with atomic_path(path, force=force) as tmp:
            write_table(tmp, columns, metadata=metadata, fmt=fmt, atomic=False)
        return path
    path = os.fspath(path)
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(TABLE_FORMATS)}; got {fmt!r}.")
    names = list(columns)
    lists = []
    for name in names:
        col = columns[name]
        lists.append(col.tolist() if isinstance(col, np.ndarray) else list(col))
    lengths = {len(c) for c in lists}
    if len(lengths) > 1:
        raise ValueError(f"write_table: columns have different lengths {sorted(lengths)}.")
    if fmt == ".csv":
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(names) + "\n")
            rows = zip(*lists, strict=True)
            fh.writelines(
                ",".join("" if v is None else _format_number(v) for v in row) + "\n"
                for row in rows
            )
    else:
        pq = _need_pyarrow("writing .parquet")
        import pyarrow as pa

        arrays = {}
        for name, col, raw in zip(names, lists, (columns[n] for n in names), strict=True):
            if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
                arrays[name] = pa.array(raw)
            else:
                arrays[name] = pa.array(col)
        table = pa.table(arrays)
        if metadata is not None:
            table = table.replace_schema_metadata(
                {b"coreselect": json.dumps(metadata).encode("utf-8")}
            )
        pq.write_table(table, path)
    return path


# --------------------------------------------------------------------------- embeddings
def load_embeddings(path: str | os.PathLike, *, key: str | None = None,
                    columns=None, validate: bool = True, mmap: bool = True) -> np.ndarray:
    """Read an (n, d) embedding matrix from ``.npy``, ``.npz``, ``.parquet`` or ``.csv``.

    Parameters
    ----------
    path : str or path-like
        The file; its suffix says the format.
    key : str, optional
        ``.npz``: the array's name (needed when the file holds several). ``.parquet``: the
        list column, or comma-separated numeric columns (as ``columns``).
    columns : str or sequence of str and int, optional
        ``.csv`` and ``.parquet``: the embedding columns, by name or 0-based position, and
        ranges ``A:B`` of positions (``B`` excluded, as in Python): ``"x0,x1"``, ``"1:"``,
        ``[2, 3, "f7"]``. By default the only list column of a Parquet file, else every
        numeric column. Non-numeric columns are left out, with a warning that names them
        (the same rule for every format); integer columns named like an id, index or label,
        or holding the row numbers, are taken but warned about.
    validate : bool, default=True
        Check the result with :func:`coreselect._validation.check_embeddings` (2-D, numeric,
        at least one row and column; integers cast to float64). Finiteness is left to the
        fit, which scans every row anyway. ``False`` returns the array as stored (for
        ``coreselect info``).
    mmap : bool, default=True
        Open ``.npy`` files, and uncompressed ``.npz`` members (``np.savez``), memory-mapped
        (read-only) instead of reading them whole.

    Returns
    -------
    ndarray of shape (n, d)
        float32 or float64 (a read-only memmap for ``.npy`` files of those dtypes).

    Raises
    ------
    ValueError
        A file that is not what its suffix says, truncated, holding Python objects
        (pickles are never loaded), a missing ``key``, a header without rows...
    FileNotFoundError
        No such file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "X.npy")
    >>> np.save(path, np.eye(3, dtype=np.float32))
    >>> load_embeddings(path).shape
    (3, 3)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; expected an embeddings file.")
    suffix = _suffix(path)
    if columns is not None and suffix not in (".csv", ".parquet"):
        raise ValueError(f"columns= applies to .csv and .parquet files; {path} is "
                         f"{suffix or 'a file without suffix'}"
                         + (" (choose its array with key=)." if suffix == ".npz" else "."))
    if key is not None and columns is not None:
        raise ValueError("give key= or columns=, not both.")
    if key is not None and suffix not in (".npz", ".parquet"):
        raise ValueError(f"key= applies to .npz and .parquet files; {path} is "
                         f"{suffix or 'a file without suffix'} (choose its columns with columns=).")
    if suffix == ".npy":
        X = _load_npy(path, mmap=mmap)
    elif suffix == ".npz":
        X = _load_npz(path, key, mmap=mmap)
    elif suffix == ".parquet":
        X = _load_parquet(path, key if key is not None else columns)
    elif suffix == ".csv":
        X = _load_csv(path, columns)
    else:
        raise ValueError(
            f"{path}: unknown embeddings format {suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(EMBEDDING_FORMATS)}."
        )
    if validate:
        try:
            X = check_embeddings(X, name=os.path.basename(path), check_finite=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return X


def _load_npy(path: str, *, mmap: bool) -> np.ndarray:
    fmt = np.lib.format
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        try:
            version = fmt.read_magic(fh)
        except ValueError:
            fh.seek(0)
            head = fh.read(2)
            what = (" (it looks like a Python pickle; coreselect never loads pickles)"
                    if head[:1] == b"\x80" else "")
            raise ValueError(f"{path} is not a NumPy .npy file{what}.") from None
        try:
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        except ValueError as exc:
            raise ValueError(f"{path}: unreadable .npy header ({exc}).") from None
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{path} holds Python objects (dtype {dtype}), stored as pickles; coreselect never "
            "loads pickles. Save the embeddings as a numeric array."
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        raise ValueError(
            f"{path} is truncated: shape {tuple(shape)} of {dtype} needs {expected} bytes; the "
            f"file has {size}."
        )
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, dtype=dtype)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: could not read the array ({exc}).") from None


def _load_npz(path: str, key: str | None, *, mmap: bool = True) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc}).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a .npy file, not a .npz archive; rename it to .npy.")
    with archive:
        keys = list(archive.files)
        if not keys:
            raise ValueError(f"{path} holds no arrays.")
        if key is None:
            if len(keys) > 1:
                raise ValueError(
                    f"{path} holds {len(keys)} arrays ({', '.join(keys)}); choose one with key=."
                )
            key = keys[0]
        elif key not in keys:
            raise ValueError(
                f"key={key!r} is not in {path}; it holds: {', '.join(keys)}."
            )
        mapped = _memmap_npz_member(path, key + ".npy") if mmap else None
        if mapped is not None:
            return mapped
        try:
            return archive[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            what = ("; it holds Python objects (pickles), which coreselect never loads"
                    if "pickle" in str(exc) else "")
            raise ValueError(f"{path}: could not read array {key!r} ({exc}){what}.") from None


def _memmap_npz_member(path: str, member: str) -> np.ndarray | None:
    """Memory-map an uncompressed member of a ``.npz`` (what ``np.savez`` writes).

    Returns None when the member is compressed (``np.savez_compressed``), holds objects,
    or anything looks unusual; the caller then reads it whole.
    """
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            offset = fh.tell()
        count = int(np.prod(shape, dtype=np.int64))
        if dtype.hasobject or count == 0 or offset - start + count * dtype.itemsize != info.file_size:
            return None
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def _is_list_type(pa, typ) -> bool:
    return pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)


def _load_parquet(path: str, columns) -> np.ndarray:
    pq = _need_pyarrow("reading .parquet")
    import pyarrow as pa

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a readable Parquet file ({exc}).") from None
    names = [c for c in schema.names if not c.startswith("__index_level_")]

    def numeric(c):  # booleans (flags such as is_train) only when chosen
        typ = schema.field(c).type
        return pa.types.is_floating(typ) or pa.types.is_integer(typ)

    if columns is not None:
        wanted = _resolve_columns(columns, names, path)
        lists = [c for c in wanted if _is_list_type(pa, schema.field(c).type)]
        if lists and len(wanted) > 1:
            raise ValueError(f"{path}: column {lists[0]!r} holds lists; choose it alone, or "
                             "only numeric columns.")
    else:
        lists = [c for c in names if _is_list_type(pa, schema.field(c).type)]
        if len(lists) > 1:
            raise ValueError(f"{path} has {len(lists)} list columns ({', '.join(lists)}); "
                             "choose one with columns=.")
        if lists:
            wanted = lists
        else:
            wanted = [c for c in names if numeric(c)]
            _warn_left_out(path, [c for c in names if c not in wanted])
            if not wanted:
                raise ValueError(f"{path} has no list column and no numeric column.")
    try:
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: could not read the table ({exc}).") from None
    if len(wanted) == 1 and _is_list_type(pa, table.schema.field(wanted[0]).type):
        return _list_column_to_matrix(pa, table.column(wanted[0]).combine_chunks(), path,
                                      wanted[0])
    cols = []
    for name in wanted:
        col = table.column(name)
        typ = col.type
        if not (pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ)):
            raise ValueError(f"{path}: column {name!r} is {typ}, not numeric.")
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"{path}: column {name!r} has an empty (null) value at row {row}.")
        cols.append(col.to_numpy())
    if not cols or len(cols[0]) == 0:
        raise ValueError(f"{path} has no rows.")
    _warn_id_like(path, wanted, cols)
    dtype = np.result_type(*[c.dtype for c in cols])
    if dtype.kind != "f":
        dtype = np.float64
    return np.column_stack([c.astype(dtype, copy=False) for c in cols])


def _resolve_columns(spec, names: list[str], path: str) -> list[str]:
    """Column names from ``spec``: names, 0-based positions and ``A:B`` ranges."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
            if item in names:
                out.append(item)
                continue
            m = re.fullmatch(r"(-?\d*):(-?\d*)", item)
            if m:
                a = int(m.group(1)) if m.group(1) else None
                b = int(m.group(2)) if m.group(2) else None
                chosen = names[slice(a, b)]
                if not chosen:
                    raise ValueError(f"{path}: columns {item!r} selects none of its "
                                     f"{len(names)} columns.")
                out.extend(chosen)
                continue
            if re.fullmatch(r"-?\d+", item):
                item = int(item)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -len(names) <= int(item) < len(names):
                raise ValueError(f"{path}: no column at position {int(item)}; it has "
                                 f"{len(names)} (0 to {len(names) - 1}).")
            out.append(names[int(item)])
            continue
        raise ValueError(f"{path}: no column {item!r}; it has: {', '.join(map(str, names))}.")
    if not out:
        raise ValueError(f"{path}: columns {spec!r} selects no column.")
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise ValueError(f"{path}: column {dup[0]!r} is chosen twice.")
    return out


_ID_NAME = re.compile(r"(?i)^(id|idx|index|row|rowid|row_id|key|label|labels|target|class|y|"
                      r"unnamed: ?0|.*[_ ]id)$")


def _warn_left_out(path: str, skipped: list[str]) -> None:
    if skipped:
        logger.warning("%s: leaving out the non-numeric column%s %s (choose the embedding "
                       "columns with columns=)", path, "s" if len(skipped) > 1 else "",
                       ", ".join(repr(c) for c in skipped))


def _warn_id_like(path: str, names: list[str], cols: list[np.ndarray]) -> None:
    """Warn about integer columns that look like an id, an index or a label."""
    for name, col in zip(names, cols, strict=True):
        col = np.asarray(col)
        if col.size == 0 or col.dtype.kind not in "biuf":
            continue
        if col.dtype.kind == "f" and not np.all(np.isfinite(col) & (col == np.round(col))):
            continue
        rownum = bool(col.size > 2 and (np.all(np.diff(col) == 1)) and col[0] in (0, 1))
        if _ID_NAME.match(str(name)) or rownum:
            why = "holds the row numbers" if rownum else "is named like an id, index or label"
            logger.warning("%s: column %r %s but is taken as an embedding dimension; leave it "
                           "out with columns=", path, name, why)


def _list_column_to_matrix(pa, col, path: str, name: str) -> np.ndarray:
    n = len(col)
    if n == 0:
        raise ValueError(f"{path} has no rows.")
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{path}: column {name!r} is empty (null) at row {row}.")
    if pa.types.is_fixed_size_list(col.type):
        d = col.type.list_size
    else:
        offsets = col.offsets.to_numpy()
        lengths = np.diff(offsets)
        d = int(lengths[0])
        bad = np.flatnonzero(lengths != d)
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{path}: column {name!r} holds lists of different lengths: {d} at row 0, "
                f"{int(lengths[row])} at row {row}."
            )
    values = col.flatten()
    if values.null_count:
        pos = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{path}: column {name!r} has an empty (null) value at row {pos // d}.")
    typ = values.type
    if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
        raise ValueError(f"{path}: column {name!r} holds {typ}, not numbers.")
    arr = values.to_numpy()
    return arr.reshape(n, d)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_bad_line(path: str, skip: int, ncols: int, use=None) -> str | None:
    """Find the first line of numbers that does not parse (only called after an error)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.split("#", 1)[0].strip()
            if lineno <= skip or not text:
                continue
            cells = [c.strip() for c in next(csv.reader([text]))]
            if len(cells) != ncols:
                return f"line {lineno} has {len(cells)} fields; expected {ncols}."
            for col, cell in enumerate(cells, start=1):
                if (use is None or col - 1 in use) and not _is_number(cell):
                    return f"line {lineno}, column {col}: {cell!r} is not a number."
    return None


def _load_csv(path: str, columns=None) -> np.ndarray:
    header_lines = 0
    first = None
    second = None
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                if first is None:
                    header_lines += 1
                continue
            if first is None:
                first = stripped
                continue
            second = stripped
            break
    if first is None:
        raise ValueError(f"{path} is empty: no header and no rows.")
    fields = [f.strip() for f in next(csv.reader([first]))]
    has_header = not all(_is_number(f) for f in fields)
    skip = header_lines + (1 if has_header else 0)
    names = fields if has_header else [str(j) for j in range(len(fields))]
    if columns is not None:
        use = [names.index(c) for c in _resolve_columns(columns, names, path)]
    elif has_header and second is not None:
        cells = [c.strip() for c in next(csv.reader([second]))]
        use = [j for j in range(len(fields)) if j >= len(cells) or _is_number(cells[j])]
        _warn_left_out(path, [names[j] for j in range(len(fields)) if j not in use])
        if not use:
            raise ValueError(f"{path} has no numeric column.")
    else:
        use = list(range(len(fields)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            X = np.loadtxt(path, delimiter=",", skiprows=skip, comments="#", ndmin=2,
                           dtype=np.float64, encoding="utf-8-sig", quotechar='"',
                           usecols=use if use != list(range(len(fields))) else None)
    except ValueError as exc:
        raise ValueError(f"{path}: {_csv_bad_line(path, skip, len(fields), use) or exc}") from None
    if X.shape[0] == 0:
        raise ValueError(f"{path} has a header line but no rows of numbers.")
    if has_header and X.shape[1] != len(use):
        raise ValueError(
            f"{path}: the header has {len(fields)} columns but the rows have {X.shape[1]}."
        )
    if has_header:
        _warn_id_like(path, [names[j] for j in use], list(X.T))
    else:
        _warn_id_like(path, list(use), list(X.T))
    return X


def fingerprint(X, *, progress: bool = False) -> dict:
    """Shape, dtype and a SHA-256 of the values of an (n, d) array, read block by block.

    The hash covers the little-endian bytes of the values in C order, so the same numbers in
    the same dtype give the same fingerprint whether the array is in memory, memory-mapped or
    Fortran-ordered; another dtype (float32 vs float64) gives another fingerprint.

    Examples
    --------
    >>> import numpy as np
    >>> fp = fingerprint(np.zeros((2, 3), dtype=np.float32))
    >>> fp["shape"], fp["dtype"], fp["hash"][:7]
    ([2, 3], 'float32', 'sha256:')
    """
    X = np.asarray(X) if not isinstance(X, np.ndarray) else X
    h = hashlib.sha256()
    h.update(f"{X.dtype.name}{list(X.shape)}".encode())
    le = X.dtype.newbyteorder("<")
    n = X.shape[0] if X.ndim else 1
    row_bytes = max(1, X.itemsize * int(np.prod(X.shape[1:], dtype=np.int64)))
    chunk = max(1, _HASH_BLOCK_BYTES // row_bytes)
    bar = Progress(n, "fingerprint", enabled=progress)
    view = X.reshape(1) if X.ndim == 0 else X
    for start, stop in iter_chunks(n, chunk):
        block = np.ascontiguousarray(view[start:stop], dtype=le)
        h.update(memoryview(block).cast("B"))
        bar.update(stop - start)
    bar.close()
    return {"shape": [int(s) for s in X.shape], "dtype": X.dtype.name,
            "hash": "sha256:" + h.hexdigest()}


def compare_fingerprints(expected: Mapping | None, actual: Mapping, *,
                         what: str = "the embeddings") -> str | None:
    """Say how two fingerprints differ (shape, dtype or values); ``None`` when they agree.

    Examples
    --------
    >>> import numpy as np
    >>> a = fingerprint(np.zeros((2, 2)))
    >>> compare_fingerprints(a, fingerprint(np.zeros((2, 2)))) is None
    True
    >>> compare_fingerprints(a, fingerprint(np.ones((3, 2))))
    'the embeddings have shape (3, 2), but the plan was made for shape (2, 2)'
    """
    if not expected:
        return None
    if list(expected.get("shape", [])) != list(actual.get("shape", [])):
        return (f"{what} have shape {tuple(actual['shape'])}, but the plan was made for shape "
                f"{tuple(expected['shape'])}")
    if expected.get("dtype") and expected.get("dtype") != actual.get("dtype"):
        return (f"{what} have dtype {actual['dtype']}, but the plan was made for "
                f"{expected['dtype']}")
    if expected.get("hash") and actual.get("hash") and expected["hash"] != actual["hash"]:
        return (f"{what} have the same shape and dtype as those the plan was made for, but "
                "other values (their SHA-256 differs)")
    return None


def embeddings_summary(X: np.ndarray, *, progress: bool = False) -> dict:
    """Figures about an embedding matrix, scanned block by block (``coreselect info``).

    Returns shape, dtype, bytes, the NaN and inf counts, the rows holding either, and the
    number of duplicate rows (rows equal to an earlier row; rows with NaN are left out).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]])
    >>> s = embeddings_summary(X)
    >>> s["nan"], s["rows_not_finite"], s["duplicate_rows"], s["distinct_rows"]
    (1, 1, 1, 2)
    """
    n, d = X.shape
    n_nan = n_inf = bad_rows = 0
    first_bad = None
    keys = []
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(d, 2))
    chunk = max(1, _HASH_BLOCK_BYTES // max(1, 8 * d))
    bar = Progress(n, "scan", enabled=progress)
    finite_rows = []
    for start, stop in iter_chunks(n, chunk):
        block = np.asarray(X[start:stop], dtype=np.float64)
        isnan = np.isnan(block)
        isinf = np.isinf(block)
        n_nan += int(isnan.sum())
        n_inf += int(isinf.sum())
        rowbad = (isnan | isinf).any(axis=1)
        bad_rows += int(rowbad.sum())
        if first_bad is None and rowbad.any():
            first_bad = start + int(np.flatnonzero(rowbad)[0])
        ok = np.flatnonzero(~rowbad)
        # two random projections: equal rows have equal keys; equal keys are checked exactly
        keys.append(block[ok] @ proj)
        finite_rows.append(ok + start)
        bar.update(stop - start)
    bar.close()
    keys_all = np.concatenate(keys) if keys else np.empty((0, 2))
    rows = np.concatenate(finite_rows) if finite_rows else np.empty(0, dtype=np.int64)
    duplicates = 0
    if rows.size > 1:
        order = np.lexsort((keys_all[:, 1], keys_all[:, 0]))
        sk = keys_all[order]
        same = (sk[1:] == sk[:-1]).all(axis=1)
        shared = np.zeros(order.shape[0], dtype=bool)
        shared[1:] |= same
        shared[:-1] |= same
        if shared.any():
            cand = np.asarray(X[np.sort(rows[order[shared]])], dtype=np.float64)
            distinct = np.unique(cand, axis=0).shape[0]
            duplicates = int(cand.shape[0] - distinct)
    return {
        "shape": [int(n), int(d)], "dtype": X.dtype.name, "bytes": int(X.nbytes),
        "nan": n_nan, "inf": n_inf, "rows_not_finite": bad_rows, "first_row_not_finite": first_bad,
        "duplicate_rows": duplicates, "distinct_rows": int(rows.size - duplicates),
    }


# --------------------------------------------------------------------------- tables
def read_table(path: str | os.PathLike) -> tuple[list[str], list[list[str]], list[int], dict]:
    """Read a CSV or Parquet table as text cells.

    Returns the column names, the columns (lists of strings; empty cells as ``""``), the
    position of each row in the file (line numbers for CSV, 0-based row numbers for Parquet)
    and the Parquet ``coreselect`` metadata (``{}`` for CSV). Lines starting with ``#`` are
    comments.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(path, "w").write("# a comment\\nIndex,Loss\\n4,0.5\\n")
    >>> read_table(path)
    (['index', 'loss'], [['4'], ['0.5']], [3], {})
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    suffix = _suffix(path)
    if suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            raw = list(reader)
            one_line_records = reader.line_num == len(raw)
        if not one_line_records:  # a quoted cell spans lines: count lines the slow way
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                numbers = [reader.line_num for _ in reader]
        else:
            numbers = range(1, len(raw) + 1)
        keep = [i for i, row in enumerate(raw)
                if row and not row[0].startswith("#") and (len(row) > 1 or row[0].strip())]
        rows = [raw[i] for i in keep]
        where = [numbers[i] for i in keep]
        del raw
        if not rows:
            raise ValueError(f"{path} is empty: no header and no rows.")
        names = [c.strip().lower() for c in rows[0]]
        if all(_is_number(c) for c in names):
            # no header: columns are taken by position (index, loss, ...)
            names = ["index", "loss"][: len(names)] + [f"column{i}" for i in range(2, len(names))]
        else:
            rows, where = rows[1:], where[1:]
        width = len(names)
        bad = [pos for pos, row in enumerate(rows) if len(row) != width]
        if bad:
            row, lineno = rows[bad[0]], where[bad[0]]
            raise ValueError(f"{path}, line {lineno}: {len(row)} fields; the header has {width}.")
        cols = [[row[j] for row in rows] for j in range(width)]
        return names, cols, where, {}
    if suffix == ".parquet":
        pq = _need_pyarrow("reading .parquet")
        import pyarrow as pa

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path} is not a readable Parquet file ({exc}).") from None
        meta = {}
        raw = (table.schema.metadata or {}).get(b"coreselect")
        if raw:
            meta = json.loads(raw.decode("utf-8"))
        names = [c.lower() for c in table.column_names]
        cols = []
        for name in table.column_names:
            values = table.column(name).to_pylist()
            cols.append(["" if v is None else (repr(v) if isinstance(v, float) else str(v))
                         for v in values])
        return names, cols, list(range(table.num_rows)), meta
    raise ValueError(
        f"{path}: unknown table format {suffix or '(no suffix)'!r}; expected one of "
        f"{', '.join(TABLE_FORMATS)}."
    )


def _first(items: list[str], limit: int = 3) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def read_losses(path: str | os.PathLike, *, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a loss table (columns ``index`` and ``loss``) and check every row.

    Errors (``ValueError``) name the first bad rows by line (CSV) or row (Parquet) number:
    an empty or non-numeric loss, NaN, inf, a negative loss, an index that is not an integer
    or not in ``[0, n)``, an index given twice, a file with no rows.

    Returns
    -------
    indices : ndarray of int64
    losses : ndarray of float64

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "losses.csv")
    >>> _ = open(path, "w").write("index,loss\\n4,0.5\\n1,2\\n")
    >>> read_losses(path)
    (array([4, 1]), array([0.5, 2. ]))
    """
    path = os.fspath(path)
    names, cols, where, _ = read_table(path)
    for needed in ("index", "loss"):
        if needed not in names:
            raise ValueError(
                f"{path} has no {needed!r} column; its columns are: {', '.join(names)}. "
                "Expected columns 'index' and 'loss' (the queries file, filled in)."
            )
    idx_text = cols[names.index("index")]
    loss_text = cols[names.index("loss")]
    if not where:
        raise ValueError(f"{path} has a header but no rows.")
    where_of = (lambda pos: f"line {pos}") if _suffix(path) == ".csv" else (lambda pos: f"row {pos}")
    try:  # fast path: every cell converts; the checks below are vectorised
        indices = np.fromiter(map(int, idx_text), dtype=np.int64, count=len(idx_text))
        losses = np.fromiter(map(float, loss_text), dtype=np.float64, count=len(loss_text))
    except (ValueError, OverflowError, TypeError):
        indices, losses = _parse_losses_slowly(path, idx_text, loss_text, where, n, where_of)
    bad_index = (indices < 0) if n is None else ((indices < 0) | (indices >= n))
    bad = bad_index | ~np.isfinite(losses) | (losses < 0)
    if bad.any():
        rng = f"[0, {n})" if n is not None else ">= 0"
        problems = []
        for pos in np.flatnonzero(bad)[:3].tolist():
            w, i, v = where_of(where[pos]), int(indices[pos]), float(losses[pos])
            if bad_index[pos]:
                problems.append(f"{w}: index {i} is not a row of the data (must be in {rng})")
            elif v != v:
                problems.append(f"{w} (index {i}): loss is NaN")
            elif not math.isfinite(v):
                problems.append(f"{w} (index {i}): loss {loss_text[pos].strip()!r} is not finite")
            else:
                problems.append(f"{w} (index {i}): loss {v!r} is negative; losses must be >= 0")
        count = int(bad.sum())
        more = f", ... ({count} in all)" if count > 3 else ""
        raise ValueError(f"{path}: {count} bad rows: {'; '.join(problems)}{more}.")
    order = np.argsort(indices, kind="stable")
    dup = np.flatnonzero(np.diff(indices[order]) == 0)
    if dup.size:
        msgs = []
        for j in dup[:3]:
            a, b = order[j], order[j + 1]
            msgs.append(f"index {int(indices[a])} on {where_of(where[a])} and "
                        f"{where_of(where[b])}")
        raise ValueError(
            f"{path}: {dup.size} indices are given more than once: {_first(msgs)}."
        )
    return indices, losses


def _parse_losses_slowly(path, idx_text, loss_text, where, n, where_of):
    """Cell by cell, for files where some cell does not convert: names the bad rows."""
    if all(not cell.strip() for cell in loss_text):
        raise ValueError(
            f"{path}: no loss has been filled in yet (the 'loss' column of its {len(where)} "
            "rows is empty)."
        )
    problems: list[str] = []
    indices = np.empty(len(where), dtype=np.int64)
    losses = np.empty(len(where), dtype=np.float64)
    for pos, (it, lt, at) in enumerate(zip(idx_text, loss_text, where, strict=True)):
        w = where_of(at)
        it, lt = it.strip(), lt.strip()
        try:
            i = int(it)
        except ValueError:
            try:
                fi = float(it)
            except ValueError:
                fi = float("nan")
            if not fi.is_integer():
                problems.append(f"{w}: index {it!r} is not an integer")
                continue
            i = int(fi)
        if i < 0 or (n is not None and i >= n):
            rng = f"[0, {n})" if n is not None else ">= 0"
            problems.append(f"{w}: index {i} is not a row of the data (must be in {rng})")
            continue
        indices[pos] = i
        if lt == "":
            problems.append(f"{w} (index {i}): no loss given (empty cell)")
            continue
        try:
            v = float(lt)
        except ValueError:
            problems.append(f"{w} (index {i}): loss {lt!r} is not a number")
            continue
        if v != v:
            problems.append(f"{w} (index {i}): loss is NaN")
        elif not math.isfinite(v):
            problems.append(f"{w} (index {i}): loss {lt!r} is not finite")
        elif v < 0:
            problems.append(f"{w} (index {i}): loss {v!r} is negative; losses must be >= 0")
        losses[pos] = v
    if problems:
        raise ValueError(f"{path}: {len(problems)} bad rows: {_first(problems)}.")
    return indices, losses


def match_losses(indices: np.ndarray, losses: np.ndarray, expected, *, path: str = "losses",
                 allow_extra: bool = False) -> np.ndarray:
    """Losses in the order of ``expected``; every expected index must be present.

    Indices not in ``expected`` are an error unless ``allow_extra`` (they are then ignored).

    Examples
    --------
    >>> match_losses(np.array([7, 2]), np.array([1.0, 3.0]), [2, 7]).tolist()
    [3.0, 1.0]
    """
    expected = np.asarray(expected, dtype=np.int64).reshape(-1)
    order = np.argsort(indices, kind="stable")
    sorted_idx = indices[order]
    pos = np.searchsorted(sorted_idx, expected)
    pos_c = np.minimum(pos, max(0, len(sorted_idx) - 1))
    found = (pos < len(sorted_idx)) & (sorted_idx[pos_c] == expected) if len(sorted_idx) else \
        np.zeros(len(expected), dtype=bool)
    if not found.all():
        missing = np.unique(expected[~found])
        shown = ", ".join(str(int(i)) for i in missing[:5])
        raise ValueError(
            f"{path} has no loss for {missing.size} of the {np.unique(expected).size} indices "
            f"needed (first: {shown}{', ...' if missing.size > 5 else ''})."
        )
    extra = np.setdiff1d(indices, expected)
    if extra.size:
        if not allow_extra:
            shown = ", ".join(str(int(i)) for i in extra[:5])
            raise ValueError(
                f"{path} gives losses for {extra.size} indices that were not queried (first: "
                f"{shown}{', ...' if extra.size > 5 else ''}); is it the answer to another plan?"
            )
        logger.info("%s: ignoring %d losses of rows not in the selection", path, extra.size)
    return losses[order[pos_c]]


# --------------------------------------------------------------------------- selections
def write_selection(path: str | os.PathLike, sel, *, force: bool = False,
                    extra_meta: Mapping[str, Any] | None = None) -> list[str]:
    """Write a :class:`~coreselect.Selection` as ``.csv``, ``.parquet`` or ``.npz``, atomically.

    CSV and Parquet get one row per draw: ``index, weight, probability, center,
    cluster_size`` (the center's pool index and how many rows it stands for). What
    :func:`read_selection` needs besides (``n``, ``replace``, the queried losses...) goes into
    the Parquet metadata, or for CSV into a side file ``PATH.json``. Returns the paths written.

    Examples
    --------
    >>> import os, tempfile
    >>> from coreselect import Selection
    >>> sel = Selection(indices=[3, 1], weights=[2.0, 2.0], probabilities=[0.25, 0.25], n=4)
    >>> out = os.path.join(tempfile.mkdtemp(), "sel.csv")
    >>> [os.path.basename(p) for p in write_selection(out, sel)]
    ['sel.csv', 'sel.csv.json']
    >>> read_selection(out).estimate_total([1.0, 3.0]).value
    8.0
    """
    path = os.fspath(path)
    suffix = _suffix(path)
    formats = (".csv", ".parquet", ".npz")
    check_output(path, force=force, formats=formats)
    if suffix == ".npz":
        with atomic_path(path, force=force) as tmp:
            tmp_npz = tmp + ".npz"
            try:
                sel.save(tmp_npz)
                os.replace(tmp_npz, tmp)
            finally:
                with contextlib.suppress(OSError):
                    os.remove(tmp_npz)
        return [path]
    meta = {k: v for k, v in sel.to_dict().items()
            if k in ("n", "replace", "method", "params", "diagnostics", "query_indices",
                     "query_losses", "cluster_sizes")}
    meta["format"] = _SELECTION_FORMAT
    if extra_meta:
        meta.update(extra_meta)
    if sel.cluster_sizes.size and sel.query_indices.size:
        order = np.argsort(sel.query_indices, kind="stable")
        pos = np.searchsorted(sel.query_indices[order], sel.centers)
        pos = np.minimum(pos, sel.query_indices.size - 1)
        ok = sel.query_indices[order][pos] == sel.centers
        sizes = np.where(ok, sel.cluster_sizes[order][pos], 0)
    else:
        sizes = np.zeros(sel.size, dtype=np.int64)
    columns = {"index": sel.indices, "weight": sel.weights, "probability": sel.probabilities,
               "center": sel.centers, "cluster_size": sizes}
    if sel.surrogate.size:  # the calibrated surrogate: estimate's control variate
        columns["surrogate"] = sel.surrogate
    if suffix == ".parquet":
        write_table(path, columns, force=force, metadata=meta)
        return [path]
    side = path + ".json"
    check_output(side, force=force)
    with atomic_path(side, force=force) as tmp_side:
        with open(tmp_side, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1)
        # the side file is renamed after the table, so that a failure leaves neither
        write_table(path, columns, force=force)
    return [path, side]


def read_selection(path: str | os.PathLike):
    """Read a selection written by :func:`write_selection` (or ``Selection.save``)."""
    from .selection import Selection

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    suffix = _suffix(path)
    if suffix == ".npz":
        try:
            return Selection.load(path)
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise ValueError(f"{path} is not a coreselect selection file ({exc}).") from None
    names, cols, where, meta = read_table(path)
    if suffix == ".csv":
        side = path + ".json"
        if not os.path.exists(side):
            raise ValueError(
                f"{path}: its side file {side} (written by coreselect next to the selection) is "
                "missing; it holds the pool size and how the rows were drawn."
            )
        with open(side, encoding="utf-8") as fh:
            try:
                meta = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{side} is not valid JSON ({exc}).") from None
    if meta.get("format") != _SELECTION_FORMAT:
        raise ValueError(f"{path} is not a selection written by coreselect (no metadata).")
    missing = [c for c in _SELECTION_COLUMNS[:3] if c not in names]
    if missing:
        raise ValueError(f"{path} has no {missing[0]!r} column; columns: {', '.join(names)}.")
    try:
        arrays = {
            "indices": np.array([int(v) for v in cols[names.index("index")]], dtype=np.int64),
            "weights": np.array([float(v) for v in cols[names.index("weight")]]),
            "probabilities": np.array([float(v) for v in cols[names.index("probability")]]),
        }
        if "center" in names:
            arrays["centers"] = np.array([int(v) for v in cols[names.index("center")]],
                                         dtype=np.int64)
        if "surrogate" in names:
            arrays["surrogate"] = np.array([float(v) for v in cols[names.index("surrogate")]])
    except ValueError as exc:
        raise ValueError(f"{path}: a cell is not a number ({exc}).") from None
    meta = dict(meta)
    meta.pop("format", None)
    known = ("n", "replace", "method", "params", "diagnostics", "query_indices",
             "query_losses", "cluster_sizes")
    kwargs = {k: meta[k] for k in known if k in meta}
    if "n" not in kwargs:
        raise ValueError(f"{path}: the metadata has no pool size 'n'.")
    return Selection(**arrays, **kwargs)
