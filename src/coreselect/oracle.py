"""Asking a loss oracle: in batches, with every answer checked, cached and never lost.

An oracle is any callable ``oracle(indices) -> losses`` taking an int64 array of pool rows and
returning one finite loss >= 0 per row (a list, an array, a tensor...). ``losses.__getitem__``
of a precomputed array is an oracle too.

:class:`LossCache` keeps the answers in an append-only CSV file (``index,loss``), flushed and
synced after every batch, so that a run that is killed and started again asks the oracle only
for what is still missing. When the oracle raises, :class:`OracleError` carries the answers
already received.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping

import numpy as np

from ._progress import Progress
from ._validation import check_losses, check_oracle, check_positive_int

try:  # POSIX; elsewhere a cache file is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["OracleError", "LossCache", "ask_oracle"]

logger = logging.getLogger(__name__)


class OracleError(RuntimeError):
    """The oracle raised (or answered badly) part way through.

    Attributes
    ----------
    answered : dict[int, float]
        Every answer received before the failure (also in the cache, if one was given).
    missing : ndarray of int64
        The indices still without an answer.
    state : object or None
        Work done before the oracle was called (e.g. the fitted ``SensitivitySampler``), so
        that it need not be recomputed.

    Examples
    --------
    >>> import numpy as np
    >>> def oracle(idx):
    ...     if 2 in idx:
    ...         raise RuntimeError("model crashed")
    ...     return np.ones(len(idx))
    >>> try:
    ...     ask_oracle(oracle, [0, 1, 2, 3], batch_size=2)
    ... except OracleError as err:
    ...     print(err.answered, err.missing)
    {0: 1.0, 1: 1.0} [2 3]
    """

    def __init__(self, message: str, answered: dict[int, float], missing: np.ndarray,
                 state=None):
        super().__init__(message)
        self.answered = answered
        self.missing = missing
        self.state = state


HEADER_TAG = "# coreselect loss cache:"


class LossCache(Mapping):
    """Oracle answers persisted to an append-only CSV file ``index,loss``.

    Opening an existing file reads its answers (a partly written last line, left by a killed
    run, is ignored, and cut before the next append). :meth:`add` appends a batch, then
    flushes and fsyncs. With ``path=None`` the cache lives in memory only. ``signed=True``
    accepts negative values (regression labels).

    A cache may name the data its answers are for: a first line
    ``# coreselect loss cache: {JSON}`` holding the embeddings' ``fingerprint`` (shape,
    dtype, SHA-256; see :func:`coreselect.io.fingerprint`) and any ``info`` (the command
    line records its seed there). A new file gets that header; an existing one with a header
    is checked against ``fingerprint`` and refused (``ValueError``) when it was written for
    other data. A file without a header is used as given.

    Two processes sharing a cache file never ask the oracle about one row twice:
    :func:`ask_oracle` holds an exclusive lock on the file (``fcntl.flock``) while it asks,
    so a second run *waits* for the first, then reads its answers and asks only for the rows
    still missing. The lock goes with the process: a run that is killed frees it.

    Parameters
    ----------
    path : str, path-like or None
        The CSV file (created when first needed); None keeps the answers in memory.
    signed : bool, default=False
        Accept any finite value, not only losses >= 0.
    fingerprint : dict, optional
        The data the answers are for: written in a new file's header, checked against an
        existing one's.
    info : dict, optional
        More JSON fields for a new file's header (ignored for an existing file).

    Attributes
    ----------
    header : dict or None
        The file's header (fingerprint fields and info), None when it has none.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "cache.csv")
    >>> LossCache(path).add([3, 7], [0.5, 1.25])
    >>> dict(LossCache(path))
    {3: 0.5, 7: 1.25}
    """

    def __init__(self, path: str | os.PathLike | None = None, *, signed: bool = False,
                 fingerprint: Mapping | None = None, info: Mapping | None = None):
        self.path = None if path is None else os.fspath(path)
        self.signed = bool(signed)
        self.header: dict | None = None
        self._data: dict[int, float] = {}
        self._lock_fd: int | None = None
        self._new_header = None
        if fingerprint is not None or info is not None:
            self._new_header = {**{k: fingerprint[k] for k in ("shape", "dtype", "hash")
                                   if fingerprint and k in fingerprint}, **(info or {})}
        if self.path is None:
            return
        if self._new_header is not None:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{self.path}: folder {folder!r} does not exist.")
            new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
            with self._exclusive() if new else contextlib.nullcontext() as fd:
                # a new file gets its header before anyone appends
                if new and os.fstat(fd).st_size == 0:
                    os.write(fd, self._header_text().encode("utf-8"))
                    os.fsync(fd)
        if os.path.exists(self.path):
            self._read()
        if fingerprint is not None and self.header is None and len(self._data):
            logger.warning("%s: a cache without a coreselect header: its answers are used as "
                           "given (they must be for these embeddings)", self.path)
        if fingerprint is not None and self.header is not None:
            why = _compare(self.header, fingerprint)
            if why:
                raise ValueError(f"{self.path} holds answers for other embeddings: {why}; "
                                 "use another cache file.")

    # ------------------------------------------------------------------ the file
    def _header_text(self) -> str:
        head = f"{HEADER_TAG} {json.dumps(self._new_header)}\n" if self._new_header else ""
        return head + "index,loss\n"

    def _flock(self, fd: int) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s is in use by another run: waiting for its answers", self.path)
            fcntl.flock(fd, fcntl.LOCK_EX)

    @contextlib.contextmanager
    def _exclusive(self):
        """An fd of the file under an exclusive lock (the one :meth:`locked` holds, if any)."""
        if self._lock_fd is not None:
            yield self._lock_fd
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._flock(fd)
            yield fd
        finally:
            os.close(fd)  # frees the lock

    @contextlib.contextmanager
    def locked(self):
        """Hold the file's exclusive lock; answers other runs added are read on entry.

        :func:`ask_oracle` asks under this lock, so that a second process sharing the file
        waits for the first instead of asking the same rows.
        """
        if self.path is None or self._lock_fd is not None:
            yield self
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._flock(fd)
            self._lock_fd = fd
            self._read()
            yield self
        finally:
            self._lock_fd = None
            os.close(fd)

    def _read(self) -> None:
        with open(self.path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
        lines = text.split("\n")
        complete = lines[:-1]  # the last piece is "" or a partly written line
        if lines[-1]:
            logger.warning("%s: ignoring a partly written last line %r", self.path, lines[-1])
        header = None
        for lineno, line in enumerate(complete, start=1):
            line = line.strip()
            if lineno == 1 and line.startswith(HEADER_TAG):
                try:
                    header = json.loads(line[len(HEADER_TAG):])
                except json.JSONDecodeError:
                    raise ValueError(f"{self.path}, line 1: unreadable header {line!r}.") from None
                continue
            if not line or line.startswith("#") or line == "index,loss":
                continue
            parts = line.split(",")
            try:
                idx, val = int(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{self.path}, line {lineno}: expected 'index,loss'; got {line!r}."
                ) from None
            if not np.isfinite(val) or (val < 0 and not self.signed):
                raise ValueError(
                    f"{self.path}, line {lineno}: value {val} for index {idx} is not a finite "
                    f"number{'' if self.signed else ' >= 0'}."
                )
            self._data[idx] = val
        self.header = header if isinstance(header, dict) else None

    def add(self, indices, losses) -> None:
        """Record answers; on disk they are appended, flushed and synced before returning."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        if self.path is not None:
            text = "".join(f"{int(i)},{float(v)!r}\n"
                           for i, v in zip(indices, losses, strict=True))
            with self._exclusive() as fd:
                size = os.fstat(fd).st_size
                if size == 0:
                    text = self._header_text() + text
                else:
                    os.lseek(fd, size - 1, os.SEEK_SET)
                    if os.read(fd, 1) != b"\n":  # a killed run's partial line: cut it
                        os.lseek(fd, 0, os.SEEK_SET)
                        raw = os.read(fd, size)
                        os.ftruncate(fd, raw.rfind(b"\n") + 1)
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
        for i, v in zip(indices.tolist(), losses.tolist(), strict=True):
            self._data[i] = v

    def __getitem__(self, key: int) -> float:
        return self._data[int(key)]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return int(key) in self._data

    def __repr__(self) -> str:
        return f"LossCache(path={self.path!r}, answers={len(self)})"


