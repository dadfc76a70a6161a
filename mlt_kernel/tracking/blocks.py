"""The blocks of a document: Markdown text, a note, or a plot."""

from __future__ import annotations

from dataclasses import dataclass

from mlt_kernel.core import safeio

KINDS = ("markdown", "note", "plot")
#: Largest Markdown block (UTF-8 bytes), as for a note.
MAX_BLOCK_BYTES = safeio.MAX_NOTE_BYTES
#: Most HTML one document renders into (its text and embedded plots): the
#: blocks past it are left out of the page, with a line that says so.
MAX_DOCUMENT_BYTES = 128 << 20


@dataclass(frozen=True)
class Block:
    """One block of a document."""

    block_id: str
    kind: str  #: ``markdown``, ``note`` or ``plot``
    content: str  #: Markdown text, a note id, or a plot file name in ``plots/``
    position: float  #: blocks sort by position


__all__ = ["KINDS", "MAX_BLOCK_BYTES", "MAX_DOCUMENT_BYTES", "Block"]
