"""DuckDB over an experiment folder: the one module that imports ``duckdb``.

``Scan`` (``read.scan``) lists what is in the folder and reads its journals;
``Query`` keeps one in-memory DuckDB catalog with
one relation per table, named like the table, that always shows the latest
version of every row: small keyed tables are materialised when their files
change, big ones (samples, metrics) are views. Readers never write into the
folder.

The folder may be shared, and a teammate's files are untrusted: links and
files that are not regular are skipped with a warning, and a merged file hides
the files it replaces only when it proves it (``store.proven_replacements``).

All of a process's ``Query`` objects share one DuckDB database, each in a
catalog of its own (``ATTACH ':memory:'``): opening a database costs ~17 ms,
a catalog well under one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from mlt_kernel.core.locations import is_remote
from mlt_kernel.core.schema import CELL_USAGE, CELLS, RUNS, SOURCES, TABLES, Table
from mlt_kernel.read.scan import Scan, Snapshot
from mlt_kernel.store.mirror import Mirror

if TYPE_CHECKING:
    import pandas as pd


#: Attempts at a view or query whose files a compaction replaced meanwhile.
RETRIES = 10
#: Seconds between listings of an ``s3://`` experiment's bucket by one reader.
REMOTE_REFRESH_S = 2.0


#: The cells of a run: those tagged with it, and those it spanned (a run of code may start and
#: end inside a cell whose record belongs to no run). Parameters: session, run id, first, last cell.
RUN_CELLS = "session_id = ? AND (run_id = ? OR cell_seq BETWEEN ? AND ?)"
#: The last cell of a run, for lineages. Parameters: the run's last cell, run id.
RUN_LAST_CELL = "coalesce(?, (SELECT max(cell_seq) FROM cells WHERE run_id = ?))"


def json_value(value: Any) -> Any:
    """A JSON column's value decoded; None for text that is not JSON (a folder is untrusted input)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _ident(name: str) -> str:
    """Quote an identifier that comes from the schema module."""
    if name not in TABLES and not any(name in t.names for t in TABLES.values()):
        raise ValueError(f"not a schema identifier: {name!r}")
    return '"' + name + '"'


def _latest_sql(tbl: Table, source: str) -> str:
    cols = ", ".join(_ident(c) for c in tbl.names)
    if not tbl.key:
        return f"SELECT {cols} FROM {source}"
    key = ", ".join(_ident(k) for k in tbl.key)
    return f"SELECT {cols} FROM {source} QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY recorded_at DESC) = 1"


# Tables built on the per-table ones: cells with what the watcher saw, runs with
# peaks taken from their cells; rebuilt when one of their sources changes.
_DERIVED = {
    CELLS.name: (
        (CELLS.name, CELL_USAGE.name, SOURCES.name),
        """
        SELECT c.* REPLACE (
            coalesce(u.children_peak_rss_bytes, c.children_peak_rss_bytes) AS children_peak_rss_bytes,
            greatest(c.peak_gpu_bytes, u.peak_gpu_bytes) AS peak_gpu_bytes,
            coalesce(u.memory_limit_bytes, c.memory_limit_bytes) AS memory_limit_bytes,
            coalesce(u.guard_rss_bytes, c.guard_rss_bytes) AS guard_rss_bytes,
            coalesce(u.guard_at, c.guard_at) AS guard_at,
            coalesce(s.code, c.code) AS code)
        FROM _latest_cells c LEFT JOIN cell_usage u USING (session_id, cell_seq)
        LEFT JOIN sources s ON s.code_sha1 = c.code_sha1 AND starts_with(s.code, c.code)
    """,
    ),
    RUNS.name: (
        (RUNS.name, CELLS.name, CELL_USAGE.name),
        """
        SELECT r.* REPLACE (
            greatest(r.peak_rss_bytes, agg.peak_rss_bytes) AS peak_rss_bytes,
            greatest(r.peak_gpu_bytes, agg.peak_gpu_bytes) AS peak_gpu_bytes)
        FROM _latest_runs r LEFT JOIN (
            SELECT run_id, max(peak_rss_bytes) AS peak_rss_bytes, max(peak_gpu_bytes) AS peak_gpu_bytes
            FROM cells WHERE run_id IS NOT NULL GROUP BY run_id) agg USING (run_id)
    """,
    ),
}


