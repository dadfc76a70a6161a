"""Append-only JSON-lines journals: how every writer records, one ``os.write`` per record.

A record is one line ``{"table": NAME, …columns…}``. One ``os.write`` of a
whole line on a file opened with ``O_APPEND`` survives SIGKILL of the writer
with nothing lost or half-written (measured while planning); a torn last line
can still appear after a power cut, and readers skip it.

Timestamps travel as integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlt_kernel.core import gilio, safeio
from mlt_kernel.core.errors import DamagedFileWarning
from mlt_kernel.core.schema import SCHEMA_VERSION, table

#: Longest journal line read; a longer one is skipped with one ``DamagedFileWarning``.
MAX_LINE_BYTES = safeio.MAX_JOURNAL_LINE_BYTES
#: Bytes read at a time: what a reader holds of a journal, besides one pending line.
READ_CHUNK_BYTES = 4 << 20


def now_us() -> int:
    """The current time in microseconds since the epoch (what journals store)."""
    return time.time_ns() // 1000


def _default(value: Any) -> Any:
    # numpy scalars and the like: store their Python value.
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


# Made once: json.dumps with options builds a new encoder on every call, and
# so does JSONEncoder.encode underneath; the C encoder itself can be kept.
_LINE = json.JSONEncoder(separators=(",", ":"), default=_default, allow_nan=False)
_VALUE = json.JSONEncoder(separators=(",", ":"), default=_default)
_C_MAKE_ENCODER: Callable[..., Callable[[object, int], tuple[str, ...]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)  # CPython's accelerator (called with the arguments JSONEncoder.iterencode passes)
_encode_line: Callable[[object], str] = _LINE.encode
if _C_MAKE_ENCODER is not None:
    _c_line = _C_MAKE_ENCODER(None, _default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)

    def _c_encode_line(line: object) -> str:
        return "".join(_c_line(line, 0))

    _encode_line = _c_encode_line


_HEADS: dict[str, str] = {}  # table name -> '{"table":"name"'


def _lines(table_name: str, records: Iterable[Mapping[str, Any]]) -> str:
    """Journal lines of *records*; those without ``recorded_at`` get one stamp, taken now."""
    tbl = table(table_name)
    names, json_columns = tbl.name_set, tbl.json_columns
    head = _HEADS.get(table_name)
    if head is None:
        head = _HEADS[table_name] = '{"table":' + _encode_line(table_name)
    stamp = f',"recorded_at":{now_us()}}}\n'
    out = []
    for record in records:
        if not names.issuperset(record):
            raise ValueError(f"{table_name}: unknown columns {sorted(set(record) - names)}")
        if json_columns:
            record = dict(record)
            for name in json_columns:
                value = record.get(name)
                if value is not None and not isinstance(value, str):
                    record[name] = _VALUE.encode(value)
        # The record's own object with its braces replaced: no copy of the record.
        body = _encode_line(record)
        if len(body) == 2:  # {}
            out.append(head + stamp)
        elif "recorded_at" in record:
            out.append(f"{head},{body[1:]}\n")
        else:
            out.append(f"{head},{body[1:-1]}{stamp}")
    return "".join(out)


def encode(table_name: str, record: Mapping[str, Any]) -> bytes:
    """One journal line for *record* of *table_name*; unknown columns are an error."""
    return _lines(table_name, (record,)).encode()


class JournalWriter:
    """Appends records to one journal file.

    The file is created lazily, on the first record, so that a session that
    picks its experiment folder in its first cell never touches another one.
    Thread-safe: the kernel and its helper threads may write at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted at a journal's name in a shared folder is not written through.
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)

    def write(self, table_name: str, record: Mapping[str, Any]) -> None:
        """Append one record (a single ``os.write``)."""
        self._append(encode(table_name, record))

    def write_many(self, table_name: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Append several records of one table in a single ``os.write``.

        A kill can tear only the last line of a write, as with one record;
        readers leave a torn line alone.
        """
        data = _lines(table_name, records).encode()
        if data:
            self._append(data)

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            gilio.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def journal_name(writer_id: str, role: str = "kernel") -> str:
    """File name of a journal: ``{writer_id}.{role}.v{SCHEMA_VERSION}.jsonl``."""
    return f"{writer_id}.{role}.v{SCHEMA_VERSION}.jsonl"


def parse_journal_name(name: str) -> tuple[str, str, int] | None:
    """``(writer_id, role, schema_version)`` of a journal file name, or None."""
    parts = name.split(".")
    if len(parts) != 4 or parts[3] != "jsonl" or not parts[2].startswith("v"):
        return None
    try:
        return parts[0], parts[1], int(parts[2][1:])
    except ValueError:
        return None


def _parse(raw: bytes | str) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("table"), str) else None


_DECODER = json.JSONDecoder()


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The records of whole lines *data* (ending with a newline) and the count of bad lines.

    Decodes the text once and scans it with the JSON decoder's C scanner,
    line after line: a third of the cost of ``json.loads`` per line. A line the
    scanner does not take whole goes to :func:`_parse`, so both accept the same.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        lines = [_parse(raw) for raw in data.splitlines() if raw.strip()]
        return [r for r in lines if r is not None], sum(r is None for r in lines)
    scan = _DECODER.raw_decode
    records: list[dict[str, Any]] = []
    bad = pos = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        try:
            rec, end = scan(text, pos)
        except ValueError:
            end = -1
        if end != nl or not (isinstance(rec, dict) and isinstance(rec.get("table"), str)):
            line = text[pos:nl]
            rec = _parse(line) if line.strip() else None
            bad += rec is None and bool(line.strip())
        if rec is not None:
            records.append(rec)
        pos = nl + 1
    return records, bad


@dataclass
class JournalCursor:
    """Where a reader stands in one journal, so that each read takes only new bytes.

    ``offset`` is the start of the first line not read yet; the ``pending``
    bytes after it hold no newline (a line being written, or torn): the next
    read looks for a newline only past them, and re-reads them once it finds
    one. A line longer than ``MAX_LINE_BYTES`` is dropped up to its newline
    (``skipping``) with one ``DamagedFileWarning``; none of it is kept. The
    holes of a sparse file read as NULs, never a newline: they are stepped over
    unread (``SEEK_DATA``).
    """

    offset: int = 0
    pending: int = 0
    skipping: bool = False

    @property
    def end(self) -> int:
        """The bytes of the file this cursor has looked at."""
        return self.offset + self.pending


def _warn_long_line(path: Path, offset: int) -> None:
    warnings.warn(
        f"{path}: the journal line at byte {offset} is longer than {MAX_LINE_BYTES} bytes; skipped",
        DamagedFileWarning,
        stacklevel=4,
    )


def _hole_at(fd: int, pos: int) -> int:
    """How many bytes from *pos* on lie in a hole of a sparse file (they read as NULs)."""
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            return 0  # no SEEK_DATA on this file system: everything is data
        data = max(os.fstat(fd).st_size, pos)  # nothing but a hole up to the end
    return data - pos


def _extend(path: Path, cursor: JournalCursor, size: int) -> None:
    """*size* more bytes without a newline belong to the pending line."""
    cursor.pending += size
    if not cursor.skipping and cursor.pending > MAX_LINE_BYTES:
        cursor.skipping = True
        _warn_long_line(path, cursor.offset)


def _batches(fd: int, path: Path, cursor: JournalCursor) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """``(records, bad_lines)`` of each chunk of whole lines past *cursor*, which moves along.

    Reads ``READ_CHUNK_BYTES`` at a time, so memory stays bounded by a chunk
    plus one line of at most ``MAX_LINE_BYTES``, whatever the file holds. Lines
    that lie whole in a chunk are shorter than it, far below the limit.
    """
    while True:
        hole = _hole_at(fd, cursor.end)
        if hole:  # NULs, so no newline: part of the pending line, and not worth reading
            _extend(path, cursor, hole)
        start = cursor.end
        chunk = os.pread(fd, READ_CHUNK_BYTES, start)
        if not chunk:
            return
        last = chunk.rfind(b"\n")
        if last < 0:  # the pending line goes on
            _extend(path, cursor, len(chunk))
            continue
        first = chunk.find(b"\n")
        records: list[dict[str, Any]] = []
        bad = 0
        body = chunk[first + 1 : last + 1]
        if cursor.skipping:
            pass  # the end of a line too long to read, told when it passed the limit
        elif cursor.pending + first > MAX_LINE_BYTES:
            _warn_long_line(path, cursor.offset)
        elif cursor.pending:  # the line began before this chunk: read it whole once
            records, bad = _parse_lines(os.pread(fd, cursor.pending, cursor.offset) + chunk[: first + 1])
        else:
            body = chunk[: last + 1]
        more, more_bad = _parse_lines(body)
        records.extend(more)
        cursor.offset, cursor.pending, cursor.skipping = start + last + 1, len(chunk) - last - 1, False
        yield records, bad + more_bad


def read_new(path: Path, cursor: JournalCursor, *, beneath: Path | None = None) -> tuple[list[dict[str, Any]], int]:
    """The records of the lines completed in *path* since *cursor*, and the count of bad lines.

    *cursor* moves past them; see :class:`JournalCursor`. The journal is opened
    without following links and must be a regular file (``mlt_kernel.core.safeio``);
    with *beneath* (the experiment folder), *path* is relative to it and no
    folder on the way may be a link either, even one swapped in since it was listed.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    shown = beneath / path if beneath is not None else path  # warnings name the whole path
    with safeio.opened(path, beneath=beneath) as fd:
        for chunk, chunk_bad in _batches(fd, shown, cursor):
            records.extend(chunk)
            bad += chunk_bad
    return records, bad


def read_lines(path: Path, offset: int = 0, *, beneath: Path | None = None) -> tuple[list[dict[str, Any]], int, int]:
    """Records of *path* from byte *offset*: ``(records, new_offset, bad_lines)``.

    Stops before an unterminated last line (a writer may be mid-write, or it
    was torn): the returned offset points at it, so the next call retries it.
    Lines that are not valid JSON objects are counted in *bad_lines* and skipped;
    a line longer than ``MAX_LINE_BYTES`` is skipped with a ``DamagedFileWarning``.
    Readers that come back for more keep a :class:`JournalCursor` (:func:`read_new`).
    """
    cursor = JournalCursor(offset)
    records, bad = read_new(path, cursor, beneath=beneath)
    return records, cursor.offset, bad


def iter_chunks(
    path: Path, size: int = 100_000, *, beneath: Path | None = None
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """``(records, bad_lines)`` of *path* in chunks of about *size* lines, for journals too big to hold.

    *beneath* as for :func:`read_new`.
    """
    chunk: list[dict[str, Any]] = []
    bad = 0
    shown = beneath / path if beneath is not None else path
    with safeio.opened(path, beneath=beneath) as fd:
        for records, batch_bad in _batches(fd, shown, JournalCursor()):
            chunk.extend(records)
            bad += batch_bad
            if len(chunk) >= size:
                yield chunk, bad
                chunk, bad = [], 0
    if chunk or bad:
        yield chunk, bad


__all__ = [
    "MAX_LINE_BYTES",
    "SCHEMA_VERSION",
    "JournalCursor",
    "JournalWriter",
    "encode",
    "iter_chunks",
    "journal_name",
    "now_us",
    "parse_journal_name",
    "read_lines",
    "read_new",
]
