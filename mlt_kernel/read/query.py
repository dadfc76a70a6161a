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
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from mlt_kernel.core.locations import is_remote
from mlt_kernel.core.schema import CELLS, RUNS, TABLES, Table
from mlt_kernel.read.scan import Scan, Snapshot
from mlt_kernel.store.mirror import Mirror

if TYPE_CHECKING:
    import pandas as pd


#: Attempts at a view or query whose files a compaction replaced meanwhile.
RETRIES = 10
#: Seconds between listings of an ``s3://`` experiment's bucket by one reader.
REMOTE_REFRESH_S = 2.0
#: Results of statements run with ``keep=True`` that a Query keeps until its relations change,
#: and the most rows of one kept.
RESULTS = 16
RESULT_ROWS = 10_000


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
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
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
# peaks taken from their cells; rebuilt when one of the tables they mention changes.
_DERIVED = {
    CELLS.name: """
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
    RUNS.name: """
        SELECT r.* REPLACE (
            greatest(r.peak_rss_bytes, agg.peak_rss_bytes) AS peak_rss_bytes,
            greatest(r.peak_gpu_bytes, agg.peak_gpu_bytes) AS peak_gpu_bytes)
        FROM _latest_runs r LEFT JOIN (
            SELECT c.run_id, max(c.peak_rss_bytes) AS peak_rss_bytes,
                max(greatest(c.peak_gpu_bytes, u.peak_gpu_bytes)) AS peak_gpu_bytes
            FROM _latest_cells c LEFT JOIN cell_usage u USING (session_id, cell_seq)
            WHERE c.run_id IS NOT NULL GROUP BY c.run_id) agg USING (run_id)
    """,
}

#: A table's name in a statement, bare or behind the prefix of one of its relations.
_MENTION = re.compile(r"\b(_latest_|_raw_|_j_|_p_)?(" + "|".join(sorted(TABLES, key=len, reverse=True)) + r")\b")


def _mentions(sql: str) -> tuple[set[str], set[str]]:
    """The tables whose relations *sql* may read, and the derived tables among them.

    Cheap, and errs on the side of too many (a column or a string named like a
    table defines a relation nobody reads); a table it misses is caught by
    :meth:`Query._execute`, which then defines every table.
    """
    tables: set[str] = set()
    derived: set[str] = set()
    todo = [sql]
    while todo:
        for prefix, name in _MENTION.findall(todo.pop()):
            tables.add(name)
            if not prefix and name in _DERIVED and name not in derived:
                derived.add(name)
                todo.append(_DERIVED[name])
    return tables, derived


#: The tables each derived table is made of.
_DERIVED_FROM = {name: _mentions(sql)[0] for name, sql in _DERIVED.items()}


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


def _result_key(
    kind: str, sql: str, params: list[Any] | dict[str, Any] | None, window: Window | None
) -> tuple[Any, ...] | None:
    """What identifies a statement's result, or None when it is not kept (parameters that are not scalars)."""
    values = params.items() if isinstance(params, dict) else enumerate(params or ())
    pairs = tuple((k, type(v).__name__, v) for k, v in values)  # 1 and True are equal keys, not equal values
    if not all(isinstance(v, (str, int, float, bool)) or v is None for _, _, v in pairs):
        return None
    return (kind, sql, pairs, window)


def _read_lane(cursor: Any, lane: list[Read], resolve: Callable[..., tuple[str, Any]]) -> list[Any]:
    return [read.take(cursor.execute(*resolve(read.sql, read.params, read.window))) for read in lane]


_pool: Any = None
_pool_lock = threading.Lock()
_database: Future[Any] | None = None
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


def _open_database() -> Any:
    # Never fetch an extension: an s3:// path is read through the local mirror (read.mirror),
    # and a query must not reach the internet.
    database = duckdb.connect(
        ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    # Our Parquet files are never rewritten, so their footers can be
    # cached: a run's timeline then reads one row group and no metadata.
    database.execute("SET parquet_metadata_cache = true")
    return database


def _opening() -> Future[Any]:
    """The process's DuckDB database, opened once, on a thread of its own.

    Opening costs ~20 ms, mostly without the GIL. It starts when this module is
    imported (never by the kernel, which does not import it), so it goes on
    while the imports that follow run and the first ``Query`` lists its folder.
    """
    global _database
    with _pool_lock:
        if _database is None:
            _database = Future()
            # Not a daemon: a process that exits meanwhile waits the few ms for it (DuckDB
            # aborts the process when its thread is stopped in the middle of opening).
            threading.Thread(target=_open_into, args=(_database,), name="mlt-duckdb-open").start()
        return _database


def _open_into(future: Future[Any]) -> None:
    try:
        future.set_result(_open_database())
    except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the database
        future.set_exception(exc)


def _connect(database: Future[Any]) -> tuple[Any, str]:
    """A connection to the process's DuckDB database, using a new catalog of its own."""
    con = database.result().cursor()
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
        database = _opening()
        #: An ``s3://`` experiment is read through its local mirror, brought up to date by ``refresh``.
        self.mirror: Mirror | None = Mirror(str(root)) if is_remote(root) else None
        self.root = self.mirror.folder if self.mirror is not None else Path(root)
        if self.mirror is not None:
            self.mirror.refresh()
        self._scan = Scan(self.root)
        self._database = database
        self._connection: tuple[Any, str] | None = None
        self._sources: dict[str, tuple[list[str], bool]] = {}  # table -> (Parquet files, has a journal table)
        self._lanes: list[Any] = []  # cursors of read_all, in this catalog
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.RLock()
        self._signatures: dict[str, tuple[Any, ...]] = {}
        #: Tables are defined when a statement first mentions them: a query of the
        #: runs reads neither the samples nor their journals.
        self._defined: set[str] = set()
        self._built: set[str] = set()  #: the derived tables made so far
        #: Keyed and derived relations start as views, which a single query reads at
        #: the cost of a table's making; the second statement that reads one makes it
        #: a table, from then on remade when its files change.
        self._kinds: dict[str, str] = {}
        self._read: set[str] = set()  #: relations a statement read
        self._hot: set[str] = set()  #: relations kept as tables
        self._journal_tables: set[str] = set()  #: tables whose journal rows have a table (``_j_…``)
        self._first = True  #: the mirror was refreshed just now
        #: Results of statements run with ``keep=True`` since the relations last changed (Parquet
        #: files are never rewritten, so such a statement over unchanged relations returns the same rows).
        self._results: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._listed = time.monotonic()

    @property
    def _con(self) -> Any:
        if self._connection is None:
            self._connection = _connect(self._database)
            con, catalog = self._connection
            # An Experiment dropped without close() must not leave its catalog behind.
            self._finalizer = weakref.finalize(self, _release, con, catalog, self._lanes)
        return self._connection[0]

    @property
    def _catalog(self) -> str:
        self._con  # noqa: B018 - connects
        assert self._connection is not None
        return self._connection[1]

    def refresh(self) -> bool:
        """Pick up new files and journal lines of the tables in use; True when anything changed."""
        with self._lock:
            # The bucket is listed at most every REMOTE_REFRESH_S: queries in a row run at local speed,
            # and what writers upload (every 10 s) shows at the next look.
            if self.mirror is not None and not self._first and time.monotonic() - self._listed >= REMOTE_REFRESH_S:
                self.mirror.refresh()
                self._listed = time.monotonic()
            self._first = False
            return self._update(self._defined)

    def _update(self, tables: Collection[str]) -> bool:
        """Define the relations of *tables* whose files or journals changed; True when any did."""
        if not tables:
            return False
        for attempt in range(RETRIES):
            snap = self._scan.snapshot(self._signatures, tables)
            if not snap.signatures:
                return False
            try:
                self._apply(snap)
            except duckdb.IOException:
                # A compaction removed a file between our listing and DuckDB's: look again.
                if attempt == RETRIES - 1:
                    raise
                for name in tables:
                    self._signatures.pop(name, None)
                time.sleep(0.01 * attempt)
                continue
            self._signatures.update(snap.signatures)
            return True
        return False

    def prepare(self, *statements: str) -> None:
        """Define what *statements* will read, in one look at the folder (a query of several
        statements would otherwise list and read the journals once for each new table)."""
        with self._lock:
            self._ensure_retrying(" ".join(statements), reads=False)

    def _ensure_retrying(self, sql: str, window: Window | None = None, *, reads: bool = True) -> None:
        """:meth:`_ensure`, looking again when a compaction replaced files meanwhile."""
        for attempt in range(RETRIES):
            try:
                self._ensure(sql, window, reads=reads)
                return
            except duckdb.IOException as exc:
                self._look_again(attempt, exc)

    def _look_again(self, attempt: int, exc: duckdb.IOException) -> None:
        """A compaction replaced files under a statement: list the folder anew (*exc* on the last attempt)."""
        if attempt == RETRIES - 1:
            raise exc
        time.sleep(0.01 * attempt)
        self._signatures.clear()
        self.refresh()

    def _ensure(self, sql: str, window: Window | None = None, *, reads: bool = True) -> None:
        """Define the relations *sql* (and *window*) may read that are not defined yet; *reads*:
        the statement is run now (a relation read for the second time is made a table)."""
        tables, derived = _mentions(sql)
        if window is not None:
            tables.add(window.table)
        missing = tables - self._defined
        if missing:
            self._defined |= missing
            self._update(missing)
        for name in _DERIVED:
            if name in derived and name not in self._built:
                self._make(name, _DERIVED[name])
                self._built.add(name)
        for name in tables if reads else ():
            relation = name if name in derived or name not in _DERIVED else f"_latest_{name}"
            if relation in self._kinds and relation not in self._hot:
                if relation in self._read:
                    self._hot.add(relation)
                    self._make(relation, self._sql_of(relation))
                self._read.add(relation)

    def _define_all(self) -> None:
        self._ensure(" ".join(TABLES))

    def _sql_of(self, relation: str) -> str:
        """The statement that makes a keyed or derived *relation*."""
        if relation in _DERIVED:
            return _DERIVED[relation]
        tbl = TABLES[relation.removeprefix("_latest_")]
        return _latest_sql(tbl, "_raw_" + tbl.name)

    def _make(self, relation: str, sql: str) -> None:
        """(Re)make a keyed or derived *relation*: a table once it is hot, else a view."""
        kind = "TABLE" if relation in self._hot else "VIEW"
        self._results.clear()
        was = self._kinds.get(relation)
        if was is not None and was != kind:
            self._con.execute(f"DROP {was} IF EXISTS {relation}")
            del self._kinds[relation]  # until it is made again (a file may vanish meanwhile)
        self._con.execute(f"CREATE OR REPLACE {kind} {relation} AS {sql}")
        self._kinds[relation] = kind

    def _apply(self, snap: Snapshot) -> None:
        self._results.clear()
        for name in snap.signatures:
            self._define(TABLES[name], snap.parquet[name], snap.journal_tables[name])
        for name, sql in _DERIVED.items():
            if name in self._built and not _DERIVED_FROM[name].isdisjoint(snap.signatures):
                self._make(name, sql)

    def _define(self, tbl: Table, files: list[str], journal: pa.Table) -> None:
        con = self._con
        latest = f"_latest_{tbl.name}" if tbl.name in _DERIVED else tbl.name
        self._sources[tbl.name] = (files, bool(journal.num_rows) or not files)
        if not files and not journal.num_rows:  # an empty table: its columns only, in a few statements
            columns = _empty_columns(tbl)
            con.execute(f"CREATE OR REPLACE TABLE _j_{tbl.name} {columns}")
            self._journal_tables.add(tbl.name)
            con.execute(f"CREATE OR REPLACE VIEW _raw_{tbl.name} AS SELECT * FROM _j_{tbl.name}")
            if tbl.key:
                self._make(latest, _latest_sql(tbl, "_raw_" + tbl.name))
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
            self._journal_tables.add(tbl.name)
            sources.append(f"SELECT * FROM {jname}")
        con.execute(f"CREATE OR REPLACE VIEW _raw_{tbl.name} AS {' UNION ALL BY NAME '.join(sources)}")
        if len(sources) == 1 and files and tbl.name in self._journal_tables:
            con.execute(f"DROP TABLE {jname}")  # its rows are in the files now
            self._journal_tables.discard(tbl.name)
        if tbl.key:
            self._make(latest, _latest_sql(tbl, "_raw_" + tbl.name))
        else:
            con.execute(f"CREATE OR REPLACE VIEW {latest} AS {_latest_sql(tbl, '_raw_' + tbl.name)}")

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
            self._ensure_retrying(sql, window)
            for attempt in range(RETRIES):
                try:
                    cursor: duckdb.DuckDBPyConnection = self._con.execute(*self._resolve(sql, params, window))
                    return cursor
                except duckdb.CatalogException:
                    # A relation _mentions did not see (a name DuckDB resolves its own way): define them all.
                    if self._defined == set(TABLES) and self._built == set(_DERIVED):
                        raise
                    self._define_all()
                except duckdb.IOException as exc:  # between our scan and this query
                    self._look_again(attempt, exc)
            raise AssertionError("unreachable")

    def df(
        self,
        sql: str,
        params: list[Any] | dict[str, Any] | None = None,
        window: Window | None = None,
        *,
        keep: bool = False,
    ) -> pd.DataFrame:
        """Run parametrised *sql* and return a pandas DataFrame (``{window}``: see :class:`Window`).

        *keep*: answer it again from this result until what it reads changes. Only for a
        statement that reads the relations and nothing else (no ``now()``, no ``random()``, no
        writes) and returns plain values (no lists or structs, which a caller could change).
        """
        with self._lock:
            key = _result_key("df", sql, params, window) if keep else None
            kept: pd.DataFrame | None = self._cached(key)
            if kept is not None:
                return kept.copy()
            frame: pd.DataFrame = self._execute(sql, params, window).df()
            return frame.copy() if self._keep(key, frame, len(frame)) else frame

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
            for lane in lanes:
                for read in lane:
                    self._ensure_retrying(read.sql, read.window)
            while len(self._lanes) < len(lanes):
                cursor = self._con.cursor()
                cursor.execute(f"USE {self._catalog}")
                self._lanes.append(cursor)
            try:
                return list(_readers().map(_read_lane, self._lanes[: len(lanes)], lanes, [self._resolve] * len(lanes)))
            except duckdb.IOException:
                # A compaction replaced files under us: one by one, with the retries.
                return [[r.take(self._execute(r.sql, r.params, r.window)) for r in lane] for lane in lanes]

    def rows(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None, *, keep: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run parametrised *sql* and return its rows (*keep*: as for :meth:`df`)."""
        with self._lock:
            key = _result_key("rows", sql, params, None) if keep else None
            kept: list[tuple[Any, ...]] | None = self._cached(key)
            if kept is not None:
                return list(kept)
            rows: list[tuple[Any, ...]] = self._execute(sql, params).fetchall()
            return list(rows) if self._keep(key, rows, len(rows)) else rows

    def _cached(self, key: tuple[Any, ...] | None) -> Any:
        """A result kept for *key* since the relations last changed, or None.

        The statement's own relations are defined first: a relation it reads for
        the first time (or makes a table on its second read) changes the catalog.
        """
        if key is None:
            return None
        self._ensure_retrying(key[1], key[3], reads=False)  # the run that follows a miss counts the read
        found = self._results.get(key)
        if found is not None:
            self._results.move_to_end(key)
        return found

    def _keep(self, key: tuple[Any, ...] | None, result: Any, rows: int) -> bool:
        """Keep *result* for *key* (the caller then hands out a copy); False when it is not kept."""
        if key is None or rows > RESULT_ROWS:
            return False
        self._results[key] = result
        while len(self._results) > RESULTS:
            self._results.popitem(last=False)
        return True

    def close(self) -> None:
        with self._lock:
            self._results.clear()
            if self._finalizer is not None:
                self._finalizer()  # once; later calls do nothing


_opening()
