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


class MLTrackWarning(UserWarning):
    """Base class of MLTrack's warnings."""


class DamagedFileWarning(MLTrackWarning):
    """A file of the experiment folder could not be read and was skipped."""
