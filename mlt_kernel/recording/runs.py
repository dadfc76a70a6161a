"""Runs: a cell (``# mlt: record name=…``) or a span of cells (``record start``/``mlt.start``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """An open run."""

    run_id: str
    name: str
    params: dict[str, Any]
    started_at: int
    span: bool  #: spans cells (``record start`` / ``mlt.start``) rather than one cell
    first_cell_seq: int | None = None
    last_cell_seq: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    stop_status: str | None = None  #: set when asked to stop while a cell runs
    folders: set[Path] = field(default_factory=set)  #: where its rows were written

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
        }


_PARAM_TYPES = (str, int, float, bool, type(None))


def check_params(params: Mapping[str, Any]) -> None:
    """Params are strings, numbers, booleans or None; anything else is a ``ValueError``."""
    for key, value in params.items():
        if not isinstance(value, _PARAM_TYPES):
            raise ValueError(f"param {key!r}: {value!r} is not a string, number, boolean or None")


__all__ = ["Run", "check_params"]