@dataclass(frozen=True)
class Window:
    """The rows of a table without a key whose sort column lies in [start, end].

    A query names it ``{window}`` where a table would go. It reads only the
    Parquet files whose statistics overlap the range (each other file would
    cost a query about a millisecond) and the journals.
    """

    table: str
    start: int  #: µs since the epoch, like the journals' times
    end: int


@dataclass(frozen=True)
class Read:
    """One query of :meth:`Query.read_all`: rows (tuples), or NumPy arrays per column.

    *then*, when given, turns them into the result on the lane's thread, while
    the other lanes' queries still run. With *window*, ``{window}`` in *sql*
    stands for that :class:`Window`.
    """

    sql: str
    params: list[Any]
    numpy: bool = False
    then: Callable[[Any], Any] | None = None
    window: Window | None = None

    def take(self, result: Any) -> Any:
        """What this read wants of an executed *result*."""
        out = result.fetchnumpy() if self.numpy else result.fetchall()
        return out if self.then is None else self.then(out)


def _read_lane(cursor: Any, lane: list[Read], resolve: Callable[..., tuple[str, Any]]) -> list[Any]:
    return [read.take(cursor.execute(*resolve(read.sql, read.params, read.window))) for read in lane]


_pool: Any = None
_pool_lock = threading.Lock()
_database: Any = None
_catalogs = itertools.count(1)

# DuckDB's types for the schema's vocabulary, as pyarrow's types convert.
_DUCK_TYPES = {
    "string": "VARCHAR",
    "json": "VARCHAR",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
}


def _connect() -> tuple[Any, str]:
    """A connection to the process's DuckDB database, using a new catalog of its own."""
    global _database
    with _pool_lock:
        if _database is None:
            # Never fetch an extension: an s3:// path is read through the local mirror (read.mirror),
            # and a query must not reach the internet.
            _database = duckdb.connect(
                ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
            )
            # Our Parquet files are never rewritten, so their footers can be
            # cached: a run's timeline then reads one row group and no metadata.
            _database.execute("SET parquet_metadata_cache = true")
        con = _database.cursor()
    catalog = f"mlt_query_{next(_catalogs)}"
    con.execute(f"ATTACH ':memory:' AS {catalog}")
    con.execute(f"USE {catalog}")
    return con, catalog


def _release(con: Any, catalog: str, lanes: list[Any]) -> None:
    """Close a Query's cursors and drop its catalog from the shared database."""
    with contextlib.suppress(duckdb.Error):
        for cursor in lanes:
            cursor.close()
        lanes.clear()
        con.execute("USE memory")
        con.execute(f"DETACH {catalog}")
        con.close()


def _empty_columns(tbl: Table) -> str:
    return "(" + ", ".join(f"{_ident(c.name)} {_DUCK_TYPES[c.type]}" for c in tbl.columns) + ")"


