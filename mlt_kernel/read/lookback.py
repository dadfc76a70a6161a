"""Looking back when a session first writes to a folder: recover dead sessions, say how the last died.

``python -m mlt_kernel.read.lookback EXP OWN_SESSION`` is what a kernel runs
(``mlt_kernel.recording.helpers``): it marks and compacts sessions whose
kernel and watcher both died (``mlt_kernel.store.recovery``) and prints one
line when the previous session was killed.
"""

from __future__ import annotations

from pathlib import Path

from mlt_kernel.core.units import format_bytes
from mlt_kernel.read.query import Query
from mlt_kernel.store.recovery import recover


def death_line(exp: Path, own: str) -> str | None:
    """One line on how the previous session of *exp* died, if it was killed."""
    q = Query(exp)
    try:
        rows = q.rows(
            "SELECT session_id, death_cause, memory_limit_bytes, last_rss_bytes, status, memory_guard, "
            "growth_bytes_per_s "
            "FROM sessions WHERE session_id <> ? ORDER BY started_at DESC LIMIT 1",
            [own],
        )
        if not rows or rows[0][4] != "killed":
            return None
        sid, cause, limit, last_rss, _, guard, growth = rows[0]
        cell = q.rows(
            "SELECT execution_count, run_name, peak_rss_bytes FROM cells "
            "WHERE session_id = ? AND status = 'killed' ORDER BY cell_seq DESC LIMIT 1",
            [sid],
        )
    finally:
        q.close()
    where = "between cells"
    memory = last_rss
    if cell:
        count, run_name, peak = cell[0]
        where = f"in cell [{count}]" + (f" (run {run_name})" if run_name else "")
        memory = max(x for x in (peak, last_rss, 0) if x is not None)
    why = {
        "oom": "killed by the out-of-memory killer" + (f" (memory limit {format_bytes(limit)})" if limit else ""),
    }.get(cause or "", f"cause: {cause or 'unknown'}")
    guarded = ""
    if guard:  # armed, and still too slow: say how fast it had to be
        rate = f", with memory growing at {format_bytes(growth)}/s" if growth and growth > 0 else ""
        guarded = f" The memory guard was armed at {100 * guard:.0f} % of the limit{rate}."
    return f"MLTrack: the previous session {sid} died {where} at {format_bytes(memory)} of memory; {why}.{guarded}"


def recover_and_report(exp: Path, own: str) -> str | None:
    recover(exp, own)
    return death_line(exp, own)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlt_kernel.read.lookback EXP OWN_SESSION``: prints the death line, if any."""
    import sys
    import warnings

    args = sys.argv[1:] if argv is None else argv
    warnings.simplefilter("ignore")  # damaged files are reported by readers, not here
    line = recover_and_report(Path(args[0]), args[1])
    if line:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
