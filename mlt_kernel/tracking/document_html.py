"""A document as HTML: sanitised blocks, plots embedded as ``data:`` URIs, one offline page.

Everything a document holds may come from a teammate's shared folder: the
Markdown goes through ``tracking.render`` (sanitised), plots are read only
from the experiment's ``plots/`` folder without following links.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from html import escape
from pathlib import Path

from mlt_kernel.core import layout
from mlt_kernel.core.errors import PlotPathError
from mlt_kernel.core.names import plot_name
from mlt_kernel.tracking import render
from mlt_kernel.tracking.blocks import MAX_DOCUMENT_BYTES, Block

#: Styles added to exported pages: figures and the notes under them.
EXPORT_CSS = """
figure.mlt-plot { margin: 1.2em 0; text-align: center; }
figure.mlt-plot figcaption { font-size: 0.85em; color: #59636e; }
section.mlt-block { margin: 0 0 1em; }
.mlt-missing { color: #9a6700; font-style: italic; }
"""


def blocks_html(
    experiment_path: str | os.PathLike[str], blocks: list[Block], notes: Mapping[str, tuple[str | None, str | None]]
) -> str:
    """*blocks* as sanitised HTML sections, at most ``MAX_DOCUMENT_BYTES`` of them (a page body)."""
    parts = []
    size = 0
    for i, block in enumerate(blocks):
        inner = render_block(experiment_path, block, notes)
        if inner is None:  # a kind from a newer version
            continue
        size += len(inner)
        if size > MAX_DOCUMENT_BYTES:  # a shared folder's document may be built to be huge
            parts.append(
                f'<p class="mlt-missing">{len(blocks) - i} more block(s) are not shown: '
                f"this document is larger than {MAX_DOCUMENT_BYTES} bytes.</p>"
            )
            break
        parts.append(f'<section class="mlt-block mlt-{block.kind}">\n{inner}\n</section>')
    return "\n".join(parts)


def page(title: str, body: str) -> str:
    """One self-contained, offline, printable HTML page: the title, then *body*."""
    return render.html_page(title, f"<h1>{escape(title)}</h1>\n{body}", extra_css=EXPORT_CSS)


def render_block(
    experiment_path: str | os.PathLike[str], block: Block, notes: Mapping[str, tuple[str | None, str | None]]
) -> str | None:
    """One block as sanitised HTML, plots embedded as ``data:`` URIs; ``None`` for a kind from a newer version.

    *notes* maps the id of each live note to its ``(plot, markdown)``; a note
    block whose note is not there shows that the note was deleted.
    """
    images = partial(plot_image, experiment_path)
    if block.kind == "markdown":
        return render.markdown_to_html(block.content, images=images)
    if block.kind == "plot":
        return _figure(experiment_path, block.content)
    if block.kind == "note":
        note = notes.get(block.content)
        if note is None:
            return '<p class="mlt-missing">This note was deleted.</p>'
        plot, markdown = note
        figure = _figure(experiment_path, plot) if isinstance(plot, str) and plot else ""
        return figure + render.markdown_to_html(markdown if isinstance(markdown, str) else "", images=images)
    return None


def plot_image(experiment_path: str | os.PathLike[str], src: str) -> str | None:
    """A ``data:`` URI for an image reference (``roc.png``, ``plots/roc.png``), or ``None``.

    Only regular raster files directly in the experiment's ``plots/`` folder
    count, read without following a link (``plots/`` included) and at most
    ``safeio.MAX_PLOT_BYTES``: a link out of a shared folder must not smuggle a
    local file into a page.
    """
    exp_path = Path(experiment_path)
    try:
        return render.data_uri(f"{layout.PLOTS}/{plot_name(src, exp_path)}", beneath=exp_path)
    except (PlotPathError, OSError, ValueError):  # a bad name; missing, a link, too big; not a raster image
        return None


def _figure(experiment_path: str | os.PathLike[str], name: str) -> str:
    uri = plot_image(experiment_path, name)
    if uri is None:
        return f'<p class="mlt-missing">Plot {escape(name)} is not available.</p>'
    label = escape(name)
    return f'<figure class="mlt-plot"><img src="{uri}" alt="{label}"><figcaption>{label}</figcaption></figure>\n'


__all__ = ["EXPORT_CSS", "blocks_html", "page", "plot_image", "render_block"]
