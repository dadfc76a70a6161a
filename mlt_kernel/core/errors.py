"""Errors and warnings of MLTrack.

Each error also subclasses the nearest builtin, so ``except ValueError`` in a
user's code keeps working.
"""

from __future__ import annotations


class MLTrackError(Exception):
    """Base class of every MLTrack error."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: our errors are one line.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class DirectiveError(MLTrackError, ValueError):
    """A malformed ``# mlt:`` directive; the cell does not run."""


class NotRecordingError(MLTrackError, RuntimeError):
    """A logging call outside the MLTrack kernel (or ``%load_ext mlt_kernel``)."""


class RunError(MLTrackError, RuntimeError):
    """A run was started inside an open run, stopped when none is open, or not found."""


class UnknownRunError(MLTrackError, KeyError):
    """No run (or more than one) answers to the given name or id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PlotPathError(MLTrackError, ValueError):
    """A plot name that escapes the experiment folder."""


class UnsafeFileError(MLTrackError, OSError):
    """A file of an experiment folder that is not opened.

    It is reached through a symbolic link, is not a regular file (a FIFO, a
    device, a folder), or lies outside the folder it must be in. The message
    names the path and why (see ``mlt_kernel.core.safeio``); ``path`` and ``reason`` keep them.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}; not opened")
        self.path = path
        self.reason = reason


class FileTooLargeError(MLTrackError, OSError):
    """A file of an experiment folder is larger than the limit for what it holds.

    The message names the file and the limit; ``path``, ``limit`` and ``reason`` keep them.
    """

    def __init__(self, path: str, limit: int, what: str = "file") -> None:
        reason = f"{what} larger than {limit} bytes"
        super().__init__(f"{path}: {reason}; not read")
        self.path = path
        self.limit = limit
        self.reason = reason


class DocumentNotFoundError(MLTrackError, KeyError):
    """No document has that title."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DocumentExistsError(MLTrackError, ValueError):
    """Another document already has that title."""


class BlockNotFoundError(MLTrackError, KeyError):
    """The document has no block with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MemoryGuardInterrupt(KeyboardInterrupt):
    """Raised in a running cell by the memory guard, before the out-of-memory killer ends the kernel.

    A ``KeyboardInterrupt``, so code that stops cleanly on Ctrl-C stops cleanly
    here too; the kernel and its variables stay. The message says how much
    memory was in use, of what limit, and which variables are the largest.
    """

    _render_traceback_ = MLTrackError._render_traceback_  # one line, like every MLTrack error


class MLTrackWarning(UserWarning):
    """Base class of MLTrack's warnings."""


class DamagedFileWarning(MLTrackWarning):
    """A file of the experiment folder could not be read and was skipped."""
