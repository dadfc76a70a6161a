"""Parquet side of the store: the one module that imports ``pyarrow.parquet``.

Journals become Parquet when their writer is done ("compaction"). The rule
that keeps a shared folder safe without locks: a file is written under a
temporary name, made durable, renamed into place, and only then are the files
it replaces removed. Every step is idempotent, so two processes compacting the
same writer, or a compaction interrupted at any point, leave readable data and
never a duplicate that readers would count twice (see ``Scan`` in ``query``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout
from .journal import iter_chunks, parse_journal_name
from .schema import SCHEMA_VERSION, TABLES, arrow_schema

log = logging.getLogger("mlt_kernel.store")

#: Key in a merged file's metadata listing the file names it replaces.
REPLACES_KEY = b"mlt.replaces"


def session_file_name(writer_id: str) -> str:
    return f"s-{writer_id}.v{SCHEMA_VERSION}.parquet"


def parse_table_file_name(name: str) -> tuple[str, str, int] | None:
    """``(kind, ident, schema_version)`` for ``s-ID.vN.parquet`` / ``m-ID.vN.parquet``."""
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != "parquet" or not parts[1].startswith("v"):
        return None
    kind, _, ident = parts[0].partition("-")
    if kind not in ("s", "m") or not ident:
        return None
    try:
        return kind, ident, int(parts[1][1:])
    except ValueError:
        return None


def _column(values: list[Any], typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        # One bad value must not cost the whole column: keep what converts.
        out = []
        for v in values:
            try:
                pa.scalar(v, type=typ)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                v = None
            out.append(v)
        return pa.array(out, type=typ)


def records_to_arrow(table_name: str, records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Journal records of one table as a pyarrow table of its schema."""
    schema = arrow_schema(TABLES[table_name])
    try:  # all at once, in Arrow's C++ (keys outside the schema, like "table", are left out)
        arrays = pa.array(records, type=pa.struct(list(schema))).flatten()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        arrays = [_column([r.get(f.name) for r in records], f.type) for f in schema]  # column by column
    return pa.Table.from_arrays(arrays, schema=schema)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    """A binary file that appears at *path* whole and durable, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def write_parquet_atomic(
    table: pa.Table,
    path: Path,
    *,
    metadata: Mapping[bytes, bytes] | None = None,
    row_group_size: int | None = 256 * 1024,
    **options: Any,
) -> Path:
    """Write *table* to *path*: temporary name, fsync, rename, fsync the folder.

    *options* go to ``pyarrow.parquet.write_table`` (zstd unless they say otherwise).
    """
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with _atomic(path) as f:
        pq.write_table(table, f, **{"compression": "zstd", **options}, row_group_size=row_group_size)
    return path


def sort_table(table: pa.Table, table_name: str) -> pa.Table:
    key = TABLES[table_name].sort_by
    if table.num_rows > 1 and key in table.column_names:
        table = table.sort_by([(key, "ascending")])
    return table


def writer_journals(exp: Path, writer_id: str) -> list[Path]:
    """Every journal of *writer_id* (kernel and watcher roles)."""
    folder = exp / layout.JOURNALS
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        parsed = parse_journal_name(p.name)
        if parsed and parsed[0] == writer_id and parsed[2] == SCHEMA_VERSION:
            out.append(p)
    return sorted(out)


def compact_writer(exp: str | os.PathLike[str], writer_id: str) -> int:
    """Turn the journals of a finished writer into one Parquet file per table.

    Returns the number of records moved. Journals are streamed in chunks, so a
    long session's millions of samples never sit in memory at once. The
    journals are removed only after every Parquet file is durable; running it
    twice is harmless. Journal lines are in time order already: no sort.
    """
    root = Path(exp)
    journals = writer_journals(root, writer_id)
    if not journals:
        return 0
    moved = 0
    with contextlib.ExitStack() as stack:
        sinks: dict[str, pq.ParquetWriter] = {}
        for path in journals:
            for records, bad in iter_chunks(path):
                if bad:
                    log.warning("%s: skipped %d unreadable journal line(s)", path, bad)
                by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for rec in records:
                    if rec["table"] in TABLES:
                        by_table[rec["table"]].append(rec)
                for name, rows in by_table.items():
                    if name not in sinks:
                        f = stack.enter_context(_atomic(root / layout.TABLES / name / session_file_name(writer_id)))
                        sinks[name] = stack.enter_context(
                            pq.ParquetWriter(f, arrow_schema(TABLES[name]), compression="zstd")
                        )
                    sinks[name].write_table(records_to_arrow(name, rows), row_group_size=256 * 1024)
                    moved += len(rows)
    for path in journals:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return moved


def write_records(exp: str | os.PathLike[str], table_name: str, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write *records* as a new Parquet file of their own (writers outside a kernel:
    the dashboard's document edits). Each call is a new writer; merging keeps the
    number of files small."""
    from .journal import encode

    rows = [json.loads(encode(table_name, r)) for r in records]  # same validation as journals
    name = session_file_name(layout.new_writer_id())
    return write_parquet_atomic(records_to_arrow(table_name, rows), Path(exp) / layout.TABLES / table_name / name)


