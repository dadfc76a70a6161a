"""Notes and plots as sanitised HTML, for the pages and the export alike."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from mlt_kernel import layout
from mlt_kernel.errors import PlotPathError
from mlt_kernel.notes import plot_name
from mlt_kernel.render import data_uri, markdown_to_html

from .queries import Source

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def image_resolver(source: Source) -> Callable[[str], str | None]:
    """Map an image reference in a note (``roc.png``, ``plots/roc.png``) to a ``data:`` URI.

    Only raster files directly in the experiment's ``plots/`` folder are embedded
    (the documents API's rule; a symlink out of a shared folder does not count);
    anything else is dropped.
    """
    folder = (source.path / layout.PLOTS).resolve()

    def resolve(src: str) -> str | None:
        try:
            path = (folder / plot_name(src, source.path)).resolve()
        except (PlotPathError, OSError):
            return None
        if path.parent != folder or not path.is_file() or path.suffix.lower() not in _IMAGE_SUFFIXES:
            return None
        return data_uri(path)

    return resolve


def note_html(source: Source, markdown: Any) -> str:
    """A note, rendered and sanitised, in a ``mlt-note`` block."""
    text = markdown if isinstance(markdown, str) else ""
    return f'<div class="mlt-note">{markdown_to_html(text, images=image_resolver(source))}</div>'


def plot_html(source: Source, plot: dict[str, Any]) -> str:
    """A plot file as an inline image with its name as caption (or why it is missing)."""
    name = str(plot.get("file") or "")
    path = source.plot_path(plot)
    caption = f"<figcaption>{escape(Path(name).name)}</figcaption>"
    if path is None or path.suffix.lower() not in _IMAGE_SUFFIXES:
        return f'<figure class="mlt-plot"><div class="mlt-muted">{escape(name)}: file not found in the experiment\'s plots/ folder</div></figure>'
    return f'<figure class="mlt-plot"><img src="{data_uri(path)}" alt="{escape(name)}">{caption}</figure>'


def plots_with_notes(source: Source, plots: pd.DataFrame, notes: pd.DataFrame) -> list[str]:
    """Each plot followed by the notes tied to it; then the notes tied to no plot."""
    records = notes.to_dict("records")
    out = []
    used: set[str] = set()
    for plot in plots.to_dict("records"):
        name = Path(str(plot.get("file") or "")).name
        tied = [n for n in records if isinstance(n.get("plot"), str) and Path(n["plot"]).name == name]
        used.update(n["note_id"] for n in tied)
        out.append(plot_html(source, plot) + "".join(note_html(source, n["markdown"]) for n in tied))
    out.extend(note_html(source, n["markdown"]) for n in records if n["note_id"] not in used)
    return out


def block_html(source: Source, kind: str, content: str, notes: dict[str, dict[str, Any]]) -> str:
    """One block of a document, rendered like ``Document.to_html`` renders it."""
    if kind == "markdown":
        return markdown_to_html(content, images=image_resolver(source))
    if kind == "plot":
        return plot_html(source, {"file": content, "path": f"{layout.PLOTS}/{content}"})
    if kind == "note":
        note = notes.get(content)
        if note is None:
            return '<p class="mlt-muted">This note was deleted.</p>'
        plot = note.get("plot")
        figure = plot_html(source, {"file": plot, "path": f"{layout.PLOTS}/{plot}"}) if isinstance(plot, str) and plot else ""
        return figure + note_html(source, note.get("markdown"))
    return f'<p class="mlt-muted">A {escape(kind)} block (made by a newer version).</p>'
