"""Documents: write up what we found.

Everything goes through ``mlt_kernel.tracking.documents`` (issue 5's API), so what the
browser edits is what ``Experiment.documents()`` and the notebook see. The
editor shows Markdown on the left and the sanitised preview on the right.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn

from mlt_dashboard import style
from mlt_dashboard.markup import Markup, el, join, short, trusted
from mlt_dashboard.notes import markdown_block
from mlt_dashboard.page import Page, html, session_arg, set_options
from mlt_dashboard.queries import Source
from mlt_kernel.core.errors import MLTrackError
from mlt_kernel.read.experiment import Experiment
from mlt_kernel.tracking.documents import Block, Document, create_document, render_block

_KIND_LABEL = {"markdown": "Markdown", "note": "note", "plot": "plot"}


def note_label(note: Any) -> str:
    first = next((ln.strip("# ").strip() for ln in str(note["markdown"] or "").splitlines() if ln.strip()), "")
    where = f"[{int(note['execution_count'])}] " if not pd.isna(note["execution_count"]) else ""
    return f"{where}{first[:60] or note['note_id']}"


class DocumentsPage(Page):
    """List, create, rename, edit (Markdown with preview), add notes and plots, reorder, delete, download."""

    slug = "documents"
    title = "Documents"

    def __init__(self, source: Source, links: Any, **params: Any) -> None:
        super().__init__(source, links, **params)
        self.experiment = Experiment(source.path)  #: the documents API's reader; closed with the session
        self.doc: Document | None = None
        self.editing: str | None = None  #: block id being edited; "" for a new Markdown block
        # -- the list
        self.doc_list = pn.widgets.Select(name="documents", options={}, size=10, width=260)
        self.new_title = pn.widgets.TextInput(placeholder="title of a new document", width=260)
        self.create = pn.widgets.Button(name="Create document", button_type="primary", width=260)
        # -- the document
        self.title_input = pn.widgets.TextInput(name="title", width=320, css_classes=["mlt-title"])
        self.rename = pn.widgets.Button(name="Rename", width=90, align="end")
        self.delete = pn.widgets.Button(name="Delete document", button_type="danger", width=150, align="end")
        self.download = pn.widgets.FileDownload(
            callback=self._download_html,
            filename="document.html",
            label="Download HTML",
            button_type="success",
            width=160,
            align="end",
        )
        self.message = html()
        self.blocks = pn.Column(sizing_mode="stretch_width")
        self.add_markdown = pn.widgets.Button(name="+ Markdown block", width=160)
        self.note_choice = pn.widgets.Select(name="note", options={}, width=320)
        self.add_note = pn.widgets.Button(name="+ Add note", width=110, align="end")
        self.plot_choice = pn.widgets.Select(name="plot", options=[], width=220)
        self.add_plot = pn.widgets.Button(name="+ Add plot", width=110, align="end")
        # -- the editor
        self.editor = pn.widgets.TextAreaInput(
            name="Markdown",
            height=320,
            sizing_mode="stretch_width",
            placeholder="Write Markdown here; the preview is on the right.",
        )
        self.preview = html(sizing_mode="stretch_width", height=340, styles={"overflow-y": "auto"})
        self.save = pn.widgets.Button(name="Save block", button_type="primary", width=120)
        self.cancel = pn.widgets.Button(name="Cancel", width=90)
        self.editor_box = pn.Column(
            html('<div class="mlt-section">Edit block</div>'),
            pn.Row(
                self.editor,
                pn.Column(
                    html('<div class="mlt-muted">Preview (sanitised)</div>'), self.preview, sizing_mode="stretch_width"
                ),
                sizing_mode="stretch_width",
            ),
            pn.Row(self.save, self.cancel),
            visible=False,
            sizing_mode="stretch_width",
        )
        self._confirm_delete = False
        self._signature: Any = None
        self._wire()
        self._fill_lists()
        wanted = session_arg("doc")
        if wanted and wanted in self.doc_list.options.values():
            self.doc_list.value = wanted
        elif self.doc_list.options:
            self.doc_list.value = next(iter(self.doc_list.options.values()))
        if pn.state.location is not None:
            pn.state.location.sync(self.doc_list, {"value": "doc"})
        self._open()

    def _wire(self) -> None:
        self.doc_list.param.watch(lambda _e: self._open(), "value")
        self.create.on_click(lambda _e: self._act(self._create))
        self.rename.on_click(lambda _e: self._act(self._rename))
        self.delete.on_click(lambda _e: self._act(self._delete))
        self.add_markdown.on_click(lambda _e: self._edit(None))
        self.add_note.on_click(lambda _e: self._act(self._add_note))
        self.add_plot.on_click(lambda _e: self._act(self._add_plot))
        self.save.on_click(lambda _e: self._act(self._save))
        self.cancel.on_click(lambda _e: self._close_editor())
        self.editor.param.watch(self._preview, "value_input")

    # -- reading ------------------------------------------------------------------
    def _fill_lists(self) -> None:
        docs = self.source.document_titles()
        options = {str(r.title): str(r.doc_id) for r in docs.itertuples()}
        set_options(self.doc_list, options, fallback=None)
        notes = self.source.notes()
        self.notes = {str(n["note_id"]): n for n in notes.to_dict("records")}
        note_options = {note_label(n): str(n["note_id"]) for n in notes.to_dict("records")}
        set_options(self.note_choice, note_options)
        plots = sorted({Path(str(f)).name for f in self.source.plots()["file"].dropna()})
        set_options(self.plot_choice, plots)

    def _open(self) -> None:
        doc_id = self.doc_list.value
        titles = {v: k for k, v in self.doc_list.options.items()}
        self._confirm_delete = False
        self.delete.name = "Delete document"
        self._close_editor()
        if not doc_id or doc_id not in titles:
            self.doc = None
        else:
            try:
                self.experiment.refresh()
                self.doc = Document.open(self.experiment, titles[doc_id])
            except KeyError:  # renamed or deleted meanwhile
                self.doc = None
        if self.doc is not None:
            self.title_input.value = self.doc.title
            self.download.filename = _file_name(self.doc.title)
        self._draw_blocks(force=True)

    def refresh(self) -> None:
        self._fill_lists()
        if self.doc is not None and self.doc_list.value != self.doc.doc_id:
            self._open()
        else:
            self._draw_blocks(force=False)

    def close(self) -> None:
        self.experiment.close()

    def _draw_blocks(self, force: bool) -> None:
        if self.doc is None:
            self._signature = None
            self.blocks[:] = [
                html(
                    style.empty(
                        "No document open" if self.doc_list.options else "No documents yet",
                        trusted(
                            "Type a title on the left and press <b>Create document</b>, or write "
                            '<code># mlt: note doc="Findings"</code> in a notebook cell: the note is added to that '
                            "document."
                        ),
                    )
                )
            ]
            return
        self.experiment.refresh()
        blocks = self.doc.blocks()
        signature = (tuple(blocks), tuple((k, n.get("markdown"), n.get("plot")) for k, n in self.notes.items()))
        if not force and signature == self._signature:
            return
        self._signature = signature
        if not blocks:
            self.blocks[:] = [
                html(
                    style.empty(
                        "This document is empty", "Add a Markdown block, a note or a plot with the buttons below."
                    )
                )
            ]
            return
        notes = {k: (n.get("plot"), n.get("markdown")) for k, n in self.notes.items()}
        self.blocks[:] = [self._block_row(b, i, len(blocks), notes) for i, b in enumerate(blocks)]

    def _block_row(self, block: Block, index: int, count: int, notes: dict[str, tuple[Any, Any]]) -> Any:
        inner = render_block(self.source.path, block, notes)
        if inner is None:
            content = el("p", f"A {short(block.kind, 40)} block (made by a newer version).", class_="mlt-muted")
        else:
            content = trusted(inner)  # rendered by mlt_kernel.tracking.documents: sanitised Markdown, escaped names
        label = _KIND_LABEL.get(block.kind, short(block.kind, 40))
        body = html(
            el("div", f"{label} block", class_="mlt-muted") + el("div", content, class_="mlt-doc"),
            sizing_mode="stretch_width",
        )
        buttons = []
        if block.kind in ("markdown", "note"):
            edit = pn.widgets.Button(name="Edit", width=64, css_classes=["mlt-edit"])
            edit.on_click(lambda _e: self._edit(block))
            buttons.append(edit)
        up = pn.widgets.Button(name="↑", width=40, disabled=index == 0, description="move up")
        down = pn.widgets.Button(name="↓", width=40, disabled=index == count - 1, description="move down")
        remove = pn.widgets.Button(name="✕", width=40, button_type="light", description="delete this block")
        up.on_click(lambda _e: self._act(lambda: self.doc.move(block.block_id, -1)))  # type: ignore[union-attr]
        down.on_click(lambda _e: self._act(lambda: self.doc.move(block.block_id, +1)))  # type: ignore[union-attr]
        remove.on_click(lambda _e: self._act(lambda: self.doc.delete_block(block.block_id)))  # type: ignore[union-attr]
        buttons += [up, down, remove]
        return pn.Row(
            body,
            pn.Row(*buttons, width=260),
            sizing_mode="stretch_width",
            styles={"border": "1px solid #d0d7de", "border-radius": "8px", "margin": "4px 0", "padding": "2px 8px"},
        )

    # -- writing ------------------------------------------------------------------
    def _act(self, action: Any) -> None:
        """Run one change through the documents API, then show the result (or the one-line reason it failed)."""
        try:
            action()
        except (MLTrackError, ValueError, KeyError, OSError) as exc:
            self.message.object = style.banner("killed", short(exc, 300))
            return
        self.message.object = ""
        self.source.refresh()
        self._fill_lists()
        if self.doc is not None and self.doc_list.value != self.doc.doc_id:
            self.doc_list.value = self.doc.doc_id  # fires _open
        else:
            self._draw_blocks(force=True)

    def _create(self) -> None:
        title = self.new_title.value_input or self.new_title.value
        self.experiment.refresh()
        # Panel types a text value str | None; the API refuses None with a ValueError, which _act shows.
        self.doc = create_document(self.experiment, title)  # type: ignore[arg-type]
        self.new_title.value = ""
        self.new_title.value_input = ""

    def _rename(self) -> None:
        if self.doc is None:
            raise ValueError("open a document first")
        self.experiment.refresh()
        # Panel types a text value str | None; the API refuses None with a ValueError, which _act shows.
        self.doc.rename(self.title_input.value_input or self.title_input.value)  # type: ignore[arg-type]
        self.download.filename = _file_name(self.doc.title)

    def _delete(self) -> None:
        if self.doc is None:
            raise ValueError("open a document first")
        if not self._confirm_delete:
            self._confirm_delete = True
            self.delete.name = "Click again to delete"
            return
        self.doc.delete()
        self.doc = None
        self._confirm_delete = False
        self.delete.name = "Delete document"
        self.doc_list.value = None

    def _add_note(self) -> None:
        if self.doc is None or not self.note_choice.value:
            raise ValueError("open a document and choose a note first")
        self.doc.add_note(self.note_choice.value)

    def _add_plot(self) -> None:
        if self.doc is None or not self.plot_choice.value:
            raise ValueError("open a document and choose a plot first")
        self.doc.add_plot(self.plot_choice.value)

    def _edit(self, block: Block | None) -> None:
        if self.doc is None:
            self.message.object = style.banner("info", "Create or open a document first.")
            return
        if block is None:
            self.editing, text = "", ""
        elif block.kind == "note":
            note = self.notes.get(block.content) or {}
            self.editing, text = block.block_id, str(note.get("markdown") or "")
        else:
            self.editing, text = block.block_id, block.content
        self.editor.value = text
        self.editor.value_input = text
        self.preview.object = self._render(text)
        self.editor_box.visible = True

    def _save(self) -> None:
        if self.doc is None or self.editing is None:
            return
        text = self.editor.value_input if self.editor.value_input is not None else self.editor.value
        # Panel types a text value str | None; the API refuses None with a ValueError.
        if self.editing == "":
            self.doc.add_markdown(text)  # type: ignore[arg-type]
        else:
            self.doc.edit(self.editing, text)  # type: ignore[arg-type]
        self._close_editor()

    def _close_editor(self) -> None:
        self.editing = None
        self.editor_box.visible = False

    def _preview(self, event: Any) -> None:
        self.preview.object = self._render(event.new or "")

    def _render(self, text: str) -> Markup:
        return markdown_block(self.source, text, "mlt-doc")

    def _download_html(self) -> io.BytesIO:
        if self.doc is None:
            return io.BytesIO(b"")
        return io.BytesIO(self.doc.html_page().encode("utf-8"))

    def __panel__(self) -> Any:
        if self.source.remote:  # the mirror is read-only: an edit here would never reach the bucket
            from mlt_dashboard.export import documents_html

            notice = style.banner(
                "info",
                "The documents of an s3:// experiment are shown here as they are in the bucket; "
                "write notes and documents from a kernel recording into it.",
            )
            return pn.Column(html(join([notice, documents_html(self.source)])), sizing_mode="stretch_width")
        left = pn.Column(
            html(el("div", "Documents", class_="mlt-section")), self.doc_list, self.new_title, self.create, width=290
        )
        right = pn.Column(
            pn.Row(self.title_input, self.rename, self.download, self.delete),
            self.message,
            self.blocks,
            pn.Row(self.add_markdown, self.note_choice, self.add_note, self.plot_choice, self.add_plot),
            self.editor_box,
            sizing_mode="stretch_width",
        )
        return pn.Row(left, right, sizing_mode="stretch_width")


def _file_name(title: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in title).strip().replace(" ", "-")
    return (safe or "document") + ".html"
