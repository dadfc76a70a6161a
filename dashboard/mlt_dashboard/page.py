"""What every page shares: its source, its links, HTML panes with our style sheet."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar

import panel as pn

from mlt_dashboard.queries import Source
from mlt_dashboard.style import CSS


@dataclass(frozen=True)
class Links:
    """Relative links between pages (relative, so the app also works behind a proxy prefix)."""

    experiment: str | None  #: the ``exp`` query argument, when PATH holds several experiments

    def href(self, page: str, **args: Any) -> str:
        query = {"exp": self.experiment} if self.experiment else {}
        query.update({k: str(v) for k, v in args.items() if v is not None})
        return page + ("?" + urllib.parse.urlencode(query) if query else "")


def html(content: str = "", **kwargs: Any) -> pn.pane.HTML:
    """An HTML pane that carries the dashboard's style sheet (panes live in shadow DOM)."""
    kwargs.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(content, stylesheets=[CSS], **kwargs)


def bokeh(fig: Any, **kwargs: Any) -> pn.pane.Bokeh:
    kwargs.setdefault("sizing_mode", "stretch_width")
    return pn.pane.Bokeh(fig, **kwargs)


def session_arg(name: str) -> str | None:
    """The query argument *name* of the request that opened this session."""
    values = (pn.state.session_args or {}).get(name)
    if not values:
        return None
    raw = values[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class Page(pn.viewable.Viewer):
    """A page of the app: built from a ``Source``; ``refresh()`` redraws after the folder changed."""

    slug: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init__(self, source: Source, links: Links, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]  # param.Parameterized's is unannotated
        self.source = source
        self.links = links

    def refresh(self) -> None:
        """Called by the shell when the experiment folder changed; keep the user's place."""

    def close(self) -> None:
        """Called by the shell when the browser session ends: release what the page opened."""

    def __panel__(self) -> Any:
        raise NotImplementedError


def set_options(widget: Any, options: Any, fallback: Any = "first") -> bool:
    """Give a select widget new *options*, keeping its value when it is still offered.

    Otherwise the value becomes the first option (or *fallback* when it is not
    ``"first"``). Returns whether anything changed (so callers redraw once).
    """
    if options == widget.options:
        return False
    values = list(options.values()) if isinstance(options, dict) else list(options)
    current = widget.value
    widget.options = options
    if current in values:
        widget.value = current
    elif fallback != "first":
        widget.value = fallback
    else:
        widget.value = values[0] if values else None
    return True
