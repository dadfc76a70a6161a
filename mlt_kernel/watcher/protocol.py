"""The lines between the kernel and its watcher: built and parsed here, nowhere else.

The kernel writes one line per message to the watcher's stdin:

```text
exp "/abs/path/to/experiment"      the folder to write into (JSON string); may change
start 12 "run-id" {"table":…}      cell 12 started (run id as JSON, or null), and
                                   optionally its journal row (status "running")
guard off                          no memory guard for the cell that just started
end 12                             cell 12 ended
stop                               write the last records, close the journal, exit
```

The watcher writes one line to its stdout when its memory guard stops a cell,
just before it signals the kernel (``guard.SIGNAL``), so that the kernel's handler
says what was read:

```text
guard 7 11731973324 12884901888    cell 7: the memory of the kernel and its children, of the limit (bytes)
```

Every line is at most ``PIPE_BUF`` bytes, so each is one atomic, non-blocking
``os.write`` on the kernel's side (a few µs on the cell path). The watcher
writes its log to stderr as ``LEVELNO LOGGER MESSAGE`` lines, which the
kernel logs again (:func:`log_line`, :func:`parse_log_line`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Seconds between samples while a cell runs (``MLTrackKernel.busy_interval``).
BUSY_INTERVAL_S = 0.05
#: Seconds between samples while the kernel is idle (``MLTrackKernel.idle_interval``).
IDLE_INTERVAL_S = 1.0
#: Shortest interval the watcher accepts.
MIN_INTERVAL_S = 0.005
#: POSIX minimum: writes up to this size are atomic on a pipe.
PIPE_BUF = 4096

STOP = b"stop\n"

#: Ids that are their own JSON once quoted (run ids are): no json.dumps per cell.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]*\Z")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class SetExperiment:
    """``exp``: write into *folder* from now on."""

    folder: Path


@dataclass(frozen=True, slots=True)
class CellStarted:
    """``start``: cell *cell_seq* began, in run *run_id*; *row* is its journal line, if sent."""

    cell_seq: int
    run_id: str | None
    row: str | None = None


@dataclass(frozen=True, slots=True)
class CellEnded:
    """``end``: cell *cell_seq* ended."""

    cell_seq: int


@dataclass(frozen=True, slots=True)
class Stop:
    """``stop``: write the last records and exit."""


@dataclass(frozen=True, slots=True)
class GuardOff:
    """``guard off``: the cell that just started runs without the memory guard."""


@dataclass(frozen=True, slots=True)
class GuardFired:
    """``guard SEQ RSS LIMIT`` (watcher to kernel): cell *cell_seq* stopped at *rss_bytes* of *limit_bytes*."""

    cell_seq: int
    rss_bytes: int
    limit_bytes: int


Message = SetExperiment | CellStarted | CellEnded | GuardOff | Stop
GUARD_OFF = b"guard off\n"


def experiment(path: str | os.PathLike[str]) -> bytes:
    """The ``exp`` line for *path* (made absolute). ``TypeError``/``ValueError`` for a bad path."""
    return b"exp " + json.dumps(os.path.abspath(os.fspath(path))).encode("utf-8", "replace") + b"\n"


def cell_started(cell_seq: int, run_id: str | None, row: bytes | None = None) -> tuple[bytes, bool]:
    """The ``start`` line and whether it carries *row* (it does only when the line fits ``PIPE_BUF``).

    ``TypeError``/``ValueError`` for a cell number that is not an integer.
    """
    if not isinstance(run_id, str):
        run = "null"
    else:
        run = f'"{run_id}"' if _PLAIN_ID.match(run_id) else json.dumps(run_id)
    head = f"start {int(cell_seq)} {run}".encode("utf-8", "replace")
    if row is not None:
        line = head + b" " + (row if row.endswith(b"\n") else row + b"\n")
        if len(line) <= PIPE_BUF:
            return line, True
    return head + b"\n", False


def cell_ended(cell_seq: int) -> bytes:
    """The ``end`` line. ``TypeError``/``ValueError`` for a cell number that is not an integer."""
    return f"end {int(cell_seq)}\n".encode()


def parse(line: str) -> Message | None:
    """The message of one line (without its newline); None for a blank line.

    Raises:
        ValueError: an unknown verb or a malformed line (the message names it).
    """
    verb, _, rest = line.strip().partition(" ")
    try:
        if verb == "start":
            seq, _, rest = rest.partition(" ")
            run, end = _DECODER.raw_decode(rest) if rest else (None, 0)
            return CellStarted(int(seq), run if isinstance(run, str) else None, rest[end:].strip() or None)
        if verb == "end":
            return CellEnded(int(rest))
        if verb == "exp":
            folder = json.loads(rest)
            if not isinstance(folder, str) or not folder:
                raise ValueError("the folder is not a string")
            return SetExperiment(Path(folder))
        if verb == "stop" and not rest:
            return Stop()
        if verb == "guard" and rest == "off":
            return GuardOff()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed message {line[:200]!r}") from exc
    if not verb:
        return None
    raise ValueError(f"unknown message {line[:200]!r}")


def guard_fired(cell_seq: int, rss_bytes: int, limit_bytes: int) -> bytes:
    """The ``guard`` line the watcher writes to the kernel."""
    return f"guard {int(cell_seq)} {int(rss_bytes)} {int(limit_bytes)}\n".encode()


def parse_guard_fired(line: str) -> GuardFired | None:
    """The ``guard`` line of the watcher, or None for anything else."""
    verb, _, rest = line.strip().partition(" ")
    numbers = rest.split()
    if verb != "guard" or len(numbers) != 3 or not all(n.isascii() and n.isdigit() for n in numbers):
        return None
    return GuardFired(int(numbers[0]), int(numbers[1]), int(numbers[2]))


def log_line(record: logging.LogRecord, message: str) -> str:
    """One log record as the watcher writes it to stderr: ``LEVELNO LOGGER MESSAGE``."""
    return f"{record.levelno} {record.name} {message.replace(chr(10), ' | ')}"


def parse_log_line(text: str) -> tuple[int, str, str] | None:
    """``(level, logger, message)`` of a watcher log line, or None for other text."""
    level, _, rest = text.rstrip("\n").partition(" ")
    name, _, message = rest.partition(" ")
    if level.isdigit() and name.startswith("mlt_kernel"):
        return int(level), name, message
    return None


__all__ = [
    "BUSY_INTERVAL_S",
    "GUARD_OFF",
    "IDLE_INTERVAL_S",
    "MIN_INTERVAL_S",
    "PIPE_BUF",
    "STOP",
    "CellEnded",
    "CellStarted",
    "GuardFired",
    "GuardOff",
    "Message",
    "SetExperiment",
    "Stop",
    "cell_ended",
    "cell_started",
    "experiment",
    "guard_fired",
    "log_line",
    "parse",
    "parse_guard_fired",
    "parse_log_line",
]
