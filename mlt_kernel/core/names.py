"""Checks on the names a user gives: plot files and document titles.

Each returns the name in its canonical form or raises one error whose one-line
message names the bad value. Pure functions: no I/O.
"""

from __future__ import annotations

import os
import re

from mlt_kernel.core import layout
from mlt_kernel.core.errors import PlotPathError

#: Files under ``plots/`` that are plots; a ``plots/NAME.txt`` note explains the
#: first ``NAME.<suffix>`` present, in this order.
PLOT_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".pdf", ".gif", ".webp")
#: Longest document title (characters).
MAX_TITLE_CHARS = 200

_SEPARATORS = re.compile(r"[\\/]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def plot_name(name: str, exp_path: str | os.PathLike[str] | None = None) -> str:
    """The file name in the experiment's ``plots/`` folder that *name* refers to.

    Accepted: ``roc.png``, ``plots/roc.png`` and, when *exp_path* is given, an
    absolute path to a file directly in ``{exp_path}/plots/``.

    Raises:
        PlotPathError: ``..``, an absolute path elsewhere, a sub-folder, or an
            empty name (one line naming the bad value).
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise PlotPathError(f"plot={name!r}: expected a file name such as 'roc.png'")
    text = name.strip()
    if os.path.isabs(text) or text.startswith("\\") or _WINDOWS_DRIVE.match(text):
        plots = os.path.normpath(os.path.join(os.fspath(exp_path), layout.PLOTS)) if exp_path else None
        path = os.path.normpath(text)
        if plots is not None and os.path.dirname(path) == plots:
            return os.path.basename(path)
        raise PlotPathError(f"plot={name!r}: an absolute path outside the experiment's plots/ folder")
    parts = _SEPARATORS.split(text)
    if len(parts) == 2 and parts[0] == layout.PLOTS:
        parts = parts[1:]
    if ".." in parts:
        raise PlotPathError(f"plot={name!r}: '..' is not allowed; name a file in the plots/ folder")
    if len(parts) != 1 or parts[0] in ("", "."):
        raise PlotPathError(f"plot={name!r}: name a file directly in the plots/ folder, such as 'roc.png'")
    return parts[0]


def clean_title(title: str) -> str:
    """*title* without surrounding blanks; ``ValueError`` when empty, multi-line or too long."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"a document needs a non-empty title, got {title!r}")
    text = title.strip()
    if "\n" in text or "\r" in text:
        raise ValueError(f"a document title is one line, got {title!r}")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValueError(f"a document title is printable text, got {title!r}")
    if len(text) > MAX_TITLE_CHARS:
        raise ValueError(f"a document title has at most {MAX_TITLE_CHARS} characters, got {len(text)}")
    return text


__all__ = ["MAX_TITLE_CHARS", "PLOT_SUFFIXES", "clean_title", "plot_name"]
