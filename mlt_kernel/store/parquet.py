"""Parquet side of the store: the one module that imports ``pyarrow.parquet``.

Journals become Parquet when their writer is done ("compaction"). The rule
that keeps a shared folder safe without locks: a file is written under a
temporary name, made durable, renamed into place, and only then are the files
it replaces removed. Every step is idempotent, so two processes compacting the
same writer, or a compaction interrupted at any point, leave readable data and
never a duplicate that readers would count twice (see ``Scan`` in ``query``).

A merged file must prove what it replaces, because anyone who can write the
folder can write a file that claims anything. Its footer lists each file it
replaces with that file's row count and writer id (``REPLACED_KEY``); a reader
hides a listed file only when :func:`proven_replacements` holds:

1. the merged file holds exactly as many rows as its list adds up to;
2. the listed file exists with exactly the listed row count (from its footer)
   and its name carries the listed writer id;
3. the listed file and the merged file belong to the same account (``st_uid``):
   compaction merges only its own user's files, so a teammate's file can be
   replaced only by a file of that teammate.

A claim that fails hides nothing, and is never a reason to delete a file.
Merged files of earlier versions name the replaced files only
(``REPLACES_KEY``): such claims are unproven and hide nothing either (their
inputs were removed when they were written, so nothing is counted twice
unless that merge was interrupted).
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

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.locations import remote_of
from mlt_kernel.core.schema import SCHEMA_VERSION, TABLES, arrow_schema
from mlt_kernel.store.journal import iter_chunks, parse_journal_name

log = logging.getLogger("mlt_kernel.store.parquet")

#: Key in a merged file's metadata listing the file names it replaces: what
#: earlier versions wrote and read. Still written, for those readers; never
#: believed (a name alone proves nothing).
REPLACES_KEY = b"mlt.replaces"
#: Key in a merged file's metadata listing what it replaces, with proof:
#: ``[{"file": NAME, "rows": N, "writer": WRITER_ID}, …]`` (see the module docs).
REPLACED_KEY = b"mlt.replaced"


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
    if not records:
        return pa.Table.from_batches([], schema=schema)  # schema.empty_table() would import pandas
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
    """Every journal of *writer_id* (kernel and watcher roles): regular files, never links."""
    folder = exp / layout.JOURNALS
    try:
        safeio.check_folder(folder)
    except OSError:
        return []
    out = []
    for entry in os.scandir(folder):
        parsed = parse_journal_name(entry.name)
        if parsed and parsed[0] == writer_id and parsed[2] == SCHEMA_VERSION and entry.is_file(follow_symlinks=False):
            out.append(Path(entry.path))
    return sorted(out)


def compact_writer(exp: str | os.PathLike[str], writer_id: str) -> int:
    """Turn the journals of a finished writer into one Parquet file per table.

    Returns the number of records moved. Journals are streamed in chunks, so a
    long session's millions of samples never sit in memory at once. The
    journals are removed only after every Parquet file is durable, and only
    those of this process's user (readers skip a journal whose Parquet twin
    exists); running it twice is harmless. Journal lines are in time order
    already: no sort.
    """
    root = Path(exp)
    if remote_of(root) is not None:
        return 0  # a spool's journals go to its bucket as sealed parts (store.sync), never merged here
    journals = writer_journals(root, writer_id)
    if not journals:
        return 0
    moved = 0
    with contextlib.ExitStack() as stack:
        sinks: dict[str, pq.ParquetWriter] = {}
        for path in journals:
            for records, bad in iter_chunks(path.relative_to(root), beneath=root):
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
            if safeio.is_owned(path.lstat()):
                path.unlink()
    return moved


def write_records(exp: str | os.PathLike[str], table_name: str, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write *records* as a new Parquet file of their own (writers outside a kernel:
    the dashboard's document edits). Each call is a new writer; merging keeps the
    number of files small."""
    from mlt_kernel.store.journal import encode

    rows = [json.loads(encode(table_name, r)) for r in records]  # same validation as journals
    name = session_file_name(layout.new_writer_id())
    return write_parquet_atomic(records_to_arrow(table_name, rows), Path(exp) / layout.TABLES / table_name / name)


@dataclass(frozen=True)
class Replaced:
    """One file a merged file says it replaces (see the module docs)."""

    file: str
    rows: int | None  #: None: a claim of an earlier version, without proof
    writer: str | None = None


@dataclass(frozen=True)
class Footer:
    """What readers use of a Parquet file's footer, read once per file."""

    columns: tuple[str, ...]
    replaces: tuple[Replaced, ...]  #: what a merged file says it replaces (unproven)
    #: smallest and largest stored value of the column asked for (integers and
    #: times); None when a row group has no statistics: the file may hold anything
    range: tuple[int, int] | None = None
    rows: int = 0


