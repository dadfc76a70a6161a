"""Hooks measure one aspect of a cell; the recorder runs them around every cell.

A hook fills fields of the cell's record in ``pre_cell``/``post_cell``, which
run on the reply path of every cell and only measure (a few ``/proc`` reads).
What can wait goes in ``finish_cell``, which the recorder calls once the reply
has gone (before the next cell starts): looking for figures the cell saved or
displayed, and hashing and saving them. The recorder calls each hook inside one
guarded boundary: a failing hook is logged to the kernel log and never reaches
the user's cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from mlt_kernel.tracking.session import Session


class HookSession(Session, Protocol):
    """What a hook may use of its session: the tracking ``Session`` and the IPython shell."""

    @property
    def shell(self) -> Any: ...


@dataclass
class CellContext:
    """The cell being recorded: its record so far, its session, and what hooks keep between calls."""

    record: dict[str, Any]
    session: HookSession | None = None  #: None only where a hook is driven without a session (tests)
    result: Any = None  #: IPython's ExecutionResult, in ``post_cell``
    scratch: dict[str, Any] = field(default_factory=dict)


class Hook:
    """Base class: override ``pre_cell``, ``post_cell`` and/or ``finish_cell``."""

    name: ClassVar[str] = ""

    def pre_cell(self, cell: CellContext) -> None:
        """Called just before the cell's code runs."""

    def post_cell(self, cell: CellContext) -> None:
        """Called just after the cell's code ran (also when it failed)."""

    def finish_cell(self, cell: CellContext) -> None:
        """Called after the cell's reply was sent, before its record is written."""

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
    from mlt_kernel.hooks import gpu, memory, plots, timing  # noqa: F401  (registration)

    # "plots" first: its post_cell (the end of the inline capture) then runs
    # after the others have measured the cell.
    return [REGISTRY[name]() for name in ("plots", "memory", "gpu", "timing")]
