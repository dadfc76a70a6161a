"""Sessions that died: recover their journals (what the last one died of is told by ``read.lookback``).

The watcher marks a dying kernel's open cell and run ``killed`` and compacts
the session. When the watcher died too (the machine rebooted, the whole
process group was killed), the next session in the folder finds journals whose
kernel is gone; it marks what was open as ``killed`` and compacts them.

Recovery is conservative, because compacting a live session's journal loses
what it writes next: only journals of this user are considered (a teammate's
are recovered by the teammate's next session), and a kernel counts as dead
only when the system says its process is gone. A process that exists but
cannot be inspected — another user's, or hidden by ``/proc``'s ``hidepid`` —
counts as alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout, safeio
from mlt_kernel.store import parquet as store
from mlt_kernel.store.journal import JournalWriter, journal_name, now_us, parse_journal_name, read_lines
from mlt_kernel.store.postmortem import killed_rows, session_ended

#: A dead kernel's journals younger than this are left to its own watcher.
GRACE_S = 10.0


#: The most read of a journal to find its first record (the session's row).
FIRST_RECORD_BYTES = 1 << 20


def _exists(pid: int) -> bool:
    """Whether a process *pid* exists: ``kill(pid, 0)``, which needs no right to inspect it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it is another user's
    return True


def _pid_alive(pid: int, started_at_us: int) -> bool:
    """Whether the kernel *pid*, started at *started_at_us*, may still run.

    Only proof of absence counts as death: ``kill(pid, 0)`` answering "no such
    process", or a process that psutil can read and that started after the
    session (the pid was reused). Anything unknown — ``EPERM``, ``AccessDenied``,
    a ``/proc`` that ``hidepid`` hides — keeps the session alive.
    """
    if pid <= 0:
        return False  # no pid recorded (kill(0, …) would mean our own process group)
    if not _exists(pid):
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        created_us = float(proc.create_time()) * 1e6
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False  # it exited; only its parent has not reaped it yet
    except psutil.ZombieProcess:
        return False
    except psutil.NoSuchProcess:
        return _exists(pid)  # gone since, or hidden from us by hidepid
    except psutil.AccessDenied:
        return True
    # A reused pid belongs to a process younger than the session.
    return created_us <= started_at_us + 5e6


def dead_writers(exp: Path, own: str) -> list[str]:
    """This user's kernel sessions of this host whose journals remain but whose process is gone."""
    folder = exp / layout.JOURNALS
    host = socket.gethostname()
    dead: list[str] = []
    try:
        safeio.check_folder(folder)
    except OSError:
        return dead  # none yet, or a link: nothing of ours to recover through it
    with contextlib.suppress(FileNotFoundError):
        for path in folder.iterdir():
            parsed = parse_journal_name(path.name)
            if parsed is None or parsed[0] == own or parsed[1] != "kernel":
                continue
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or not safeio.is_owned(st):
                continue  # a link, or a teammate's journal: theirs to recover
            if time.time() - st.st_mtime < GRACE_S:
                continue
            first = _first_record(path)
            if first is None or first.get("hostname") != host:
                continue  # another machine's session: its own watcher or next session decides
            if not _pid_alive(int(first.get("kernel_pid") or 0), int(first.get("started_at") or 0)):
                dead.append(parsed[0])
    return dead


def _first_record(path: Path) -> dict[str, Any] | None:
    """The journal's first record: a kernel journal starts with its session's row.

    None when it cannot tell (no whole first line in ``FIRST_RECORD_BYTES``): such
    a journal is left alone.
    """
    try:
        head = safeio.read_head(path, FIRST_RECORD_BYTES)
    except OSError:
        return None
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("table") == "sessions" else None


def mark_killed(exp: Path, writer_id: str) -> None:
    """Write ``killed`` versions of the open cell, run and session of a dead writer.

    Its watcher died too, so nothing is known of the death beyond the journals:
    it happened after their last record, of an unknown cause.
    """
    path = exp / layout.JOURNALS / journal_name(writer_id, "kernel")
    records, _, _ = read_lines(path.relative_to(exp), beneath=exp)
    for role in ("watcher", "samples"):  # the last sample tells when it died
        other = exp / layout.JOURNALS / journal_name(writer_id, role)
        if other.exists():
            records += read_lines(other.relative_to(exp), beneath=exp)[0]
    if session_ended(records, writer_id):
        return
    died = max((r.get("recorded_at") or 0 for r in records), default=now_us())
    out = JournalWriter(path)
    try:
        for table, row in killed_rows(records, writer_id, {"ended_at": died, "death_cause": "unknown"}):
            out.write(table, row)
    finally:
        out.close()


def recover(exp: Path, own: str) -> list[str]:
    """Mark and compact every dead writer of *exp*; returns their ids."""
    dead = dead_writers(exp, own)
    for writer_id in dead:
        mark_killed(exp, writer_id)
        store.compact_writer(exp, writer_id)
    return dead
