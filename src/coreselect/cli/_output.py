"""What the command line prints: results, the verdict and warnings, errors in its own words."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import numpy as np

# Python parameter names in the library's messages, and the flags that set them.
_FLAGS = {
    "n_clusters": "--clusters",
    "memory_limit": "--memory-limit",
    "batch_size": "--batch-size",
    "fit_sample_size": "--fit-sample-size",
    "max_iter": "--max-iter",
    "chunk_size": "--chunk-size",
}
# Names that are also plain words: translated only where a message starts with them.
_LEADING = {"size": "--size", "lam": "--lam", "mix": "--mix", "z": "--z", "seed": "--seed",
            "backend": "--backend"}


def cli_words(message: str) -> str:
    """A library message with the Python arguments it names replaced by the flags.

    Examples
    --------
    >>> cli_words("out.csv already exists; pass force=True to overwrite it.")
    'out.csv already exists; pass --force to overwrite it.'
    >>> cli_words("size must be at most n=5 when replace=False; got 9. "
    ...           "Use replace=True to draw with replacement.")
    '--size must be at most n=5 with --without-replacement; got 9. Leave out --without-replacement to draw with replacement.'
    """
    text = message.replace("force=True", "--force")
    text = text.replace("when replace=False", "with --without-replacement")
    text = text.replace("Use replace=True to draw", "Leave out --without-replacement to draw")
    text = re.sub(r"(?<![\w-])(key|columns)=(?=['\"\w])", r"--\1 ", text)
    text = re.sub(r"(?<![\w-])(key|columns)=", r"--\1", text)
    for name, flag in _FLAGS.items():
        text = re.sub(rf"(?<![\w.-]){name}(?!\w)", flag, text)
    text = re.sub(r"(?<![\w-])mix > 0", "--mix > 0", text)
    for name, flag in _LEADING.items():
        text = re.sub(rf"(^|; |\. ){name}(?= must| is| has)", rf"\g<1>{flag}", text)
    return text


def json_default(value: Any):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(args, human: list[str], data: dict) -> None:
    """Results on stdout: a JSON object with ``--json``, else the human lines."""
    if args.json:
        sys.stdout.write(json.dumps(data, default=json_default) + "\n")
    else:
        for line in human:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


def verdict(sel) -> tuple[list[str], dict]:
    """The selection's verdict and warnings: human lines and the JSON fields.

    Every selection of the library carries them in ``diagnostics``; a file written by an
    older version may not (then nothing is said).
    """
    diag = getattr(sel, "diagnostics", None) or {}
    said = diag.get("verdict")
    warns = [str(w) for w in diag.get("warnings", []) or []]
    lines = [f"verdict: {cli_words(said)}"] if said else []
    lines += [f"warning: {cli_words(w)}" for w in warns]
    return lines, {"verdict": said, "warnings": warns}


def fail(message: str, *, code: int, as_json: bool) -> None:
    """One line on stderr (and with ``--json``, ``{"error": ..., "exit": ...}`` on stdout)."""
    line = cli_words(" ".join(str(message).split()))
    sys.stderr.write(f"coreselect: error: {line}\n")
    sys.stderr.flush()
    if as_json:
        sys.stdout.write(json.dumps({"error": line, "exit": code}) + "\n")
        sys.stdout.flush()