@dataclass(frozen=True)
class Footer:
    """What readers use of a Parquet file's footer, read once per file."""

    columns: tuple[str, ...]
    replaces: tuple[str, ...]  #: the file names a merged file replaces
    #: smallest and largest stored value of the column asked for (integers and
    #: times); None when a row group has no statistics: the file may hold anything
    range: tuple[int, int] | None = None


def read_footer(path: Path, range_of: str | None = None) -> Footer | str:
    """The footer of *path* (with the range of column *range_of*), or why it cannot be read (one line).

    ``FileNotFoundError`` passes through: a file that vanished is not damaged.
    """
    try:
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        if not path.exists():
            raise FileNotFoundError(path) from exc
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raw = (meta.metadata or {}).get(REPLACES_KEY)
    names = tuple(meta.schema.names)
    return Footer(names, tuple(json.loads(raw)) if raw else (), _range(meta, names, range_of))


def _range(meta: Any, names: tuple[str, ...], column: str | None) -> tuple[int, int] | None:
    if column not in names:
        return None
    i = names.index(column)
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(i).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.min_raw, int):
            return None
        lows.append(stats.min_raw)
        highs.append(stats.max_raw)
    return (min(lows), max(highs)) if lows else None


#: Rows per row group of merged files: small enough that reading one run's
#: timeline decompresses little more than that run (DuckDB skips row groups by
#: their min/max of the sort column). Smaller groups cost more per query in
#: statistics to check: 16K-row groups made a timeline slower at 10 M samples.
MERGED_ROW_GROUP = 64 * 1024
#: Smaller for tables with few rows per run, read one run at a time (metrics,
#: sorted by run): 8K rows read one run's metrics in half the time of 64K.
MERGED_ROW_GROUPS = {"metrics": 8 * 1024}


def write_table_file(
    exp: Path, table_name: str, tables: Iterable[pa.Table], replaces: Sequence[str]
) -> Path:
    """Write a merged file of *table_name* that replaces the files named in *replaces*."""
    merged = sort_table(pa.concat_tables(list(tables), promote_options="default"), table_name)
    name = f"m-{layout.new_writer_id()}.v{SCHEMA_VERSION}.parquet"
    # Integers and times (sorted times, byte counts) are stored as deltas: a
    # third of the size of dictionary + zstd at 10 M samples, and quicker to decode.
    deltas = [f.name for f in merged.schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    return write_parquet_atomic(
        merged,
        exp / layout.TABLES / table_name / name,
        metadata={REPLACES_KEY: json.dumps(list(replaces)).encode()},
        row_group_size=MERGED_ROW_GROUPS.get(table_name, MERGED_ROW_GROUP),
        use_dictionary=[col for col in merged.column_names if col not in deltas],
        column_encoding=dict.fromkeys(deltas, "DELTA_BINARY_PACKED"),
    )


def write_arrays(path: Path, columns: Mapping[str, Any]) -> Path:
    """Write columns (numpy arrays or lists) as one Parquet file, atomically.

    Big row groups: these files are read whole, and writing a million rows in
    small groups costs three times as long. Floating-point columns (scores,
    probabilities) skip the dictionary, which they overflow anyway, for byte
    stream split, and zstd runs at level 1: a third of the time of the
    defaults, and smaller files.
    """
    table = pa.table(dict(columns))
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    return write_parquet_atomic(
        table, path, row_group_size=None, compression_level=1,
        use_dictionary=[name for name in table.column_names if name not in floats],
        column_encoding=dict.fromkeys(floats, "BYTE_STREAM_SPLIT"),
    )  # fmt: skip


def row_count(path: Path) -> int:
    return int(pq.read_metadata(path).num_rows)


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)
