"""argparse type converters shared by the command line and the experiments' own parsers.

A home of their own, so that :mod:`coreselect.experiments` need not import the command line
(which imports the experiments).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["number"]


def number(parse: Callable[[str], Any], ok: Callable[[Any], bool], what: str):
    """An argparse ``type``: ``parse(text)`` that must satisfy ``ok``; errors say ``what``.

    Examples
    --------
    >>> positive = number(int, lambda v: v >= 1, "a positive integer")
    >>> positive("3")
    3
    >>> positive("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a positive integer; got '0'
    """

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return value

    return convert
