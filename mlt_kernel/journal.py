"""Append-only JSON-lines journals: how every writer records, one ``os.write`` per record.

A record is one line ``{"table": NAME, …columns…}``. One ``os.write`` of a
whole line on a file opened with ``O_APPEND`` survives SIGKILL of the writer
with nothing lost or half-written (measured while planning); a torn last line
can still appear after a power cut, and readers skip it.

Timestamps travel as integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import gilio
from .schema import SCHEMA_VERSION, table


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
if json.encoder.c_make_encoder is not None:  # CPython's accelerator (arguments as JSONEncoder.iterencode passes them)
    _c_line = json.encoder.c_make_encoder(None, _default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)

    def _encode_line(line: dict[str, Any]) -> str:
        return "".join(_c_line(line, 0))
else:
    _encode_line = _LINE.encode


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
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

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


def read_lines(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int, int]:
    """Records of *path* from byte *offset*: ``(records, new_offset, bad_lines)``.

    Stops before an unterminated last line (a writer may be mid-write, or it
    was torn): the returned offset points at it, so the next call retries it.
    Lines that are not valid JSON objects are counted in *bad_lines* and skipped.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records, bad = _parse_lines(data[:end])
    return records, offset + end, bad


def iter_chunks(path: Path, size: int = 100_000) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """``(records, bad_lines)`` of *path* in chunks of *size* lines, for journals too big to hold."""
    chunk: list[dict[str, Any]] = []
    bad = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a torn last line
            if not raw.strip():
                continue
            rec = _parse(raw)
            if rec is None:
                bad += 1
            else:
                chunk.append(rec)
            if len(chunk) >= size:
                yield chunk, bad
                chunk, bad = [], 0
    if chunk or bad:
        yield chunk, bad



__all__ = [
    "SCHEMA_VERSION",
    "JournalWriter",
    "encode",
    "iter_chunks",
    "journal_name",
    "now_us",
    "parse_journal_name",
    "read_lines",
]
