"""Whole-experiment operations on object storage: push, pull, and compaction.

``push(local, url)`` copies a local experiment's Parquet files, plots and
predictions to the bucket, create-only (a name already there is skipped, so
pushing again uploads only what is new); ``pull(url, local)`` fetches the
bucket's objects into a local folder. ``compact(url)`` merges small parts: it
takes a lock object (create-only, with an expiry, so a merger that died frees it
after ``LOCK_S``), merges in a local mirror with the same code and proofs as a
local compaction (each merged file names the parts it replaces, with their row
counts and writers), uploads the merged files create-only, and only then deletes
the parts they replace: a reader that lists in between sees both, and the
proofs hide the parts.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlt_kernel.core import layout
from mlt_kernel.core.locations import parse_remote
from mlt_kernel.core.schema import TABLES
from mlt_kernel.store.objects import Bucket, ObjectStoreError

#: Seconds a compaction lock is good for: a merger that died frees it after this.
LOCK_S = 900.0
LOCK = "_locks/compact.json"


@dataclass
class Counts:
    sent: int = 0
    skipped: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.skipped} there already, {self.removed} removed"


def _local_files(root: Path) -> list[str]:
    """Relative paths of the files a push copies: closed table files, plots, predictions, the marker."""
    marker = root / layout.MARKER
    out = [layout.MARKER] if marker.is_file() and not marker.is_symlink() else []
    for sub in (layout.TABLES, layout.PLOTS, layout.PREDICTIONS):
        folder = root / sub
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(root).as_posix()
            regular = path.is_file() and not path.is_symlink() and not path.name.startswith(".")
            if regular and (sub != layout.TABLES or rel.endswith(".parquet")):
                out.append(rel)
    return out


def push(local: str | os.PathLike[str], url: str, progress: Callable[[int], object] | None = None) -> Counts:
    """Copy a local experiment to *url*; idempotent. Live journals are not copied (compact first)."""
    root = Path(local)
    if not layout.is_experiment(root):
        raise FileNotFoundError(f"{root} is not an MLTrack experiment folder")
    bucket = Bucket(parse_remote(url))
    there = bucket.list()
    counts = Counts()
    for rel in _local_files(root):
        path = root / rel
        if rel in there and there[rel].size == path.stat().st_size:
            counts.skipped += 1
        elif bucket.put(rel, path):
            counts.sent += 1
        else:
            counts.skipped += 1
        if progress is not None:
            progress(1)
    return counts


def pull(url: str, local: str | os.PathLike[str]) -> Counts:
    """Fetch *url*'s objects into the folder *local* (an experiment folder afterwards)."""
    from mlt_kernel.store.mirror import Mirror

    mirror = Mirror(url, folder=Path(local))
    before = set(mirror.known())
    mirror.refresh()
    after = set(mirror.known())
    return Counts(sent=len(after - before), skipped=len(after & before))


def _lock(bucket: Bucket) -> None:
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "until": time.time() + LOCK_S}).encode()
    if bucket.put(LOCK, body):
        return
    try:
        held = json.loads(bucket.read(LOCK, limit=4096))
        until = min(float(held["until"]), time.time() + LOCK_S)  # a lock is never good for longer
    except (ObjectStoreError, ValueError, KeyError, TypeError, OverflowError):
        until = 0.0
    if until != until:  # NaN
        until = 0.0
    if until > time.time():
        raise ObjectStoreError(
            f"another compaction of {bucket.remote.url} holds its lock until "
            f"{time.strftime('%H:%M:%S', time.localtime(until))}"
        )
    bucket.delete(LOCK)  # expired: its merger died
    if not bucket.put(LOCK, body):
        raise ObjectStoreError(f"another compaction of {bucket.remote.url} took its lock just now")


def compact(url: str) -> Counts:
    """Merge the bucket's small parts (one merger at a time); see the module docs."""
    from mlt_kernel.store.compaction import merge_table
    from mlt_kernel.store.mirror import Mirror

    bucket = Bucket(parse_remote(url))
    _lock(bucket)
    counts = Counts()
    try:
        mirror = Mirror(url, bucket=bucket)
        mirror.refresh()
        for table in TABLES:
            folder = mirror.folder / layout.TABLES / table
            before = {p.name for p in folder.glob("*.parquet")} if folder.is_dir() else set()
            merge_table(mirror.folder, table, open_writers=set(), min_files=2)
            after = {p.name for p in folder.glob("*.parquet")} if folder.is_dir() else set()
            merged_inputs: set[str] = set()
            for name in sorted(after - before):  # the merged files: in the bucket before anything goes
                bucket.put(f"{layout.TABLES}/{table}/{name}", folder / name)
                counts.sent += 1
                merged_inputs |= _inputs(folder / name)
            # Only the parts this merge read and wrote out again leave the bucket: a claim in
            # someone else's file, which anyone with write access could forge, deletes nothing.
            for name in sorted((before - after) & merged_inputs):
                bucket.delete(f"{layout.TABLES}/{table}/{name}")
                counts.removed += 1
        mirror.refresh()
    finally:
        _unlock(bucket)
    return counts


def _inputs(merged: Path) -> set[str]:
    """The names of the parts a merged file written here holds (from its own metadata)."""
    import pyarrow.parquet as pq

    from mlt_kernel.store.parquet import REPLACES_KEY

    meta = pq.read_schema(merged).metadata or {}
    try:
        return {str(n) for n in json.loads(meta.get(REPLACES_KEY, b"[]"))}
    except ValueError:
        return set()


def _unlock(bucket: Bucket) -> None:
    """Remove the lock if it is still this process's (an expired one may have been taken since)."""
    try:
        held = json.loads(bucket.read(LOCK, limit=4096))
    except (ObjectStoreError, ValueError):
        return
    if isinstance(held, dict) and held.get("host") == socket.gethostname() and held.get("pid") == os.getpid():
        bucket.delete(LOCK)


__all__ = ["Counts", "compact", "pull", "push"]
