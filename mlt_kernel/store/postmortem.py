"""What was open when a kernel died, marked ``killed``: one rule for the watcher and recovery.

Pure functions over journal records (no I/O, nothing heavy to import): the
watcher uses them the moment the kernel dies, with what it saw (the last
reading, the open cell's peaks, the cgroup's verdict); a later session uses
them for a session whose watcher died too, with what the journals say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mlt_kernel.core.schema import CELLS, RUNS, SESSIONS, Table

Row = dict[str, Any]


def latest(records: Iterable[Mapping[str, Any]], table: Table) -> dict[tuple[Any, ...], Row]:
    """The latest record per key of *table* among journal *records* (later lines win ties)."""
    out: dict[tuple[Any, ...], Row] = {}
    for rec in records:
        if rec.get("table") != table.name:
            continue
        key = tuple(rec.get(c) for c in table.key)
        prev = out.get(key)
        if prev is None or (rec.get("recorded_at") or 0) >= (prev.get("recorded_at") or 0):
            out[key] = dict(rec)
    return out


def session_ended(records: Iterable[Mapping[str, Any]], session_id: str) -> bool:
    """Whether the latest sessions row of *session_id* says the session is over."""
    row = latest(records, SESSIONS).get((session_id,))
    return row is not None and row.get("status") in ("ended", "killed")


def _copy(row: Mapping[str, Any], table: Table, **changes: Any) -> Row:
    out = {k: v for k, v in row.items() if k in table.name_set and k != "recorded_at"}
    out.update(changes)
    return out


def _seconds(start_us: Any, end_us: int) -> float | None:
    return max(0.0, (end_us - start_us) / 1e6) if isinstance(start_us, int) else None


def killed_rows(
    records: Iterable[Mapping[str, Any]],
    session_id: str,
    death: Mapping[str, Any],
    cell_changes: Callable[[Row], Mapping[str, Any]] | None = None,
) -> list[tuple[str, Row]]:
    """``(table, row)`` pairs marking the session's open cells, runs and session ``killed``.

    *death* holds ``ended_at`` (µs) and what is known of the death
    (``death_cause``, ``memory_limit_bytes``, ``oom_kill``, ``last_rss_bytes``);
    *cell_changes* adds what a watcher saw during an open cell (its peaks).
    """
    records = list(records)
    ended_at = death["ended_at"]
    out: list[tuple[str, Row]] = []
    for row in latest(records, CELLS).values():
        if row.get("status") != "running" or row.get("session_id") != session_id:
            continue
        killed = _copy(row, CELLS, status="killed", ended_at=ended_at, wall_s=_seconds(row.get("started_at"), ended_at))
        peaks = [row.get("rss_before_bytes"), row.get("peak_rss_bytes")]
        extra = dict(cell_changes(row)) if cell_changes is not None else {}
        peaks.append(extra.pop("kernel_peak_rss_bytes", None))
        killed.update(extra)
        killed["peak_rss_bytes"] = max((p for p in peaks if isinstance(p, int)), default=None)
        out.append((CELLS.name, killed))
    for row in latest(records, RUNS).values():
        if row.get("status") == "running" and row.get("session_id") in (None, session_id):
            out.append(
                (
                    RUNS.name,
                    _copy(
                        row, RUNS, status="killed", ended_at=ended_at, wall_s=_seconds(row.get("started_at"), ended_at)
                    ),
                )
            )
    session = latest(records, SESSIONS).get((session_id,))
    if session is not None:
        out.append((SESSIONS.name, _copy(session, SESSIONS, status="killed", **death)))
    return out
