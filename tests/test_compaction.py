"""``mlt-kernel compact``: merging while readers read and kernels write."""

from __future__ import annotations

import subprocess
import sys
import threading

import pyarrow.parquet as pq

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.store import parquet as store
from mlt_kernel.store.compaction import compact_experiment
from mlt_kernel.store.journal import JournalWriter, journal_name, now_us


def session(exp, writer, cells=20, compact=True):
    layout.ensure_layout(exp)
    j = JournalWriter(exp / "journals" / journal_name(writer))
    j.write("sessions", {"session_id": writer, "started_at": now_us(), "status": "ended"})
    for seq in range(1, cells + 1):
        j.write("cells", {"session_id": writer, "cell_seq": seq, "execution_count": seq, "status": "ok"})
        j.write("samples", {"session_id": writer, "t": now_us(), "rss_bytes": seq})
    j.close()
    if compact:
        store.compact_writer(exp, writer)


def test_compact_cli_merges_and_reports(tmp_path):
    team = tmp_path / "team"
    for name in ("churn", "fraud"):
        for i in range(4):
            session(team / name, f"{name}{i}")
    out = subprocess.run(
        [sys.executable, "-m", "mlt_kernel.cli", "compact", str(team)], capture_output=True, text=True, check=True
    )
    assert "compacted 2 experiment folder(s)" in out.stdout
    assert "merged 24 file(s) into 6" in out.stdout
    for name in ("churn", "fraud"):
        assert [p.name[:2] for p in (team / name / "tables" / "cells").iterdir()] == ["m-"]
        assert len(mlt.Experiment(team / name).cells()) == 80
    # Merged files store integers and times as deltas, strings in a dictionary.
    (merged,) = (team / "churn" / "tables" / "samples").iterdir()
    meta = pq.read_metadata(merged).row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["t"] and "DELTA_BINARY_PACKED" in encodings["rss_bytes"]
    assert "RLE_DICTIONARY" in encodings["session_id"]


def test_compact_cli_wrong_path_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mlt_kernel.cli", "compact", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"mlt-kernel compact: no MLTrack experiment folder at {tmp_path / 'nope'}"


def test_readers_and_a_live_writer_during_merges(tmp_path):
    exp = tmp_path / "exp"
    for i in range(6):
        session(exp, f"s{i}")
    session(exp, "live", compact=False)  # a kernel still writing: its journal stays
    reader = mlt.Experiment(exp)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(len(reader.cells()))
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(6, 12):
        session(exp, f"s{i}")
        compact_experiment(exp)
    stop.set()
    thread.join()
    assert not errors
    # Never a row counted twice or lost: counts only grow (a journal may be read mid-session).
    assert seen and seen == sorted(seen) and seen[-1] <= 13 * 20
    assert len(reader.cells()) == 13 * 20
    assert (exp / "journals" / journal_name("live")).exists()
    assert len(mlt.Experiment(exp).cells()) == 13 * 20
