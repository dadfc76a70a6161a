"""HTML and chart text from values we do not trust: the one place the dashboard escapes.

Run names, params, metric names, split names, class labels, file names, titles,
session fields and notes come from an experiment folder that any teammate can
write to, so each of them is *data*. Pages and the export build markup only
with :func:`el` (text escaped, attributes quoted, URLs checked) and carry our
own fragments, and sanitised Markdown, as :class:`Markup`. Bokeh text that a
string could turn into TeX goes through :func:`plain`; Bokeh tooltips take
stored values only as ``@column`` fields (see ``charts``), and Tabulator
headers only through :func:`header` (Tabulator sets titles as HTML).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html import escape
from typing import Any

#: Characters of a name shown in a label, a title or a card before it is cut with "…".
SHORT_CHARS = 80

_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")
_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr"})


class Markup(str):
    """HTML that may be inserted as it is: written by us, escaped, or sanitised."""

    __slots__ = ()


def text(value: Any) -> Markup:
    """*value* as HTML text (escaped, quotes too); :class:`Markup` passes unchanged."""
    if isinstance(value, Markup):
        return value
    return Markup(escape("" if value is None else str(value), quote=True))


def trusted(html: str) -> Markup:
    """Our own markup (a constant of this package) or the sanitiser's output."""
    return Markup(html)


def join(parts: Iterable[Any], separator: str = "") -> Markup:
    """Fragments one after another; plain strings among them are escaped."""
    return Markup(text(separator).join(text(p) for p in parts))


def el(tag: str, *children: Any, **attributes: Any) -> Markup:
    """``<tag attributes>children</tag>``: children escaped unless Markup, attributes always.

    Attribute names are ours (``class_`` gives ``class``, ``data_testid`` gives
    ``data-testid``); ``None`` and ``False`` leave an attribute out. A URL in
    ``href`` or ``src`` keeps only a relative link, a fragment, or an inline
    image: any other scheme (``javascript:`` above all) becomes ``#``.
    """
    attrs = []
    for name, value in attributes.items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        if value is True:
            attrs.append(f" {key}")
            continue
        shown = _safe_url(str(value)) if key in _URL_ATTRIBUTES else str(value)
        attrs.append(f' {key}="{escape(shown, quote=True)}"')
    if tag in _VOID:
        return Markup(f"<{tag}{''.join(attrs)}>")
    return Markup(f"<{tag}{''.join(attrs)}>{join(children)}</{tag}>")


def _safe_url(url: str) -> str:
    match = _SCHEME.match(url)
    if match is None:
        return url
    if match.group(1).lower() == "data" and url.lower().startswith("data:image/"):
        return url
    return "#"


def short(value: Any, limit: int = SHORT_CHARS) -> str:
    """*value* as one line of at most *limit* characters (cut with "…"): for labels, not for data."""
    line = " ".join(("" if value is None else str(value)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def header(value: Any) -> str:
    """A Tabulator column title: Tabulator writes titles with ``innerHTML``, so the text goes escaped."""
    return str(text(short(value)))


def plain(value: Any) -> Any:
    """Chart text (a title, an axis label, a ``Label``) that Bokeh must not read as TeX.

    Bokeh renders a string between ``$$`` delimiters as mathematics; stored
    names are shown as they are written.
    """
    from bokeh.models import PlainText

    return PlainText(text=str(value))


__all__ = ["SHORT_CHARS", "Markup", "el", "header", "join", "plain", "short", "text", "trusted"]
