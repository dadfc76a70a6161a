"""What an experiment folder holds, listed and read for ``Query``: Parquet parts and live journals.

``Scan`` lists the Parquet files of the tables it is asked for (reading their
footers once per file version) and reads the journals incrementally: in bounded
chunks, from where the last read stopped (``journal.JournalCursor``). The
watcher's samples journals (most of a folder's lines) are read only once the
``samples`` table is asked for. The folder may be
shared: links and files that are not regular are skipped with a warning, and a
merged file hides the files it replaces only when it proves it
(``store.proven_replacements``). Reads only; never imports DuckDB.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.errors import DamagedFileWarning, UnsafeFileError
from mlt_kernel.core.schema import SAMPLES, SCHEMA_VERSION, TABLES
from mlt_kernel.store import parquet as store
from mlt_kernel.store.journal import JournalCursor, parse_journal_name, read_new


@dataclass
class _Journal:
    writer_id: str
    cursor: JournalCursor = field(default_factory=JournalCursor)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Snapshot:
    """What changed since the last scan: per table, its Parquet files and journal records."""

    parquet: dict[str, list[str]]
    journal_tables: dict[str, pa.Table]
    signatures: dict[str, tuple[Any, ...]]


class Scan:
    """Lists an experiment folder and reads its journals incrementally."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._journals: dict[str, _Journal] = {}  # keyed by the path as listed
        #: file -> (mtime, size, owner, its footer or why it is unreadable); keyed by str(path)
        self._footers: dict[str, tuple[float, int, int, store.Footer | str]] = {}
        self._warned: set[tuple[str, str]] = set()

    def _warn(self, path: Path | str, why: str) -> None:
        if (str(path), why) not in self._warned:
            self._warned.add((str(path), why))
            warnings.warn(f"{path}: {why}; skipped", DamagedFileWarning, stacklevel=4)

    def _footer(self, path: Path, st: os.stat_result, sort_by: str) -> store.Footer | None:
        """The footer of a Parquet file (read once; None, with a warning, when unreadable)."""
        cached = self._footers.get(str(path))
        if cached is None or cached[:3] != (st.st_mtime, st.st_size, st.st_uid):
            cached = (st.st_mtime, st.st_size, st.st_uid, store.read_footer(path, range_of=sort_by))
            self._footers[str(path)] = cached
        if isinstance(cached[3], str):
            self._warn(path, f"unreadable Parquet file ({cached[3]})")
            return None
        return cached[3]

    def _known(self, path: str) -> store.Footer | None:
        cached = self._footers.get(path)
        return cached[3] if cached is not None and not isinstance(cached[3], str) else None

    def same_columns(self, files: list[str]) -> bool:
        """Whether *files* (listed by the last scan) all have the same columns."""
        footers = [self._known(f) for f in files]
        return None not in footers and len({f.columns for f in footers if f is not None}) == 1

    def columns(self, files: list[str]) -> set[str] | None:
        """Every column that one of *files* (listed by the last scan) has; None when a footer is unknown."""
        footers = [self._known(f) for f in files]
        if None in footers:
            return None
        return {name for footer in footers if footer is not None for name in footer.columns}

    def may_hold(self, path: str, start: int, end: int) -> bool:
        """Whether Parquet file *path* may hold rows whose sort column lies in [start, end] (its statistics)."""
        footer = self._known(path)
        found = footer.range if footer is not None else None
        return found is None or (found[0] <= end and found[1] >= start)

    def _list(self, folder: Path) -> list[os.DirEntry[str]]:
        """The entries of a folder of the layout; none, with a warning, when it is a link."""
        try:
            safeio.check_folder(folder)
        except UnsafeFileError as exc:
            self._warn(folder, exc.reason)
            return []
        return list(os.scandir(folder))

    def _table_files(self, table: str) -> tuple[list[Path], set[str]]:
        folder = self.root / layout.TABLES / table
        try:
            entries = self._list(folder)
        except (FileNotFoundError, NotADirectoryError):
            return [], set()
        files: list[Path] = []
        listed: dict[str, store.Listed] = {}
        for entry in entries:
            parsed = store.parse_table_file_name(entry.name)
            if parsed is None:
                continue  # temporary files of a writer, foreign files
            path = Path(entry.path)
            if parsed[2] != SCHEMA_VERSION:
                newer = parsed[2] > SCHEMA_VERSION
                self._warn(
                    path,
                    f"schema version {parsed[2]} is {'newer than' if newer else 'older than'} "
                    f"this reader's ({SCHEMA_VERSION}){'; upgrade mlt-kernel' if newer else ''}",
                )
                continue
            try:
                st = entry.stat(follow_symlinks=False)  # DuckDB would follow a link: never hand it one
                if not stat.S_ISREG(st.st_mode):
                    self._warn(path, "not a regular file (a link or a folder)")
                    continue
                footer = self._footer(path, st, TABLES[table].sort_by)
                if footer is None:
                    continue
            except FileNotFoundError:
                continue  # replaced by a compaction while we looked
            listed[entry.name] = store.Listed(footer, st.st_uid)
            files.append(path)
        replaced, refused = store.proven_replacements(listed)
        for claimant, name in refused:
            why = f"claim to replace {name} without proof (row counts, writer or owner differ)"
            self._warn(folder / claimant, why)
        return files, replaced

    def _read_journals(self, samples: bool) -> None:
        """Read what the journals gained; the samples journals only when *samples*."""
        folder = self.root / layout.JOURNALS
        try:
            entries = self._list(folder)
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        listed: set[str] = set()
        for entry in entries:
            parsed = parse_journal_name(entry.name)
            if parsed is None:
                continue
            path = entry.path  # a str: a refresh of a few hundred journals makes no Path
            listed.add(path)
            if parsed[2] != SCHEMA_VERSION:
                self._warn(path, f"journal of schema version {parsed[2]} (this reader: {SCHEMA_VERSION})")
                continue
            if parsed[1] == SAMPLES.name and not samples:
                continue  # nobody asked for a timeline yet
            state = self._journals.get(path)
            if state is None:
                state = self._journals[path] = _Journal(parsed[0])
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    self._warn(path, "not a regular file (a link, a FIFO or a folder)")
                    continue
                if st.st_size < state.cursor.end:  # replaced by a shorter file: start again
                    state = self._journals[path] = _Journal(parsed[0])
                if st.st_size > state.cursor.end:  # only the bytes added since the last read
                    # Opened beneath the folder: journals/ swapped for a link since the listing is refused.
                    records, bad = read_new(Path(layout.JOURNALS, entry.name), state.cursor, beneath=self.root)
                    if bad:
                        self._warn(path, f"{bad} unreadable journal line(s)")
                    for rec in records:
                        state.records[rec["table"]].append(rec)
            except FileNotFoundError:
                continue  # compacted while we looked
            except UnsafeFileError as exc:  # became a link or a FIFO since the listing
                self._warn(path, exc.reason)
                continue
        for gone in set(self._journals) - listed:
            del self._journals[gone]

    def snapshot(self, previous: Mapping[str, tuple[Any, ...]], tables: Collection[str]) -> Snapshot:
        """Those of *tables* whose files or journal records differ from *previous* signatures."""
        self._read_journals(samples=SAMPLES.name in tables)
        snap = Snapshot({}, {}, {})
        for name in TABLES:
            if name not in tables:
                continue
            found, replaced = self._table_files(name)
            names = {f.name for f in found}
            # A journal whose Parquet twin exists is being removed: don't count it twice.
            journals = [
                state
                for state in self._journals.values()
                if name in state.records and store.session_file_name(state.writer_id) not in names
            ]
            files = sorted(str(f) for f in found if f.name not in replaced)
            # A file's time and size are part of it: one replaced under its name is read again.
            versions = tuple((f, self._footers[f][:2]) for f in files)
            signature = (versions, tuple((j.writer_id, len(j.records[name])) for j in journals))
            if previous.get(name) == signature:
                continue
            records: list[dict[str, Any]] = []
            for state in journals:
                records.extend(state.records.get(name, ()))
            snap.parquet[name] = files
            snap.journal_tables[name] = store.records_to_arrow(name, records)
            snap.signatures[name] = signature
        return snap
