"""What tracking code needs of the session it records into: a narrow protocol.

Notes, predictions and the hooks write through a ``Session`` and never see the
recorder behind it (``mlt_kernel.recording.recorder.Recorder`` implements it),
so this layer imports nothing above it and a test can hand it a small fake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class OpenRun(Protocol):
    """The run open in a session."""

    @property
    def run_id(self) -> str: ...

    @property
    def name(self) -> str: ...


class Session(Protocol):
    """One recording session (one kernel process), as tracking code sees it."""

    @property
    def session_id(self) -> str: ...

    @property
    def notebook(self) -> str | None:
        """The notebook's path, when the frontend tells it."""

    @property
    def log(self) -> logging.Logger: ...

    @property
    def run(self) -> OpenRun | None:
        """The open run, if any."""

    @property
    def pending_cell(self) -> dict[str, Any] | None:
        """The record of the cell running now (``None`` between cells)."""

    def wanted_path(self) -> Path:
        """The experiment folder records go to now."""

    def folder(self) -> Path:
        """The experiment folder records go to now, opened for writing."""

    def write(self, table: str, record: Mapping[str, Any]) -> Path:
        """Append *record* to *table* in the current folder; returns the folder."""

    def add_to_document(self, title: str, note_id: str) -> None:
        """Append note *note_id* to document *title* once (created if needed), off the kernel."""


__all__ = ["OpenRun", "Session"]
