"""Notes and plots as sanitised HTML, for the pages and the export alike."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from mlt_dashboard.markup import Markup, el, join, short, trusted
from mlt_dashboard.queries import Source
from mlt_kernel.tracking.documents import plot_image
from mlt_kernel.tracking.render import data_uri, markdown_to_html

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def markdown_block(source: Source, markdown: Any, css_class: str) -> Markup:
    """Markdown rendered and sanitised (plots of the experiment inlined), in a ``<div>`` of *css_class*."""
    text = markdown if isinstance(markdown, str) else ""
    return el("div", trusted(markdown_to_html(text, images=partial(plot_image, source.path))), class_=css_class)


def note_html(source: Source, markdown: Any) -> Markup:
    """A note, rendered and sanitised, in a ``mlt-note`` block."""
    return markdown_block(source, markdown, "mlt-note")


def plot_html(source: Source, plot: dict[str, Any]) -> Markup:
    """A plot file as an inline image with its name as caption (or why it is missing)."""
    name = str(plot.get("file") or "")
    path = source.plot_path(plot)
    uri = None
    if path is not None and path.suffix.lower() in _IMAGE_SUFFIXES:
        try:  # the file may have been replaced by a link, or grown past the size limit, since it was found
            uri = data_uri(path.relative_to(source.path), beneath=source.path)
        except (OSError, ValueError):
            uri = None
    if uri is None:
        missing = f"{short(name)}: no readable image of that name in the experiment's plots/ folder"
        return el("figure", el("div", missing, class_="mlt-muted"), class_="mlt-plot")
    image = el("img", src=uri, alt=short(name))
    return el("figure", image, el("figcaption", short(Path(name).name)), class_="mlt-plot")


def plots_with_notes(source: Source, plots: pd.DataFrame, notes: pd.DataFrame) -> list[Markup]:
    """Each plot followed by the notes tied to it; then the notes tied to no plot."""
    records = notes.to_dict("records")
    out = []
    used: set[str] = set()
    for plot in plots.to_dict("records"):
        name = Path(str(plot.get("file") or "")).name
        tied = [n for n in records if isinstance(n.get("plot"), str) and Path(n["plot"]).name == name]
        used.update(n["note_id"] for n in tied)
        out.append(join([plot_html(source, plot), *(note_html(source, n["markdown"]) for n in tied)]))
    out.extend(note_html(source, n["markdown"]) for n in records if n["note_id"] not in used)
    return out