def _compare(recorded: Mapping, fingerprint: Mapping) -> str | None:
    """How the data a cache was written for differs from ``fingerprint``; None if alike."""
    if list(recorded.get("shape", [])) != list(fingerprint.get("shape", [])):
        return (f"the embeddings have shape {tuple(fingerprint.get('shape', ()))}, but the "
                f"cache was written for shape {tuple(recorded.get('shape', ()))}")
    if recorded.get("dtype") and recorded.get("dtype") != fingerprint.get("dtype"):
        return (f"the embeddings have dtype {fingerprint.get('dtype')}, but the cache was "
                f"written for {recorded['dtype']}")
    if recorded.get("hash") and fingerprint.get("hash") and recorded["hash"] != fingerprint["hash"]:
        return ("the embeddings have the shape and dtype of those the cache was written for, "
                "but other values (their SHA-256 differs)")
    return None


def ask_oracle(oracle: Callable, indices, *, batch_size: int | None = 1024,
               cache: LossCache | str | os.PathLike | None = None, progress: bool = False,
               state=None, signed: bool = False, name: str = "oracle") -> np.ndarray:
    """Ask ``oracle`` for the loss of every row in ``indices``; return them in that order.

    Rows already in ``cache`` are not asked again; new answers are checked (length, numeric,
    finite, >= 0; the message names the bad index) and recorded batch by batch. If the
    oracle raises, :class:`OracleError` is raised with the answers received so far.

    Parameters
    ----------
    oracle : callable
        ``oracle(indices: ndarray[int64]) -> losses``.
    indices : array-like of int
        Rows to ask about (asked once each, even if repeated).
    batch_size : int or None, default=1024
        Rows per oracle call; None asks for all at once.
    cache : LossCache, path or None
        Where answers are kept across runs.
    progress : bool, default=False
        A progress bar on stderr.
    state : object, optional
        Attached to an :class:`OracleError` (work the caller wants to keep).
    signed : bool, default=False
        Accept any finite real answer (regression labels) instead of losses >= 0.
    name : str, default="oracle"
        How the oracle is called in messages (e.g. "label_oracle").

    Returns
    -------
    ndarray of float64
        One loss per entry of ``indices``.

    Examples
    --------
    >>> import numpy as np
    >>> losses = np.array([0.1, 0.2, 0.3, 0.4])
    >>> ask_oracle(losses.__getitem__, [3, 1], batch_size=1).tolist()
    [0.4, 0.2]
    """
    check_oracle(oracle, name=name, what="labels" if signed else "losses")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(cache, LossCache):
        cache = LossCache(cache, signed=signed)
    with cache.locked():
        uniq = np.unique(indices)
        todo = np.array([i for i in uniq.tolist() if i not in cache], dtype=np.int64)
        if len(uniq) - len(todo):
            logger.info("oracle: %d of %d answers taken from the cache", len(uniq) - len(todo),
                        len(uniq))
        step = len(todo) if not batch_size else batch_size
        bar = Progress(len(todo), name, enabled=progress, unit="queries")
        answered: dict[int, float] = {}
        try:
            for start in range(0, len(todo), max(1, step)):
                batch = todo[start:start + step]
                try:
                    raw = oracle(batch.copy())
                    if hasattr(raw, "detach"):  # torch tensors
                        raw = raw.detach().cpu().numpy()
                    got = check_losses(raw, batch, name=name, source=f"the {name.replace('_', ' ')}",
                                       nonnegative=not signed)
                except Exception as exc:
                    missing = np.setdiff1d(todo, np.fromiter(answered, dtype=np.int64, count=len(answered)))
                    raise OracleError(
                        f"the {name.replace('_', ' ')} failed on a batch of {len(batch)} indices starting at index "
                        f"{int(batch[0])} ({type(exc).__name__}: {exc}); {len(answered)} new answers "
                        f"were kept{' in ' + cache.path if cache.path else ''}, {len(missing)} are "
                        "still missing.",
                        answered={**{int(i): cache[i] for i in uniq if i in cache}},
                        missing=missing,
                        state=state,
                    ) from exc
                cache.add(batch, got)
                answered.update(zip(batch.tolist(), got.tolist(), strict=False))
                bar.update(len(batch))
        finally:  # the bar ends cleanly, also on Ctrl-C
            bar.close()
        return np.array([cache[i] for i in indices.tolist()], dtype=np.float64)
