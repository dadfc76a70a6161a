"""Notes and plots as sanitised HTML, for the pages and the export alike."""

from __future__ import annotations

from functools import partial
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from mlt_kernel.documents import plot_image
from mlt_kernel.render import data_uri, markdown_to_html

from .queries import Source

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def note_html(source: Source, markdown: Any) -> str:
    """A note, rendered and sanitised, in a ``mlt-note`` block."""
    text = markdown if isinstance(markdown, str) else ""
    return f'<div class="mlt-note">{markdown_to_html(text, images=partial(plot_image, source.path))}</div>'


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
