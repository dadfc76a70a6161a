"""Documents: a titled, ordered list of blocks — Markdown text, notes and plots.

The API has no UI in it: note cells (``# mlt: note doc=…``) and the dashboard's
editor both call it. Every change is a new row ("a file, once written, is never
rewritten"): a document is a ``documents`` row and each block a ``blocks`` row
of its own, ordered by a fractional ``position``. Adding, editing, moving or
deleting a block writes exactly one row, so two processes editing a document
at once never lose each other's blocks (for the same block, the last write wins).

Where rows go: a kernel passes its recorder's journal (``write=recorder.write``);
anyone else — the dashboard, a script — writes a small Parquet file per change
through ``store.write_records``. Reads always go through ``Experiment``,
refreshed first, so each side sees what the other wrote.

```python
doc = create_document("exp/churn", "Findings")
intro = doc.add_markdown("# Churn\\nRandom forests win.")
doc.add_plot("roc.png")
doc.move(intro.block_id, +1)
doc.export_html("findings.html")   # one self-contained, offline file
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlt_kernel.core import layout
from mlt_kernel.core.errors import (
    BlockNotFoundError,
    DocumentExistsError,
    DocumentNotFoundError,
    MLTrackError,
)
from mlt_kernel.core.names import MAX_TITLE_CHARS, clean_title, plot_name
from mlt_kernel.core.schema import BLOCKS, DOCUMENTS, NOTES
from mlt_kernel.store.journal import now_us
from mlt_kernel.tracking import document_html
from mlt_kernel.tracking.blocks import KINDS, MAX_BLOCK_BYTES, MAX_DOCUMENT_BYTES, Block
from mlt_kernel.tracking.document_html import plot_image, render_block

if TYPE_CHECKING:
    import pandas as pd

    from mlt_kernel.read.experiment import Experiment

#: How a document writes a row: ``write(table, record)``.
Writer = Callable[[str, Mapping[str, Any]], Any]


def list_documents(experiment: Experiment | str | os.PathLike[str]) -> pd.DataFrame:
    """``doc_id, title, created_at, blocks`` of every document (see ``Experiment.documents``)."""
    return _experiment(experiment).documents()


def create_document(experiment: Experiment | str | os.PathLike[str], title: str) -> Document:
    """A new, empty document; ``DocumentExistsError`` when the title is taken."""
    return Document.create(experiment, title)


class Document:
    """A document of an experiment; get one with :meth:`open` or :meth:`create`."""

    def __init__(
        self, experiment: Experiment, doc_id: str, title: str, created_at: int, *, write: Writer | None = None
    ) -> None:
        self.experiment = experiment
        self.doc_id = doc_id
        self.title = title
        self.created_at = created_at  #: microseconds since the epoch (UTC)
        self._write = write or _parquet_writer(experiment.path)

    def __repr__(self) -> str:
        return f"Document({self.title!r}, doc_id={self.doc_id!r})"

    # -- finding and creating --------------------------------------------------
    @classmethod
    def open(
        cls, experiment: Experiment | str | os.PathLike[str], title: str, *, write: Writer | None = None
    ) -> Document:
        """The document called *title*; ``DocumentNotFoundError`` (a ``KeyError``) names the known ones.

        *write* sends rows elsewhere than a new Parquet file per change (a kernel
        passes its recorder's ``write``).
        """
        exp = _experiment(experiment)
        row = _find(exp, clean_title(title))
        if row is None:
            titles = exp.sql("SELECT title FROM documents WHERE NOT coalesce(deleted, false) ORDER BY created_at")[
                "title"
            ].tolist()
            known = ", ".join(repr(t) for t in titles[:10]) + (", …" if len(titles) > 10 else "") or "none yet"
            raise DocumentNotFoundError(f"no document {title!r} in {exp.path}; documents: {known}")
        return cls(exp, row["doc_id"], row["title"], int(row["created_at"]), write=write)

    @classmethod
    def create(
        cls, experiment: Experiment | str | os.PathLike[str], title: str, *, write: Writer | None = None
    ) -> Document:
        """A new, empty document; ``DocumentExistsError`` when the title is taken."""
        exp = _experiment(experiment)
        text = clean_title(title)
        if _find(exp, text) is not None:
            raise DocumentExistsError(f"a document {text!r} already exists in {exp.path}")
        doc = cls(exp, layout.new_writer_id(), text, now_us(), write=write)
        doc._write_document(deleted=False)
        return doc

    # -- reading ---------------------------------------------------------------
    def blocks(self) -> list[Block]:
        """The blocks in order (deleted ones left out)."""
        df = self.experiment.sql(
            "SELECT block_id, kind, content, position FROM blocks "
            "WHERE doc_id = ? AND NOT coalesce(deleted, false) ORDER BY position, block_id",
            [self.doc_id],
        )
        return [
            Block(str(r.block_id), str(r.kind), "" if r.content is None else str(r.content), float(r.position))
            for r in df.itertuples(index=False)
        ]

    def references_note(self, note_id: str) -> bool:
        """Whether a block of this document refers, or referred before it was deleted, to the note."""
        df = self.experiment.sql(
            "SELECT count(*) AS n FROM blocks WHERE doc_id = ? AND kind = 'note' AND content = ?",
            [self.doc_id, note_id],
        )
        return bool(df["n"].iloc[0])

    # -- editing ---------------------------------------------------------------
    def add_markdown(self, text: str, after: str | None = None) -> Block:
        """Add a Markdown block at the end, or after the block *after*."""
        if not isinstance(text, str):
            raise ValueError(f"a Markdown block is text, got {type(text).__name__}")
        return self._add("markdown", _checked_text(text), after)

    def add_note(self, note_id: str, after: str | None = None) -> Block:
        """Add a block showing the note (and its plot); ``KeyError`` for an unknown note."""
        found = self.experiment.sql(
            "SELECT count(*) AS n FROM notes WHERE note_id = ? AND NOT coalesce(deleted, false)", [note_id]
        )
        if not found["n"].iloc[0]:
            raise KeyError(f"no note {note_id!r} in {self.experiment.path}")
        return self._add("note", note_id, after)

    def add_plot(self, file: str, after: str | None = None) -> Block:
        """Add a block showing ``plots/{file}`` (it may appear later)."""
        return self._add("plot", plot_name(file, self.experiment.path), after)

    def edit(self, block_id: str, text: str) -> Block:
        """Replace the text of a Markdown block, or of the note a note block shows."""
        if not isinstance(text, str):
            raise ValueError(f"a block's text is a string, got {type(text).__name__}")
        _checked_text(text)
        block = self._block(block_id)
        if block.kind == "markdown":
            edited = replace(block, content=text)
            self._write_block(edited)
            return edited
        if block.kind == "note":
            self._edit_note(block.content, text)
            return block
        raise ValueError(f"block {block_id!r} shows plot {block.content!r}; a plot block has no text to edit")

    def move(self, block_id: str, offset: int) -> Block:
        """Move a block *offset* places down (positive) or up (negative); one new row."""
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise ValueError(f"offset must be an integer, got {offset!r}")
        blocks = self.blocks()
        index = _index(blocks, block_id)
        block = blocks.pop(index)
        target = max(0, min(len(blocks), index + offset))
        if target == index:
            return block
        moved = replace(block, position=self._slot(blocks, target))
        self._write_block(moved)
        return moved

    def delete_block(self, block_id: str) -> None:
        """Remove a block from the document."""
        self._write_block(self._block(block_id), deleted=True)

    def rename(self, new_title: str) -> None:
        """Give the document another title, unique in the experiment."""
        text = clean_title(new_title)
        if text == self.title:
            return
        other = _find(self.experiment, text)
        if other is not None and other["doc_id"] != self.doc_id:
            raise DocumentExistsError(f"a document {text!r} already exists in {self.experiment.path}")
        self.title = text
        self._write_document(deleted=False)

    def delete(self) -> None:
        """Delete the document (its rows stay in the folder's history)."""
        self._write_document(deleted=True)

    # -- HTML ------------------------------------------------------------------
    def to_html(self) -> str:
        """The blocks as sanitised HTML, plots embedded as ``data:`` URIs (a page body)."""
        blocks = self.blocks()
        notes = self._notes([b.content for b in blocks if b.kind == "note"])
        return document_html.blocks_html(self.experiment.path, blocks, notes)

    def html_page(self) -> str:
        """The document as one self-contained, offline, printable HTML page (what :meth:`export_html` writes)."""
        return document_html.page(self.title, self.to_html())

    def export_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the document as one self-contained, offline, printable HTML file."""
        target = Path(path)
        target.write_text(self.html_page(), encoding="utf-8")
        return target

    # -- internals -------------------------------------------------------------
    def _add(self, kind: str, content: str, after: str | None) -> Block:
        blocks = self.blocks()
        index = len(blocks) if after is None else _index(blocks, after) + 1
        block = Block(layout.new_writer_id(), kind, content, self._slot(blocks, index))
        self._write_block(block)
        return block

    def _slot(self, blocks: list[Block], index: int) -> float:
        """A position that sorts between ``blocks[index - 1]`` and ``blocks[index]``."""
        low = blocks[index - 1].position if index > 0 else None
        high = blocks[index].position if index < len(blocks) else None
        if low is None:
            return 1.0 if high is None else high - 1.0
        if high is None:
            return low + 1.0
        middle = (low + high) / 2
        if low < middle < high:
            return middle
        # No room left between them (or two writers chose the same position): renumber once.
        blocks[:] = [replace(b, position=float(i + 1)) for i, b in enumerate(blocks)]
        for b in blocks:
            self._write_block(b)
        return self._slot(blocks, index)

    def _block(self, block_id: str) -> Block:
        blocks = self.blocks()
        return blocks[_index(blocks, block_id)]

    def _write_block(self, block: Block, *, deleted: bool = False) -> None:
        self._write(
            BLOCKS.name,
            {
                "block_id": block.block_id,
                "doc_id": self.doc_id,
                "position": block.position,
                "kind": block.kind,
                "content": block.content,
                "deleted": deleted,
            },
        )

    def _write_document(self, *, deleted: bool) -> None:
        self._write(
            DOCUMENTS.name,
            {"doc_id": self.doc_id, "title": self.title, "deleted": deleted, "created_at": self.created_at},
        )

    def _edit_note(self, note_id: str, text: str) -> None:
        df = self.experiment.sql(
            "SELECT note_id, session_id, execution_count, cell_id, run_id, plot, doc, "
            "epoch_us(created_at) AS created_at FROM notes WHERE note_id = ?",
            [note_id],
        )
        if df.empty:
            raise KeyError(f"no note {note_id!r} in {self.experiment.path}")
        row = {k: _plain(v) for k, v in df.iloc[0].to_dict().items()}
        self._write(NOTES.name, {**row, "markdown": text, "deleted": False})

    def _notes(self, note_ids: list[str]) -> dict[str, tuple[str | None, str]]:
        """``note_id -> (plot, markdown)`` of the notes that still exist."""
        if not note_ids:
            return {}
        df = self.experiment.sql(
            "SELECT note_id, plot, markdown FROM notes "
            "WHERE list_contains(?::VARCHAR[], note_id) AND NOT coalesce(deleted, false)",
            [note_ids],
        )
        return {
            str(r.note_id): (_plain(r.plot), "" if _plain(r.markdown) is None else str(r.markdown))
            for r in df.itertuples(index=False)
        }


def _experiment(experiment: Experiment | str | os.PathLike[str]) -> Experiment:
    from mlt_kernel.read.experiment import Experiment

    return experiment if isinstance(experiment, Experiment) else Experiment(experiment)


def _checked_text(text: str) -> str:
    """*text*, when it fits in a block (``MAX_BLOCK_BYTES``); else ``ValueError`` naming the limit."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BLOCK_BYTES:
        raise ValueError(f"a document block holds at most {MAX_BLOCK_BYTES} bytes of text, got {size}")
    return text


def _find(exp: Experiment, title: str) -> dict[str, Any] | None:
    """``doc_id, title, created_at`` of the oldest live document called *title*."""
    df = exp.sql(
        "SELECT doc_id, title, epoch_us(created_at) AS created_at FROM documents "
        "WHERE title = ? AND NOT coalesce(deleted, false) ORDER BY created_at, doc_id LIMIT 1",
        [title],
    )
    return None if df.empty else df.iloc[0].to_dict()


def _index(blocks: list[Block], block_id: str) -> int:
    for i, block in enumerate(blocks):
        if block.block_id == block_id:
            return i
    raise BlockNotFoundError(f"no block {block_id!r} in this document")


def _parquet_writer(exp_path: Path) -> Writer:
    def write(table: str, record: Mapping[str, Any]) -> None:
        from mlt_kernel.store import parquet as store

        store.write_records(exp_path, table, [record])

    return write


def _plain(value: Any) -> Any:
    """A pandas cell as a plain Python value (missing values as None)."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def append_note(experiment: Experiment | str | os.PathLike[str], title: str, note_id: str) -> Block | None:
    """Append note *note_id* to document *title* once, creating the document if needed.

    Returns the new block, or None when a block of the document refers (or
    referred, before it was deleted) to the note already.
    """
    exp = _experiment(experiment)
    try:
        document = Document.open(exp, title)
    except DocumentNotFoundError:
        document = Document.create(exp, title)
    if document.references_note(note_id):
        return None
    return document.add_note(note_id)


def unattached_notes(experiment: Experiment | str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(title, note_id)`` of every ``doc=`` note that no block of any document refers to.

    What a kernel that ended before its helper ran leaves behind. A note whose
    block was deleted, or whose document was renamed, is referred to, and stays
    as the user left it.
    """
    exp = _experiment(experiment)
    df = exp.sql(
        "SELECT n.doc, n.note_id FROM notes n WHERE n.doc IS NOT NULL AND NOT coalesce(n.deleted, false) "
        "AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.kind = 'note' AND b.content = n.note_id) "
        "ORDER BY n.created_at, n.note_id"
    )
    return [(str(title), str(note_id)) for title, note_id in df.itertuples(index=False)]


def main(argv: list[str] | None = None) -> int:
    """``python -m mlt_kernel.tracking.documents append-notes [--pending] EXP -- [TITLE NOTE_ID]...``.

    What a kernel runs for its ``doc=`` notes, so that finding the documents
    (DuckDB) happens outside the kernel: each note is appended to its document
    once, in the order given; ``--pending`` also appends the notes no document
    refers to yet (a kernel that ended first). One line on stderr per failure.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m mlt_kernel.tracking.documents")
    commands = parser.add_subparsers(dest="command", required=True)
    append = commands.add_parser("append-notes", help="append notes to their documents, once each")
    append.add_argument("--pending", action="store_true", help="also the notes no document refers to yet")
    append.add_argument("experiment")
    append.add_argument("pairs", nargs="*", metavar="TITLE NOTE_ID", help="after --: a title and a note id, each")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a title and a note id for each note")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    failed = 0
    try:
        with _experiment(args.experiment) as exp:
            if args.pending:
                pairs += [pair for pair in unattached_notes(exp) if pair not in pairs]
            for title, note_id in pairs:
                try:
                    append_note(exp, title, note_id)
                    exp.refresh()
                except (MLTrackError, ValueError, KeyError) as exc:
                    print(f"MLTrack: note {note_id} was not added to document {title!r}: {exc}", file=sys.stderr)
                    failed += 1
    except (MLTrackError, OSError, ValueError) as exc:
        print(f"MLTrack: the notes of {args.experiment} were not added to their documents: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


__all__ = [
    "KINDS",
    "MAX_BLOCK_BYTES",
    "MAX_DOCUMENT_BYTES",
    "MAX_TITLE_CHARS",
    "Block",
    "BlockNotFoundError",
    "Document",
    "DocumentExistsError",
    "DocumentNotFoundError",
    "Writer",
    "append_note",
    "clean_title",
    "create_document",
    "list_documents",
    "plot_image",
    "render_block",
    "unattached_notes",
]


if __name__ == "__main__":
    raise SystemExit(main())
