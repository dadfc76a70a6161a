"""Hooks measure one aspect of a cell; the recorder runs them around every cell.

A hook fills fields of the cell's record in ``pre_cell``/``post_cell``. The
recorder calls each hook inside one guarded boundary: a failing hook is logged
to the kernel log and never reaches the user's cell. Hooks run on the reply
path of every cell, so a cell that did nothing special costs a few ``/proc``
reads; only what the cell itself produced (a figure it saved or displayed)
costs more (hashing and saving that figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class CellContext:
    """The cell being recorded: its record so far and what hooks keep between calls."""

    record: dict[str, Any]
    result: Any = None  #: IPython's ExecutionResult, in ``post_cell``
    scratch: dict[str, Any] = field(default_factory=dict)


class Hook:
    """Base class: override ``pre_cell`` and/or ``post_cell``."""

    name: ClassVar[str] = ""

    def pre_cell(self, cell: CellContext) -> None:
        """Called just before the cell's code runs."""

    def post_cell(self, cell: CellContext) -> None:
        """Called just after the cell's code ran (also when it failed)."""

    def close(self) -> None:
        """Release what the hook holds (end of session)."""


REGISTRY: dict[str, type[Hook]] = {}


def register(cls: type[Hook]) -> type[Hook]:
    """Class decorator: make a hook available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def default_hooks() -> list[Hook]:
    """The hooks of every session, in the order their ``pre_cell`` runs."""
    from . import gpu, memory, plots, timing  # noqa: F401  (registration)

    # "plots" first: its post_cell (hashing, saving inline figures) then runs after
    # the others have measured the cell, so its I/O never counts as the cell's.
    return [REGISTRY[name]() for name in ("plots", "memory", "gpu", "timing")]
