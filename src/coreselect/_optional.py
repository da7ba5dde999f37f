"""Optional dependencies: imported when first needed, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise an ImportError saying ``what`` needs it and which extra
    of coreselect installs it.

    Examples
    --------
    >>> require("numpy", "core", "this example").__name__
    'numpy'
    >>> require("no_such_module", "plot", "the figure")
    Traceback (most recent call last):
    ...
    ImportError: the figure needs no_such_module; install it with `pip install coreselect[plot]`.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}; install it with "
            f"`pip install coreselect[{extra}]`."
        ) from exc