def _readers() -> Any:
    """The threads that run :meth:`Query.read_all`'s queries (made once)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="mlt-query")
        return _pool


class Query:
    """A DuckDB connection with one relation per table of an experiment folder.

    Tables with a key (runs, cells, notes, …) are small: the latest version of
    each row is materialised when their files change, so lookups stay cheap.
    Tables without one (samples, metrics) are views over the Parquet files and
    journals, so DuckDB reads only the row groups a query needs.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        #: An ``s3://`` experiment is read through its local mirror, brought up to date by ``refresh``.
        self.mirror: Mirror | None = Mirror(str(root)) if is_remote(root) else None
        self.root = self.mirror.folder if self.mirror is not None else Path(root)
        if self.mirror is not None:
            self.mirror.refresh()
        self._scan = Scan(self.root)
        self._con, self._catalog = _connect()
        self._sources: dict[str, tuple[list[str], bool]] = {}  # table -> (Parquet files, has a journal table)
        self._lanes: list[Any] = []  # cursors of read_all, in this catalog
        # An Experiment dropped without close() must not leave its catalog behind.
        self._finalizer = weakref.finalize(self, _release, self._con, self._catalog, self._lanes)
        self._lock = threading.RLock()
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._first = True  #: the mirror was refreshed just now
        self._listed = time.monotonic()
        self.refresh()

    def refresh(self) -> bool:
        """Pick up new files and journal lines; True when anything changed."""
        with self._lock:
            # The bucket is listed at most every REMOTE_REFRESH_S: queries in a row run at local speed,
            # and what writers upload (every 10 s) shows at the next look.
            if self.mirror is not None and not self._first and time.monotonic() - self._listed >= REMOTE_REFRESH_S:
                self.mirror.refresh()
                self._listed = time.monotonic()
            self._first = False
            for attempt in range(RETRIES):
                snap = self._scan.snapshot(self._signatures)
                if not snap.signatures:
                    return False
                try:
                    self._apply(snap)
                except duckdb.IOException:
                    # A compaction removed a file between our listing and DuckDB's: look again.
                    if attempt == RETRIES - 1:
                        raise
                    self._signatures.clear()
                    time.sleep(0.01 * attempt)
                    continue
                self._signatures.update(snap.signatures)
                return True
        return False

    def _apply(self, snap: Snapshot) -> None:
        for name in snap.signatures:
            self._define(TABLES[name], snap.parquet[name], snap.journal_tables[name])
        for name, (sources, sql) in _DERIVED.items():
            if any(s in snap.signatures for s in sources) or name not in self._signatures:
                self._con.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS {sql}")

    def _define(self, tbl: Table, files: list[str], journal: pa.Table) -> None:
        con = self._con
        latest = f"_latest_{tbl.name}" if tbl.name in _DERIVED else tbl.name
        self._sources[tbl.name] = (files, bool(journal.num_rows) or not files)
        if not files and not journal.num_rows:  # an empty table: its columns only, in a few statements
            columns = _empty_columns(tbl)
            con.execute(f"CREATE OR REPLACE TABLE _j_{tbl.name} {columns}")
            con.execute(f"CREATE OR REPLACE VIEW _raw_{tbl.name} AS SELECT * FROM _j_{tbl.name}")
            if tbl.key:
                con.execute(f"CREATE OR REPLACE TABLE {latest} {columns}")
            else:
                con.execute(f"CREATE OR REPLACE VIEW {latest} AS {_latest_sql(tbl, '_raw_' + tbl.name)}")
            return
        sources = []
        if files:
            pname = f"_p_{tbl.name}"
            # Matching columns by name costs a millisecond on every query: only
            # when the files differ (written by different versions).
            union = not self._scan.same_columns(files)
            con.read_parquet(files, union_by_name=union).create_view(pname, replace=True)
            # Files written before a column was added to the schema read it as NULL.
            present = self._scan.columns(files)
            added = "".join(
                f", NULL::{_DUCK_TYPES[c.type]} AS {_ident(c.name)}"
                for c in tbl.columns
                if present is not None and c.name not in present
            )
            sources.append(f"SELECT *{added} FROM {pname}")
        jname = f"_j_{tbl.name}"
        if journal.num_rows or not files:  # the empty table keeps the columns
            # A table, not a registered Arrow view: those are seen by this
            # connection only, and read_all queries on other cursors.
            con.register("_incoming", journal)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {jname} AS SELECT * FROM _incoming")
            finally:
                con.unregister("_incoming")
            sources.append(f"SELECT * FROM {jname}")
        con.execute(f"CREATE OR REPLACE VIEW _raw_{tbl.name} AS {' UNION ALL BY NAME '.join(sources)}")
        if len(sources) == 1 and files:
            con.execute(f"DROP TABLE IF EXISTS {jname}")  # its rows are in the files now
        kind = "TABLE" if tbl.key else "VIEW"
        con.execute(f"CREATE OR REPLACE {kind} {latest} AS {_latest_sql(tbl, '_raw_' + tbl.name)}")

    def _resolve(
        self, sql: str, params: list[Any] | dict[str, Any] | None, window: Window | None
    ) -> tuple[str, list[Any] | dict[str, Any]]:
        """*sql* and *params* with ``{window}`` replaced by the relation of *window*."""
        if window is None:
            return sql, params or []
        if isinstance(params, dict):
            raise TypeError("a query with a window takes its parameters as a list")
        tbl = TABLES[window.table]
        if tbl.key:
            raise ValueError(f"{window.table}: a window is for tables without a key")
        files, journal = self._sources.get(window.table, ([], True))
        keep = [f for f in files if self._scan.may_hold(f, window.start, window.end)]
        parts, first = [], []
        if keep:
            union = "false" if self._scan.same_columns(keep) else "true"
            parts.append(f"SELECT * FROM read_parquet(?, union_by_name = {union})")
            first.append(keep)
        if journal:
            parts.append(f"SELECT * FROM _j_{window.table}")
        if not parts:
            parts.append(f"SELECT * FROM _raw_{window.table} LIMIT 0")
        # The relation comes first in the statement, and so do its parameters.
        return sql.replace("{window}", "(" + " UNION ALL BY NAME ".join(parts) + ")"), [*first, *(params or [])]

    def _execute(
        self, sql: str, params: list[Any] | dict[str, Any] | None, window: Window | None = None
    ) -> duckdb.DuckDBPyConnection:
        with self._lock:
            for attempt in range(RETRIES):
                try:
                    cursor: duckdb.DuckDBPyConnection = self._con.execute(*self._resolve(sql, params, window))
                    return cursor
                except duckdb.IOException:
                    # A compaction replaced files between our scan and this query.
                    if attempt == RETRIES - 1:
                        raise
                    time.sleep(0.01 * attempt)
                    self._signatures.clear()
                    self.refresh()
            raise AssertionError("unreachable")

    def df(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None, window: Window | None = None
    ) -> pd.DataFrame:
        """Run parametrised *sql* and return a pandas DataFrame (``{window}``: see :class:`Window`)."""
        with self._lock:
            frame: pd.DataFrame = self._execute(sql, params, window).df()
            return frame

    def numpy(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None, window: Window | None = None
    ) -> dict[str, Any]:
        """Run parametrised *sql*; one NumPy array per column (masked where there are NULLs)."""
        with self._lock:
            columns: dict[str, Any] = self._execute(sql, params, window).fetchnumpy()
            return columns

    def read_all(self, *lanes: list[Read]) -> list[list[Any]]:
        """Run independent reads: each lane in order on its own cursor, the lanes at once.

        DuckDB runs queries on separate cursors of one database in parallel and
        without the GIL, so a page that needs one large and several small
        results waits for about the large one rather than for their sum. More
        lanes than cores only make them compete.
        """
        with self._lock:  # no refresh redefines the views meanwhile
            while len(self._lanes) < len(lanes):
                cursor = self._con.cursor()
                cursor.execute(f"USE {self._catalog}")
                self._lanes.append(cursor)
            try:
                return list(_readers().map(_read_lane, self._lanes[: len(lanes)], lanes, [self._resolve] * len(lanes)))
            except duckdb.IOException:
                # A compaction replaced files under us: one by one, with the retries.
                return [[r.take(self._execute(r.sql, r.params, r.window)) for r in lane] for lane in lanes]

    def rows(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._execute(sql, params).fetchall()
            return rows

    def close(self) -> None:
        with self._lock:
            self._finalizer()  # once; later calls do nothing
