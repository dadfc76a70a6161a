"""Runs: a cell (``# mlt: record name=…``), a span of cells (``record start``), or a piece of code
(``mlt.start``/``mlt.stop``, ``with mlt.run(…)``), which may open and close anywhere, several in one cell."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass(eq=False)
class Run:
    """A run: what ``mlt.start`` and ``mlt.run`` return (``id``, ``name``, ``params``).

    A context manager: ``with mlt.run("lr", C=1.0) as run:`` ends the run when
    the block ends, as ``error`` when the block raised (the exception goes on).
    ``str(run)`` is its id, so code that kept the id ``mlt.start`` used to return
    goes on working.
    """

    run_id: str
    name: str
    params: dict[str, Any]
    started_at: int
    span: bool  #: spans cells (``record start`` / ``mlt.start``) rather than one cell
    code: bool = False  #: opened from code: its times and peak are its own, not its cells'
    parent_run_id: str | None = None  #: the run it was started in
    first_cell_seq: int | None = None
    last_cell_seq: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    stop_status: str | None = None  #: set when asked to stop while a cell runs
    folders: set[Path] = field(default_factory=set)  #: where its rows were written
    is_open: bool = True
    peak_token: int | None = None  #: its scope in ``hooks.memory.Peaks`` (code runs)
    rss_at_start: int | None = None
    user_keys: set[str] = field(default_factory=set)  #: params the user set (autolog does not replace them)
    _since: tuple[float, float] | None = None  #: (wall, CPU) clocks when its current stretch began
    _end: Callable[[Run, str], None] | None = None  #: how the recorder ends it

    @property
    def id(self) -> str:
        return self.run_id

    def __str__(self) -> str:
        return self.run_id

    def __repr__(self) -> str:
        state = "open" if self.is_open else "ended"
        return f"Run(name={self.name!r}, id={self.run_id!r}, params={self.params!r}, {state})"

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.is_open and self._end is not None:
            status = "finished" if exc is None else "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            self._end(self, status)

    # -- a code run's own clocks: they run while a cell of it runs -------------------------
    def resume(self) -> None:
        if self._since is None:
            self._since = (time.perf_counter(), time.process_time())

    def pause(self) -> None:
        if self._since is not None:
            wall, cpu = self._since
            self.wall_s += time.perf_counter() - wall
            self.cpu_s += time.process_time() - cpu
            self._since = None

    def add_cell(self, rec: Mapping[str, Any]) -> None:
        seq = rec["cell_seq"]
        if self.first_cell_seq is None:
            self.first_cell_seq = seq
        self.last_cell_seq = seq
        self.wall_s += rec.get("wall_s") or 0.0
        self.cpu_s += rec.get("cpu_s") or 0.0
        for key in ("peak_rss_bytes", "peak_gpu_bytes"):
            value = rec.get(key)
            if value is not None:
                current = getattr(self, key)
                setattr(self, key, value if current is None else max(current, value))

    def record(self, session_id: str, status: str, ended_at: int | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "session_id": session_id,
            "status": status,
            "started_at": self.started_at,
            "ended_at": ended_at,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_gpu_bytes": self.peak_gpu_bytes,
            "params": self.params,
            "first_cell_seq": self.first_cell_seq,
            "last_cell_seq": self.last_cell_seq,
            "parent_run_id": self.parent_run_id,
            "rss_start_bytes": self.rss_at_start,
        }


_PARAM_TYPES = (str, int, float, bool, type(None))


def check_params(params: Mapping[str, Any]) -> None:
    """Params are strings, numbers, booleans or None; anything else is a ``ValueError``."""
    for key, value in params.items():
        if not isinstance(value, _PARAM_TYPES):
            raise ValueError(f"param {key!r}: {value!r} is not a string, number, boolean or None")


__all__ = ["Run", "check_params"]
