"""The ``coreselect`` command line: plan, label, sample, estimate; files in, files out.

Thin: parse the arguments (``_parser``), read the files (:mod:`coreselect.io`), call the
public API, print (``_commands``, ``_output``). Exit codes: 0 ok, 2 bad usage or bad input
(one line on stderr, no traceback), 1 anything else (an oracle that failed, a bug: ``--debug``
shows the traceback), 130 interrupted (Ctrl-C). Progress bars and log lines go to stderr
(``--quiet`` silences them); ``--json`` prints one JSON object on stdout, also on failure
(``{"error": ..., "exit": ...}``). The library's messages name its Python arguments; the
command line says its flags instead (``force=True`` -> ``--force``).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Sequence

from ..oracle import OracleError
from ._commands import UsageError
from ._output import cli_words, fail
from ._parser import build_parser, usage_error

__all__ = ["main", "build_parser", "UsageError"]

# Errors that mean bad usage or bad input: exit 2.
_USAGE = (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
          NotADirectoryError, PermissionError)


class _Formatter(logging.Formatter):
    """The library's log lines, with its Python arguments said as flags."""

    def format(self, record: logging.LogRecord) -> str:
        return cli_words(super().format(record))


def _setup_logging(args) -> tuple:
    """Log lines of the library to stderr; returns what :func:`_restore_logging` puts back."""
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    root = logging.getLogger("coreselect")
    saved = (root.level, root.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("coreselect: %(message)s"))
    handler._coreselect_cli = True
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return saved


def _restore_logging(saved: tuple) -> None:
    root = logging.getLogger("coreselect")
    for h in list(root.handlers):
        if getattr(h, "_coreselect_cli", False):
            root.removeHandler(h)
    root.setLevel(saved[0])
    root.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad usage/input, 1 other,
    130 interrupted).

    Examples
    --------
    >>> main(["--version"])
    coreselect 0.1.0
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
        if code and "--json" in argv:  # the line is on stderr already: JSON on stdout too
            sys.stdout.write(json.dumps({"error": usage_error() or "bad usage",
                                         "exit": code}) + "\n")
        return code
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    saved = _setup_logging(args)

    def failed(message, code: int) -> int:
        if args.debug and code != 130:
            traceback.print_exc()
        fail(message, code=code, as_json=args.json)
        return code

    try:
        return args.func(args)
    except OracleError as exc:
        if getattr(args, "cache", None):
            hint = " Run the same command again to continue from the cache."
        elif getattr(args, "saved_answers", None):
            hint = ""
        else:
            hint = " Use --cache FILE to keep the answers across runs."
        return failed(f"{exc}{hint}", 1)
    except _USAGE as exc:
        return failed(str(exc), 2)
    except KeyboardInterrupt:
        where = (f"; the answers received are in {args.cache}"
                 if getattr(args, "cache", None) else "")
        return failed(f"interrupted; no output was written{where}.", 130)
    except (ImportError, OSError) as exc:  # a missing extra, a full disk...
        return failed(str(exc), 1)
    except Exception as exc:  # a bug: one line, the traceback with --debug
        return failed(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the "
                      "traceback)", 1)
    finally:
        _restore_logging(saved)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