@dataclass(frozen=True)
class Listed:
    """A table file as a folder listing found it: its footer and its owner's uid."""

    footer: Footer
    uid: int


def _json_list(raw: bytes | None) -> list[Any]:
    """The JSON list in a footer's metadata value; empty when missing or malformed (a hostile file's)."""
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _replaced(entry: Any) -> Replaced | None:
    """One entry of ``REPLACED_KEY``, or None when it is not well formed."""
    if not isinstance(entry, dict):
        return None
    file, rows, writer = entry.get("file"), entry.get("rows"), entry.get("writer")
    if not (isinstance(file, str) and isinstance(writer, str) and type(rows) is int and rows >= 0):
        return None
    return Replaced(file, rows, writer)


def _claims(metadata: Mapping[bytes, bytes]) -> tuple[Replaced, ...]:
    """The files a footer says it replaces: with proof (``REPLACED_KEY``), else names only."""
    if REPLACED_KEY in metadata:
        found = (_replaced(entry) for entry in _json_list(metadata[REPLACED_KEY]))
        return tuple(claim for claim in found if claim is not None)
    return tuple(Replaced(name, None) for name in _json_list(metadata.get(REPLACES_KEY)) if isinstance(name, str))


def proven_replacements(files: Mapping[str, Listed]) -> tuple[set[str], list[tuple[str, str]]]:
    """Of the table files of one folder (by name), those a merged file there proves it replaces.

    Returns ``(replaced names, refused claims)``; a refused claim is ``(merged
    file, listed file)`` for a listed file that exists but is not proven
    replaced (see the module docs). A listed file that no longer exists is
    neither: its merge removed it, as it should.
    """
    replaced: set[str] = set()
    refused: list[tuple[str, str]] = []
    for name, merged in files.items():
        claims = merged.footer.replaces
        if not claims:
            continue
        counts = [c.rows for c in claims if c.rows is not None]
        consistent = len(counts) == len(claims) and sum(counts) == merged.footer.rows
        for claim in claims:
            target = files.get(claim.file)
            if target is None or claim.file == name:
                continue
            if consistent and _proves(claim, merged, target):
                replaced.add(claim.file)
            else:
                refused.append((name, claim.file))
    return replaced, refused


def _proves(claim: Replaced, merged: Listed, target: Listed) -> bool:
    """Rules 2 and 3 of the module docs, for one listed file."""
    parsed = parse_table_file_name(claim.file)
    return (
        parsed is not None
        and parsed[1] == claim.writer
        and target.footer.rows == claim.rows
        and target.uid == merged.uid
    )


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
    names = tuple(meta.schema.names)
    return Footer(names, _claims(meta.metadata or {}), _range(meta, names, range_of), int(meta.num_rows))


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


def write_table_file(exp: Path, table_name: str, parts: Iterable[tuple[str, pa.Table]]) -> Path:
    """Write a merged file of *table_name* that holds and replaces *parts*, ``(file name, its rows)``.

    Its footer lists each part with its row count and writer (``REPLACED_KEY``).
    """
    names: list[str] = []
    tables: list[pa.Table] = []
    claims: list[dict[str, Any]] = []
    for file_name, part in parts:
        parsed = parse_table_file_name(file_name)
        if parsed is None:
            raise ValueError(f"{file_name!r} is not the name of a table file")
        names.append(file_name)
        tables.append(part)
        claims.append({"file": file_name, "rows": part.num_rows, "writer": parsed[1]})
    merged = sort_table(pa.concat_tables(tables, promote_options="default"), table_name)
    name = f"m-{layout.new_writer_id()}.v{SCHEMA_VERSION}.parquet"
    # Integers and times (sorted times, byte counts) are stored as deltas: a
    # third of the size of dictionary + zstd at 10 M samples, and quicker to decode.
    deltas = [f.name for f in merged.schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    return write_parquet_atomic(
        merged,
        exp / layout.TABLES / table_name / name,
        metadata={REPLACES_KEY: json.dumps(names).encode(), REPLACED_KEY: json.dumps(claims).encode()},
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
        table,
        path,
        row_group_size=None,
        compression_level=1,
        use_dictionary=[name for name in table.column_names if name not in floats],
        column_encoding=dict.fromkeys(floats, "BYTE_STREAM_SPLIT"),
    )


def row_count(path: Path) -> int:
    return int(pq.read_metadata(path).num_rows)


def read_table(path: str | os.PathLike[str], *, beneath: str | os.PathLike[str] | None = None) -> pa.Table:
    """The Parquet file *path*, a regular file opened without following a link.

    With *beneath*, *path* is relative to that folder and nothing below it may
    be a link (``mlt_kernel.core.safeio``).
    """
    with safeio.opened(path, beneath=beneath) as fd, os.fdopen(os.dup(fd), "rb") as f:
        return pq.read_table(f)
