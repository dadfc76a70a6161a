"""Notes: Markdown written while working, tied to a plot and/or a document.

A note comes from a ``# mlt: note [plot=FILE] [doc=TITLE]`` cell, from
``mlt.note(markdown, plot=, doc=)``, from a Markdown cell tagged
``<!-- mlt: note … -->`` in the saved notebook (``recording.notebook_notes``), or
from a text file beside a plot (``plots/roc.txt`` is the note of
``plots/roc.png``; ``hooks.plots`` finds them).

Re-running keeps one note: its ``note_id`` is derived from where it comes from,
so a re-run writes a new version of the same row (readers take the latest):

- the frontend sends a cell id: the notebook path (when known), the cell id and
  the note's place among the notes of that cell execution. Re-running or editing
  the cell updates the note, also in a later session;
- no cell id (a bare jupyter_client, some headless runners): the session, the
  plot, the document and the note's first line. Editing the body and re-running
  updates the note; a different first line makes a new one;
- a Markdown cell: the notebook's path and the cell's id (its first line in a
  notebook older than nbformat 4.5, which has no cell ids). Saving the edited
  cell updates the note;
- a text file beside a plot: the file's path.

A note with ``doc=TITLE`` is appended to that document once (the document is
created if needed); re-running it, or deleting its block in the editor, never
makes a second block. Finding the document means reading the experiment, which
the kernel never does: the session hands it to a helper process
(``python -m mlt_kernel.tracking.documents append-notes``), and the block shows
within about a second; other notes only append a journal line. A note still
waiting when the kernel shuts down is added by the next session that opens the
folder.

Notes are untrusted (a teammate's shared folder): stored verbatim, rendered
only through ``mlt_kernel.tracking.render``. A note holds at most ``MAX_NOTE_BYTES``
(1 MiB) of UTF-8; a text file beside a plot is read without following links
and only when it is a regular file of at most that size (``mlt_kernel.core.safeio``).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.names import PLOT_SUFFIXES, clean_title, plot_name
from mlt_kernel.core.schema import NOTES
from mlt_kernel.store.journal import now_us
from mlt_kernel.tracking.session import Session

#: Largest note (UTF-8 bytes), from a cell, ``mlt.note()`` or a ``plots/NAME.txt`` file.
MAX_NOTE_BYTES = safeio.MAX_NOTE_BYTES
#: Largest ``plots/NAME.txt`` read as a note; a bigger file is not a note.
MAX_TEXT_NOTE_BYTES = MAX_NOTE_BYTES


# Per session: (session_id, cell_seq) of the cell seen last and how many notes it made.
_cell_notes: weakref.WeakKeyDictionary[Session, tuple[tuple[str, int], int]] = weakref.WeakKeyDictionary()
# note_id -> created_at of notes written by this process, kept when a note is updated.
_created: dict[str, int] = {}


def record_note(
    session: Session,
    markdown: str,
    *,
    plot: str | None = None,
    doc: str | None = None,
    display: bool = False,
) -> str:
    """Store *markdown* as a note of the cell being run; returns its ``note_id``.

    *plot* ties the note to a plot file name (it may not exist yet); *doc*
    appends the note to that document. With *display*, the Markdown becomes
    the cell's output (``text/markdown``; the frontend renders and sanitises it).
    """
    _check_text(markdown)
    plot_file = None if plot is None else plot_name(plot, session.wanted_path())
    title = None if doc is None else clean_title(doc)
    cell = session.pending_cell or {}
    note_id = _note_id(session, cell, markdown, plot_file, title)
    _write_note(session, note_id, cell, markdown, plot_file, title)
    if display:
        from IPython.display import display as show

        show({"text/markdown": markdown, "text/plain": markdown}, raw=True)  # type: ignore[no-untyped-call]
    if title is not None:
        session.add_to_document(title, note_id)
    return note_id


def record_markdown_note(
    session: Session,
    notebook: str,
    key: str,
    markdown: str,
    *,
    cell_id: str | None = None,
    plot: str | None = None,
    doc: str | None = None,
    recorded: str | None = None,
) -> bool:
    """Store the note of a tagged Markdown cell of *notebook*; whether it was written.

    *key* is the cell's id (or, without one, its first line): the same cell
    saved again is a new version of the same note (``markdown_note_id``). The
    note belongs to no run and no execution (nothing ran). Nothing is written
    when *recorded*, the :func:`note_digest` of the note as stored, says the same.

    Raises:
        ValueError: the note is not text, or too long.
        PlotPathError: *plot* is not a plot file name.
        ValueError: *doc* is not a valid title (see ``clean_title``).
    """
    _check_text(markdown)
    plot_file = None if plot is None else plot_name(plot, session.wanted_path())
    title = None if doc is None else clean_title(doc)
    if recorded is not None and recorded == note_digest(markdown, plot_file, title):
        return False
    note_id = markdown_note_id(notebook, key)
    _write_note(session, note_id, {"cell_id": cell_id}, markdown, plot_file, title, in_run=False)
    if title is not None:
        session.add_to_document(title, note_id)
    return True


def markdown_note_id(notebook: str, key: str) -> str:
    """The ``note_id`` of the Markdown cell *key* (its id, or first line) of *notebook*."""
    return _hash_id("n", ("markdown", notebook, key))


def note_digest(markdown: str, plot: str | None, doc: str | None) -> str:
    """What a note says (text, plot file, document title) as a hash: whether a stored note says the same."""
    return hashlib.sha1(json.dumps([markdown, plot, doc]).encode("ascii")).hexdigest()


def record_text_note(session: Session, exp_path: Path, txt_name: str, cell: dict[str, Any]) -> str | None:
    """Record ``{exp_path}/plots/{txt_name}`` as the note of the plot beside it.

    The file is read without following a link, ``plots/`` included.

    Returns the note's id, or None when the file is gone.

    Raises:
        UnsafeFileError: ``plots/`` or the file is a link, or the file is not a regular file.
        FileTooLargeError: the file holds more than ``MAX_TEXT_NOTE_BYTES``.
    """
    path = exp_path / layout.PLOTS / txt_name
    try:
        data = safeio.read_bytes(f"{layout.PLOTS}/{txt_name}", MAX_TEXT_NOTE_BYTES, beneath=exp_path, what="note")
    except FileNotFoundError:
        return None
    markdown = data.decode("utf-8", "replace")
    source = ("file", f"{layout.PLOTS}/{txt_name}")
    note_id = _hash_id("n", source)
    _write_note(session, note_id, cell, markdown, sibling_plot(path), None)
    return note_id


def sibling_plot(txt: Path) -> str:
    """The plot a ``NAME.txt`` note explains: the first ``NAME.<image>`` present, else ``NAME.png``."""
    for suffix in PLOT_SUFFIXES:
        if safeio.regular_file(txt.parent, txt.stem + suffix) is not None:  # a link is no plot
            return txt.stem + suffix
    return txt.stem + PLOT_SUFFIXES[0]


def _write_note(
    session: Session,
    note_id: str,
    cell: dict[str, Any],
    markdown: str,
    plot: str | None,
    doc: str | None,
    *,
    in_run: bool = True,
) -> Path:
    run = session.run if in_run else None
    record = {
        "note_id": note_id,
        "session_id": session.session_id,
        "execution_count": cell.get("execution_count"),
        "cell_id": cell.get("cell_id"),
        "run_id": run.run_id if run is not None else cell.get("run_id"),
        "plot": plot,
        "doc": doc,
        "markdown": markdown,
        "created_at": _created.setdefault(note_id, now_us()),
        "deleted": False,
    }
    return session.write(NOTES.name, record)


def _check_text(markdown: Any) -> None:
    if not isinstance(markdown, str):
        raise ValueError(f"a note is Markdown text, got {type(markdown).__name__}")
    size = len(markdown.encode("utf-8", "surrogatepass"))
    if size > MAX_NOTE_BYTES:
        raise ValueError(f"a note holds at most {MAX_NOTE_BYTES} bytes of text, got {size}")


def _note_id(session: Session, cell: dict[str, Any], markdown: str, plot: str | None, doc: str | None) -> str:
    """A stable id: the same note cell re-run gets the same id (see the module docs)."""
    cell_id = cell.get("cell_id")
    if cell_id:
        source: tuple[Any, ...] = ("cell", session.notebook or "", cell_id, _ordinal(session, cell))
    else:
        source = ("session", session.session_id, plot or "", doc or "", _first_line(markdown))
    return _hash_id("n", source)


def _hash_id(prefix: str, source: tuple[Any, ...]) -> str:
    digest = hashlib.sha1(json.dumps(source, default=str).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:20]}"


def _ordinal(session: Session, cell: dict[str, Any]) -> int:
    """0 for the first note of this cell execution, 1 for the next, …"""
    key = (str(cell.get("session_id")), int(cell.get("cell_seq") or 0))
    last_key, count = _cell_notes.get(session, (None, 0))
    count = count if last_key == key else 0
    _cell_notes[session] = (key, count + 1)
    return count


def _first_line(markdown: str) -> str:
    return next((line.strip() for line in markdown.splitlines() if line.strip()), "")


__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_TEXT_NOTE_BYTES",
    "markdown_note_id",
    "note_digest",
    "record_markdown_note",
    "record_note",
    "record_text_note",
    "sibling_plot",
]
