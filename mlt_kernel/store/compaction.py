"""Compaction: journals become Parquet, and many small Parquet files become few.

Two steps, both safe to interrupt at any point and safe while kernels write and
readers read:

1. ``compact_writer``: a finished writer's journals → one ``s-`` file per table.
2. ``merge_table``: closed ``s-`` files (and small ``m-`` files) → ``m-`` files of
   up to ``TARGET_ROWS`` rows, sorted by time. A merged file names the files it
   replaces in its metadata, with their row counts; readers ignore those from
   the moment it exists, and the replaced files are removed only after it is
   durable. One merger per table at a time (an ``O_EXCL`` lock file, taken over
   when stale).

In a shared folder a merge takes only the files of its own user, and removes
only those: a teammate's files are merged, and removed, by that teammate's
compaction. A file is removed only because a merged file proves it replaces it
(``store.proven_replacements``), never on a claim alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.schema import SCHEMA_VERSION, TABLES
from mlt_kernel.store import parquet as store
from mlt_kernel.store.journal import parse_journal_name

TARGET_ROWS = 4_000_000
LOCK_STALE_S = 3600.0
#: When a session ends, merge only once this many small files piled up: merging
#: at every session end would rewrite a growing file each time.
SESSION_END_MIN_FILES = 16


@dataclass
class Report:
    folders: int = 0
    journals: int = 0
    records: int = 0
    merged_files: int = 0
    written_files: int = 0

    def __str__(self) -> str:
        return (
            f"compacted {self.folders} experiment folder(s): {self.records} journal record(s) "
            f"from {self.journals} closed writer(s); merged {self.merged_files} file(s) into "
            f"{self.written_files}"
        )


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock file in *folder*; yields False when another merger holds it.

    A lock older than ``LOCK_STALE_S`` (its merger died) is taken over by
    renaming it first: of two processes that both find it stale, only one
    rename succeeds.
    """
    path = folder / ".merge.lock"
    try:
        if time.time() - path.stat().st_mtime > LOCK_STALE_S:
            aside = path.with_name(f".merge.lock.stale-{os.getpid()}")
            os.rename(path, aside)
            aside.unlink()
    except FileNotFoundError:
        pass  # no lock, or another process took the stale one over first
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        yield False
        return
    try:
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
        os.close(fd)
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _open_writers(exp: Path) -> set[str]:
    folder = exp / layout.JOURNALS
    if not folder.is_dir():
        return set()
    return {p[0] for p in map(parse_journal_name, os.listdir(folder)) if p is not None}


def _candidates(folder: Path, open_writers: set[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """This user's files worth merging, with their row counts, and leftovers a merged file proves it replaced."""
    listed: dict[str, store.Listed] = {}
    mine: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        parsed = store.parse_table_file_name(entry.name)
        if parsed is None or parsed[2] != SCHEMA_VERSION:
            continue  # foreign, other versions: never touched
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue  # a link or a folder: never read, never touched
            footer = store.read_footer(Path(entry.path))
        except FileNotFoundError:
            continue  # removed while we looked
        if isinstance(footer, str):
            continue  # damaged: never touched
        listed[entry.name] = store.Listed(footer, st.st_uid)
        if not safeio.is_owned(st):
            continue  # a teammate's: theirs to merge and to remove
        if parsed[0] == "s" and parsed[1] in open_writers:
            continue  # its journal still exists: the reader may count it
        mine.append(Path(entry.path))
    replaced, _ = store.proven_replacements(listed)
    leftovers = [p.name for p in mine if p.name in replaced]
    return [(p, listed[p.name].footer.rows) for p in mine if p.name not in replaced], leftovers


def merge_table(exp: Path, table: str, open_writers: set[str] | None = None, min_files: int = 2) -> tuple[int, int]:
    """Merge the closed files of *table* when at least *min_files* are small enough.

    Returns ``(files merged, files written)``.
    """
    folder = exp / layout.TABLES / table
    try:
        safeio.check_folder(folder)
        if _named_files(folder) < min_files:
            return 0, 0  # too few, whatever their footers say: none is read
    except OSError:
        return 0, 0  # none yet, or a link: never merged through
    with _lock(folder) as held:
        if not held:
            return 0, 0
        files, leftovers = _candidates(folder, _open_writers(exp) if open_writers is None else open_writers)
        for name in leftovers:  # a merge interrupted after its file was durable
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        merged = written = 0
        groups = list(_groups(files))
        if sum(len(g) for g in groups) < min_files:
            return 0, 0
        for group in groups:
            if len(group) < 2:
                continue
            store.write_table_file(exp, table, [(p.name, store.read_table(p)) for p in group])
            for path in group:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            merged += len(group)
            written += 1
        return merged, written


def _named_files(folder: Path) -> int:
    """How many files of *folder* are named like table files of this schema (a listing, no footer)."""
    named = 0
    for name in os.listdir(folder):
        parsed = store.parse_table_file_name(name)
        named += parsed is not None and parsed[2] == SCHEMA_VERSION
    return named


def _groups(files: list[tuple[Path, int]]) -> Iterator[list[Path]]:
    group: list[Path] = []
    rows = 0
    for path, n in files:
        if n >= TARGET_ROWS // 2:
            continue  # big enough already
        if group and rows + n > TARGET_ROWS:
            yield group
            group, rows = [], 0
        group.append(path)
        rows += n
    if group:
        yield group


def compact_experiment(
    exp: Path, writer: str | None = None, report: Report | None = None, progress: Callable[[int], object] | None = None
) -> Report:
    """Compact one experiment: *writer*'s journals (or every dead writer's), then merge.

    *progress*, when given, is called once per table merged (a progress bar's ``update``).
    """
    report = report or Report()
    report.folders += 1
    if writer is not None:
        report.records += store.compact_writer(exp, writer)
        report.journals += 1
    else:
        from mlt_kernel.store.recovery import recover

        report.journals += len(recover(exp, own=""))
    open_writers = _open_writers(exp)
    min_files = SESSION_END_MIN_FILES if writer is not None else 2
    for table in TABLES:
        merged, written = merge_table(exp, table, open_writers, min_files)
        report.merged_files += merged
        report.written_files += written
        if progress is not None:
            progress(1)
    return report


def compact_folder(path: str | os.PathLike[str], *, progress: bool = False) -> Report:
    """``mlt-kernel compact PATH``: every experiment in *path*, with a progress bar when asked."""
    experiments = layout.find_experiments(path)
    if not experiments:
        raise FileNotFoundError(f"no MLTrack experiment folder at {path}")
    report = Report()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(experiments) * len(TABLES), desc="compacting", unit="table", leave=False)
    try:
        for exp in experiments:
            compact_experiment(exp, report=report, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlt_kernel.store.compaction")
    parser.add_argument("--writer", required=True, help="the session whose journals to compact")
    parser.add_argument("folders", nargs="+")
    args = parser.parse_args(argv)
    failed = 0
    for folder in args.folders:
        try:
            compact_experiment(Path(folder), writer=args.writer)
        except Exception as exc:  # noqa: BLE001 - one folder's failure must not stop the others
            print(f"{folder}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
