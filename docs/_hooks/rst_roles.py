"""mkdocs hook: render the Sphinx roles of the numpydoc docstrings as code.

The docstrings say :func:`name`, :class:`~coreselect.Selection`...; mkdocstrings renders the
backquoted part as <code> and leaves the role in front of it. This drops the role and, as
Sphinx does for a leading ``~``, keeps only the last component of the name.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|ref|term):"
                   r"<code>(~?)([^<]+)</code>")


def _replace(match: re.Match) -> str:
    tilde, name = match.group(1), match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_replace, html)
