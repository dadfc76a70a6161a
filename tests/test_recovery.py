"""Sessions whose kernel and watcher both died: the next session recovers them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.read import lookback
from mlt_kernel.store import recovery
from mlt_kernel.store.journal import JournalWriter, journal_name, now_us


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_dead_session(exp, sid: str, host: str) -> None:
    layout.ensure_layout(exp)
    path = exp / "journals" / journal_name(sid)
    j = JournalWriter(path)
    start = now_us() - 60_000_000
    j.write(
        "sessions",
        {"session_id": sid, "started_at": start, "status": "running", "kernel_pid": dead_pid(), "hostname": host},
    )
    j.write("runs", {"run_id": "r1", "name": "big", "session_id": sid, "status": "running", "started_at": start})
    j.write(
        "cells", {"session_id": sid, "cell_seq": 1, "execution_count": 1, "started_at": start - 1000, "status": "ok"}
    )
    j.write(
        "cells",
        {
            "session_id": sid,
            "cell_seq": 2,
            "execution_count": 2,
            "run_id": "r1",
            "run_name": "big",
            "started_at": start,
            "rss_before_bytes": 3 * 2**30,
            "peak_rss_bytes": 3 * 2**30,
            "status": "running",
        },
    )
    j.close()
    old = time.time() - recovery.GRACE_S - 5
    os.utime(path, (old, old))


def test_a_dead_session_on_this_host_is_marked_killed_and_compacted(tmp_path):
    exp = tmp_path / "exp"
    write_dead_session(exp, "20261127T000000Z-dead", socket.gethostname())
    write_dead_session(exp, "20261127T000001Z-away", "another-host")  # not ours to judge
    assert recovery.recover(exp, own="20261127T000009Z-self") == ["20261127T000000Z-dead"]
    assert [p.name for p in (exp / "journals").iterdir()] == [journal_name("20261127T000001Z-away")]
    e = mlt.Experiment(exp)
    dead = e.cells(session="20261127T000000Z-dead")
    assert dead["status"].tolist() == ["ok", "killed"]
    runs = e.runs().set_index("run_id")
    assert runs.loc["r1", "status"] == "killed"
    sessions = e.sessions().set_index("session_id")
    assert sessions.loc["20261127T000000Z-dead", "status"] == "killed"
    assert sessions.loc["20261127T000000Z-dead", "death_cause"] == "unknown"


def test_the_death_line_names_cell_run_and_memory(tmp_path):
    exp = tmp_path / "exp"
    write_dead_session(exp, "20261127T000000Z-dead", socket.gethostname())
    line = lookback.recover_and_report(exp, "20261127T000009Z-self")
    assert line == (
        "MLTrack: the previous session 20261127T000000Z-dead died in cell [2] (run big) at 3.0 GiB of memory; "
        "cause: unknown."
    )
    assert lookback.recover_and_report(exp, "20261127T000009Z-self") == line  # idempotent


def test_the_death_line_says_when_the_memory_guard_was_armed(tmp_path):
    exp = tmp_path / "exp"
    layout.ensure_layout(exp)
    sid = "20261127T000000Z-oom"
    j = JournalWriter(exp / "journals" / journal_name(sid, "watcher"))
    death = {"death_cause": "oom", "memory_limit_bytes": 4 * 2**30, "last_rss_bytes": 4 * 2**30}
    guard = {"memory_guard": 0.9, "growth_bytes_per_s": 6 * 2**30}
    j.write("sessions", {"session_id": sid, "started_at": now_us(), "status": "killed", **death, **guard})
    j.close()
    line = lookback.death_line(exp, "20261127T000009Z-self")
    assert line == (
        "MLTrack: the previous session 20261127T000000Z-oom died between cells at 4.0 GiB of memory; "
        "killed by the out-of-memory killer (memory limit 4.0 GiB). "
        "The memory guard was armed at 90 % of the limit, with memory growing at 6.0 GiB/s."
    )
