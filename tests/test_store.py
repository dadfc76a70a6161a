"""Journals, compaction and reading: real files read back through the public read API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.core.errors import DamagedFileWarning
from mlt_kernel.core.schema import TABLES
from mlt_kernel.store import parquet as store
from mlt_kernel.store.compaction import compact_experiment, merge_table
from mlt_kernel.store.journal import JournalWriter, journal_name, now_us, read_lines


def write_session(exp: Path, writer: str, cells: int = 3) -> Path:
    layout.ensure_layout(exp)
    path = exp / "journals" / journal_name(writer)
    j = JournalWriter(path)
    j.write("sessions", {"session_id": writer, "started_at": now_us(), "status": "running", "hostname": "elsewhere"})
    for seq in range(1, cells + 1):
        j.write("cells", {"session_id": writer, "cell_seq": seq, "execution_count": seq, "status": "running"})
        j.write("cells", {"session_id": writer, "cell_seq": seq, "execution_count": seq, "status": "ok", "wall_s": 0.1})
    j.close()
    return path


def test_journal_lines_and_latest_row_per_key(tmp_path):
    exp = tmp_path / "exp"
    write_session(exp, "s1")
    cells = mlt.Experiment(exp).cells()
    assert list(cells["cell_seq"]) == [1, 2, 3]
    assert set(cells["status"]) == {"ok"}


@pytest.mark.parametrize("utf8", [True, False], ids=["utf-8", "not-utf-8"])
def test_journal_lines_are_read_like_json_loads_line_by_line(tmp_path, utf8):
    lines = [
        b'{"table":"samples","t":1}',
        b"",
        b'{"table":"samples","t":2}\r',
        b'  {"table":"samples","t":3}',
        b'{"table":"a"} {"table":"b"}',
        b'{"t":4}',
        b"[1,2]",
        b"garbage",
        b'{"table":"x","s":"\xc3\xa9"}',
        b'{"table":"y","v":[1',
        b"2]}",
        b'{"table":"z"}',
    ]
    if not utf8:  # the whole text cannot be decoded at once
        lines.append(b"\xff\xfe")
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"table":"torn"')
    records, offset, bad = read_lines(path)
    assert [r["table"] for r in records] == ["samples", "samples", "samples", "x", "z"]
    assert records[3]["s"] == "é"
    assert bad == 6 + (not utf8)
    assert offset == path.stat().st_size - len(b'{"table":"torn"')  # the unterminated line waits


def test_parallel_reads_see_journals_and_files_alike(tmp_path):
    from mlt_kernel.read.query import Query, Read

    exp = tmp_path / "exp"
    write_session(exp, "s1")
    store.compact_writer(exp, "s1")  # s1 in Parquet files
    write_session(exp, "s2", cells=2)  # s2 in a live journal
    q = Query(exp)
    try:
        count = "SELECT count(*) FROM cells WHERE session_id = ?"
        lanes = q.read_all(
            [Read(count, ["s1"]), Read("SELECT cell_seq FROM cells WHERE session_id = ?", ["s2"], numpy=True)],
            [Read(count, ["s2"], then=lambda rows: rows[0][0] * 10)],
        )
    finally:
        q.close()
    (s1, s2_seqs), (s2_times_ten,) = lanes
    assert s1 == [(3,)]
    assert sorted(s2_seqs["cell_seq"].tolist()) == [1, 2]
    assert s2_times_ten == 20


def test_empty_tables_have_the_columns_and_types_of_filled_ones(tmp_path):
    # An empty table is declared from the schema; a filled one comes from Arrow.
    from mlt_kernel.core.schema import TABLES
    from mlt_kernel.read.query import Query

    empty, filled = tmp_path / "empty", tmp_path / "filled"
    layout.ensure_layout(empty)
    layout.ensure_layout(filled)
    j = JournalWriter(filled / "journals" / journal_name("s1"))
    for name, tbl in TABLES.items():
        j.write(name, {c.name: None for c in tbl.columns if c.name != "recorded_at"})
    j.close()
    described = []
    for folder in (empty, filled):
        q = Query(folder)
        try:
            described.append({name: q.rows(f'DESCRIBE "{name}"') for name in TABLES})
            assert {name: q.rows(f'SELECT count(*) FROM "{name}"')[0][0] for name in TABLES} == dict.fromkeys(
                TABLES, 0 if folder == empty else 1
            )
        finally:
            q.close()
    assert described[0] == described[1]


def test_queries_in_one_process_keep_to_their_own_folder(tmp_path):
    from mlt_kernel.read.query import Query

    write_session(tmp_path / "a", "s1", cells=1)
    write_session(tmp_path / "b", "s2", cells=2)
    qa, qb = Query(tmp_path / "a"), Query(tmp_path / "b")
    try:
        assert qa.rows("SELECT session_id, count(*) FROM cells GROUP BY ALL") == [("s1", 1)]
        assert qb.rows("SELECT session_id, count(*) FROM cells GROUP BY ALL") == [("s2", 2)]
        qa.close()
        assert qb.rows("SELECT count(*) FROM cells") == [(2,)]
    finally:
        qa.close()  # closing twice does no harm
        qb.close()


def test_a_process_that_imports_the_reader_and_exits_at_once_exits_cleanly():
    # The database opens on a thread as the module is imported; exiting meanwhile must wait for it.
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-c", "import mlt_kernel.read.query"], capture_output=True, text=True)
        assert (proc.returncode, proc.stderr) == (0, "")


def test_tables_are_read_when_a_statement_first_needs_them(tmp_path):
    # The runs of a folder are answered without its samples: their journal is not
    # even read (most of a folder's lines), nor are the tables nobody asked for.
    exp = tmp_path / "exp"
    write_session(exp, "s1", cells=2)
    samples = JournalWriter(exp / "journals" / journal_name("s1", "samples"))
    samples.write_many("samples", [{"session_id": "s1", "t": t, "rss_bytes": 100 + t} for t in range(1, 6)])
    samples.close()
    (exp / "journals" / journal_name("s1", "samples")).open("ab").write(b"not json\n")
    from mlt_kernel.read import query

    q = query.Query(exp)
    assert q.rows("SELECT count(*) FROM cells") == [(2,)]
    assert q._defined == {"cells", "cell_usage", "sources"}  # the cells, with what the watcher saw
    assert all(".samples." not in Path(path).name for path in q._scan._journals)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        assert q.rows("SELECT count(*) FROM _latest_runs") == [(0,)]
        assert q.rows("SELECT count(*) FROM sessions") == [(1,)]
    with pytest.warns(DamagedFileWarning, match="1 unreadable journal line"):
        assert q.rows("SELECT max(rss_bytes), count(*) FROM samples") == [(105, 5)]
    assert "samples" in q._defined
    # Preparing statements defines what they read, and reads nothing yet.
    q.prepare("SELECT * FROM runs", "SELECT * FROM metrics")
    assert {"runs", "metrics"} <= q._defined and "runs" not in q._read
    # A relation read once is a view; read again, it becomes a table, kept up to date (a kept
    # statement asked again is answered from its result, and reads nothing).
    assert q._kinds["_latest_cells"] == "VIEW"
    q.rows("SELECT count(*) FROM _latest_cells", keep=True)
    assert q._kinds["_latest_cells"] == "VIEW"
    q.rows("SELECT count(*) FROM _latest_cells", keep=True)
    assert q._kinds["_latest_cells"] == "VIEW"
    q.rows("SELECT count(*) FROM _latest_cells")
    assert q._kinds["_latest_cells"] == "TABLE"
    write_session(exp, "s2", cells=1)
    assert q.refresh()
    assert q.rows("SELECT count(*) FROM _latest_cells") == [(3,)]
    assert q.rows("SELECT count(*) FROM cells") == [(3,)]
    # A statement whose tables the cheap look misses still runs: every table is defined then.
    assert "notes" not in q._defined
    assert q.rows("SELECT count(*) FROM NOTES") == [(0,)]
    assert q._defined == set(TABLES)
    q.close()


def test_a_kept_statement_is_run_again_only_when_what_it_reads_changed(tmp_path, monkeypatch):
    from mlt_kernel.read import query

    exp = tmp_path / "exp"
    write_session(exp, "s1", cells=2)
    q = query.Query(exp)
    ran: list[str] = []
    execute = q._execute
    monkeypatch.setattr(q, "_execute", lambda sql, *a, **k: (ran.append(sql), execute(sql, *a, **k))[1])
    cells = "SELECT session_id, cell_seq, status FROM cells ORDER BY ALL"
    try:
        first = q.df(cells, keep=True)
        first.loc[0, "status"] = "changed by the caller"  # a caller's copy: the kept result stays as it was
        assert q.df(cells, keep=True)["status"].tolist() == ["ok", "ok"]
        assert q.rows(cells, keep=True) == [("s1", 1, "ok"), ("s1", 2, "ok")]
        assert q.rows(cells, keep=True) == [("s1", 1, "ok"), ("s1", 2, "ok")]
        assert ran == [cells, cells]  # once as a DataFrame, once as rows
        assert q.rows(cells) == q.rows(cells)  # not asked to keep: run each time
        assert len(ran) == 4
        # Parameters are part of what is kept, with their types: 1 and True are different values.
        assert q.rows("SELECT ?::VARCHAR", [1], keep=True) == [("1",)]
        assert q.rows("SELECT ?::VARCHAR", [True], keep=True) == [("true",)]
        assert q.rows("SELECT $x::VARCHAR", {"x": 2}, keep=True) == [("2",)]
        assert len(ran) == 7
        assert not q.refresh()  # nothing new: still kept
        q.rows(cells, keep=True)
        assert len(ran) == 7
        write_session(exp, "s2", cells=1)  # a new journal: read again
        assert q.refresh()
        assert q.rows(cells, keep=True) == [("s1", 1, "ok"), ("s1", 2, "ok"), ("s2", 1, "ok")]
        store.compact_writer(exp, "s2")  # the same rows, now from a Parquet file
        assert q.refresh()
        assert q.df(cells, keep=True).values.tolist() == [["s1", 1, "ok"], ["s1", 2, "ok"], ["s2", 1, "ok"]]
        assert len(ran) == 9
        # A file replaced under its own name (a mirror fetching a changed object) is read again.
        (part,) = (exp / "tables" / "cells").glob("s-s2.*.parquet")
        stamp = part.stat()
        os.utime(part, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
        assert q.refresh()
        q.rows(cells, keep=True)
        assert len(ran) == 10
        # A result larger than RESULT_ROWS is handed out, never kept.
        monkeypatch.setattr(query, "RESULT_ROWS", 2)
        for _ in range(2):
            assert len(q.rows("SELECT cell_seq FROM cells", keep=True)) == 3
        assert len(ran) == 12
        # At most RESULTS results are kept, the least recently used leaving first.
        monkeypatch.setattr(query, "RESULTS", 2)
        for n in (1, 2, 3, 1):
            q.rows("SELECT ?::BIGINT", [n], keep=True)
        assert len(ran) == 16
        q.rows("SELECT ?::BIGINT", [3], keep=True)
        assert len(ran) == 16
    finally:
        q.close()
    assert not q._results  # a closed Query answers nothing from what it kept


def test_the_sql_of_experiment_sql_runs_every_time(tmp_path):
    # Statements of the user's own: their results may depend on more than the folder.
    exp = tmp_path / "exp"
    write_session(exp, "s1", cells=1)
    e = mlt.Experiment(exp)
    e.sql("CREATE TABLE mine (x INTEGER)")
    for _ in range(2):
        e.sql("INSERT INTO mine VALUES (1)")
    assert e.sql("SELECT count(*) AS n FROM mine")["n"].tolist() == [2]
    e.sql("INSERT INTO mine VALUES (1)")
    assert e.sql("SELECT count(*) AS n FROM mine")["n"].tolist() == [3]
    nested = e.sql("SELECT [1, 2] AS l")
    nested["l"][0][0] = 99
    assert e.sql("SELECT [1, 2] AS l")["l"][0].tolist() == [1, 2]


def test_a_query_dropped_without_close_leaves_no_catalog(tmp_path):
    import gc

    from mlt_kernel.read import query

    write_session(tmp_path / "a", "s1", cells=1)

    def catalogs():
        con = query._opening().result().cursor()
        try:
            return {name for (name,) in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        finally:
            con.close()

    q = query.Query(tmp_path / "a")
    q.read_all([query.Read("SELECT count(*) FROM cells", [])], [query.Read("SELECT 1", [])])
    name = q._catalog
    assert name in catalogs()
    del q
    gc.collect()
    assert name not in catalogs()


def test_a_window_reads_only_the_files_that_overlap_it(tmp_path):
    from mlt_kernel.read.query import Query, Window

    exp = tmp_path / "exp"
    layout.ensure_layout(exp)
    hour = 3_600_000_000
    for i, writer in enumerate(("s1", "s2", "s3")):  # an hour apart; s3 stays a live journal
        j = JournalWriter(exp / "journals" / journal_name(writer, "watcher"))
        j.write_many("samples", [{"session_id": writer, "t": i * hour + k, "rss_bytes": k} for k in range(100)])
        j.close()
        if writer != "s3":
            store.compact_writer(exp, writer)
    q = Query(exp)
    try:
        per_session = "SELECT session_id, count(*), sum(rss_bytes) FROM {} WHERE epoch_us(t) BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL"
        sql, everywhere = per_session.format("{window}"), per_session.format("samples")
        for lo, hi in (
            (0, 50),
            (hour, hour + 99),
            (2 * hour + 10, 2 * hour + 20),
            (50, hour + 10),
            (10 * hour, 11 * hour),
        ):
            window = Window("samples", lo, hi)
            assert q.rows(everywhere, [lo, hi]) == q.df(sql, [lo, hi], window=window).to_records(index=False).tolist()
        resolved, params = q._resolve(sql, [0, 50], Window("samples", 0, 50))
        assert [Path(f).name for f in params[0]] == ["s-s1.v1.parquet"] and "_j_samples" in resolved
        with pytest.raises(ValueError, match="without a key"):
            q._resolve(sql, [], Window("cells", 0, 1))
        store.compact_writer(exp, "s3")  # no journal left: a window past every file reads nothing at all
        q.refresh()
        resolved, params = q._resolve(sql, [], Window("samples", 10 * hour, 11 * hour))
        assert params == [] and "LIMIT 0" in resolved
        assert q.df(sql, [10 * hour, 11 * hour], window=Window("samples", 10 * hour, 11 * hour)).empty
    finally:
        q.close()


def test_unknown_columns_are_refused(tmp_path):
    j = JournalWriter(tmp_path / "j.jsonl")
    with pytest.raises(ValueError, match="unknown columns"):
        j.write("cells", {"session_id": "x", "wrong": 1})
    assert not (tmp_path / "j.jsonl").exists()


def test_journal_survives_sigkill_mid_stream(tmp_path):
    path = tmp_path / "j.v1.jsonl"
    code = (
        "import sys\nfrom mlt_kernel.store.journal import JournalWriter\nj = JournalWriter(sys.argv[1])\n"
        "print('ready', flush=True)\ni = 0\nwhile True:\n    j.write('metrics', {'run_id': 'r', 'name': 'm', 'step': i, 'value': 1.0})\n    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    while not path.exists() or path.stat().st_size < 200_000:
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    records, offset, bad = read_lines(path)
    # Linux may cut a write that spans two pages when SIGKILL arrives between
    # them: at most that last line is torn, and it is left for later.
    assert bad == 0 and b"\n" not in path.read_bytes()[offset:]
    assert [r["step"] for r in records] == list(range(len(records)))


def test_compaction_moves_everything_and_is_idempotent(tmp_path):
    exp = tmp_path / "exp"
    write_session(exp, "s1")
    before = mlt.Experiment(exp).cells()
    assert store.compact_writer(exp, "s1") == 7
    assert store.compact_writer(exp, "s1") == 0
    assert not list((exp / "journals").iterdir())
    after = mlt.Experiment(exp).cells()
    assert before.drop(columns=[]).equals(after)


def test_journal_and_its_parquet_twin_are_not_counted_twice(tmp_path):
    exp = tmp_path / "exp"
    journal = write_session(exp, "s1")
    saved = journal.read_bytes()
    store.compact_writer(exp, "s1")
    journal.write_bytes(saved)  # as if the compactor was interrupted before unlinking
    assert len(mlt.Experiment(exp).cells()) == 3


def test_merge_replaces_small_files_and_readers_see_the_same(tmp_path):
    exp = tmp_path / "exp"
    for i in range(5):
        write_session(exp, f"s{i}")
        store.compact_writer(exp, f"s{i}")
    before = mlt.Experiment(exp).cells().sort_values(["session_id", "cell_seq"]).reset_index(drop=True)
    report = compact_experiment(exp)
    assert report.merged_files >= 10 and report.written_files == 2  # cells and sessions
    files = list((exp / "tables" / "cells").iterdir())
    assert len(files) == 1 and files[0].name.startswith("m-")
    after = mlt.Experiment(exp).cells().sort_values(["session_id", "cell_seq"]).reset_index(drop=True)
    assert before.equals(after)


def test_merge_interrupted_after_its_file_is_durable(tmp_path):
    exp = tmp_path / "exp"
    for i in range(3):
        write_session(exp, f"s{i}")
        store.compact_writer(exp, f"s{i}")
    folder = exp / "tables" / "cells"
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    merge_table(exp, "cells")
    for name, data in saved.items():  # the inputs are back, as if never removed
        (folder / name).write_bytes(data)
    assert len(mlt.Experiment(exp).cells()) == 9  # the merged file hides its inputs
    merge_table(exp, "cells")
    assert [p.name[:2] for p in folder.iterdir()] == ["m-"]
    assert len(mlt.Experiment(exp).cells()) == 9


def test_damaged_files_are_skipped_with_one_warning_each(tmp_path):
    exp = tmp_path / "exp"
    for i in range(3):
        write_session(exp, f"s{i}")
    store.compact_writer(exp, "s0")
    store.compact_writer(exp, "s1")
    good = next((exp / "tables" / "cells").glob("s-s0*"))
    truncated = next((exp / "tables" / "cells").glob("s-s1*"))
    truncated.write_bytes(truncated.read_bytes()[:40])
    (exp / "tables" / "cells" / "s-future.v99.parquet").write_bytes(good.read_bytes())
    live = exp / "journals" / journal_name("s2")
    with open(live, "ab") as f:
        f.write(b'{"table":"cells","session_id":"s2","cell_seq":9,"stat')  # torn last line
        f.write(b"\nnot json at all\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = mlt.Experiment(exp)
        cells = e.cells()
        e.cells()  # a second read warns no more
    messages = [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    assert len(messages) == 3, messages
    assert any(truncated.name in m for m in messages)
    assert any("v99" in m and "newer" in m for m in messages)
    assert any("unreadable journal line" in m for m in messages)
    assert sorted(set(cells["session_id"])) == ["s0", "s2"]
    assert len(cells) == 6


def test_reader_never_writes_into_a_read_only_folder(tmp_path):
    exp = tmp_path / "exp"
    write_session(exp, "s1")
    store.compact_writer(exp, "s1")
    write_session(exp, "s2")
    snapshot = sorted((p.relative_to(exp), p.stat().st_mtime_ns) for p in exp.rglob("*"))
    for p in [exp, *exp.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        e = mlt.Experiment(exp)
        assert len(e.cells()) == 6 and len(e.sessions()) == 2
        assert e.sql("SELECT count(*) AS n FROM cells")["n"][0] == 6
    finally:
        for p in [exp, *exp.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert sorted((p.relative_to(exp), p.stat().st_mtime_ns) for p in exp.rglob("*")) == snapshot


def test_experiment_refuses_a_folder_that_is_not_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no experiment folder"):
        mlt.Experiment(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not an MLTrack experiment folder"):
        mlt.Experiment(tmp_path)


def test_files_written_before_a_column_was_added_read_it_as_null(tmp_path):
    from mlt_kernel.core.schema import CELLS

    exp = layout.ensure_layout(tmp_path / "exp")
    rows = [{"session_id": "s-old", "cell_seq": 1, "status": "ok", "started_at": now_us(), "wall_s": 0.5}]
    # A file as an MLTrack without the memory guard wrote it: the newer columns are not in it.
    table = store.records_to_arrow(CELLS.name, rows)
    table = table.drop_columns(
        [c for c in ("memory_limit_bytes", "guard_rss_bytes", "guard_at") if c in table.column_names]
    )
    store.write_parquet_atomic(table, exp / layout.TABLES / CELLS.name / store.session_file_name("s-old"))
    cells = mlt.Experiment(exp).cells()
    assert cells["status"].tolist() == ["ok"]
    assert cells[["memory_limit_bytes", "guard_rss_bytes", "guard_at"]].isna().all().all()
    # Beside a newer writer's rows, the two read together.
    JournalWriter(exp / layout.JOURNALS / journal_name("s-new")).write(
        CELLS.name, {"session_id": "s-new", "cell_seq": 1, "status": "interrupted", "guard_rss_bytes": 5}
    )
    cells = mlt.Experiment(exp).cells().set_index("session_id")
    assert cells.loc["s-new", "guard_rss_bytes"] == 5 and cells["memory_limit_bytes"].isna().all()
