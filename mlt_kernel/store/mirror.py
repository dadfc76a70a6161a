"""A reader's local mirror of an ``s3://`` experiment: its immutable parts, fetched once.

``Mirror(url).refresh()`` lists the bucket (one LIST request a page), fetches
the parts, plots and predictions it has not got (a part never changes under its
name, so a fetched one is never fetched again; a plot saved again is fetched
again when its size or ETag changed) and removes what the bucket no longer has
(parts a merge replaced). The mirror is an ordinary experiment folder under
``$XDG_CACHE_HOME/mlt-kernel/s3/``: every reader — ``Experiment``, the
dashboard, the export — queries it at local-disk speed with the usual DuckDB
views, and what the bucket holds is as untrusted as a shared folder (keys
outside the layout, or that would climb out of the mirror, are skipped).

The cache is bounded: past ``MLT_S3_CACHE_BYTES`` (default 10 GiB), the mirrors
of other experiments are removed, least recently used first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout
from mlt_kernel.core.locations import Remote, cache_dir, cache_root, parse_remote
from mlt_kernel.core.schema import TABLES

log = logging.getLogger("mlt_kernel.store.mirror")

#: Objects fetched at once.
FETCH_THREADS = 8
#: Default bound of all mirrors together.
CACHE_BYTES = 10 * 1024**3
_INDEX = ".mirror.json"
_SUBDIRS = (layout.TABLES, layout.PLOTS, layout.PREDICTIONS)


#: Longest file name taken from a key (a temporary name is added to it while it downloads).
MAX_NAME_BYTES = 180
#: Largest object mirrored (``MLT_S3_MAX_OBJECT_BYTES``); a bigger one is skipped with a warning.
MAX_OBJECT_BYTES = 1024**3


def _safe(relative: str) -> bool:
    """A key of the layout: a file of tables/{known table}/, plots/ or predictions/, or the marker."""
    if relative == layout.MARKER:
        return True
    if any(ord(c) < 32 or ord(c) == 127 for c in relative):
        return False
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or len(p.encode()) > MAX_NAME_BYTES for p in parts):
        return False
    if parts[0] == layout.TABLES:
        return len(parts) == 3 and parts[1] in TABLES
    return parts[0] in (layout.PLOTS, layout.PREDICTIONS) and len(parts) == 2


def _max_object_bytes() -> int:
    try:
        return int(os.environ.get("MLT_S3_MAX_OBJECT_BYTES", MAX_OBJECT_BYTES))
    except ValueError:
        return MAX_OBJECT_BYTES


class Mirror:
    """The local copy of one ``s3://`` experiment."""

    def __init__(self, url: str, bucket: Any = None, folder: Path | None = None) -> None:
        self.remote: Remote = parse_remote(url)
        self.folder = folder if folder is not None else cache_dir(self.remote)
        self._bucket = bucket
        self._index: dict[str, list[Any]] = {}  #: relative path -> [size, etag]
        self._skipped: set[str] = set()  #: objects not mirrored, each said once
        self._load_index()

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            from mlt_kernel.store.objects import Bucket

            self._bucket = Bucket(self.remote)
        return self._bucket

    def _load_index(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            index = json.loads((self.folder / _INDEX).read_text())
            if isinstance(index, dict):
                self._index = {k: v for k, v in index.items() if isinstance(v, list) and _safe(k)}

    def _fetch(self, relative: str) -> str | None:
        """Download one object; what went wrong, or None."""
        try:
            self.bucket.download(relative, self.folder / relative)
        except (OSError, ValueError) as exc:
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None

    def known(self) -> list[str]:
        """The objects the mirror holds, by path relative to the experiment."""
        return list(self._index)

    def _save_index(self) -> None:
        tmp = self.folder / f"{_INDEX}.tmp"
        tmp.write_text(json.dumps(self._index))
        os.replace(tmp, self.folder / _INDEX)

    def refresh(self) -> bool:
        """Bring the mirror up to the bucket's listing; True when anything changed."""
        listed = self.bucket.list()
        limit = _max_object_bytes()
        wanted = {rel: [obj.size, obj.etag] for rel, obj in listed.items() if _safe(rel) and obj.size <= limit}
        for rel, obj in listed.items():
            if _safe(rel) and obj.size > limit and rel not in self._skipped:
                self._skipped.add(rel)
                log.warning(
                    "%s/%s: %d bytes, over MLT_S3_MAX_OBJECT_BYTES; not mirrored", self.remote.url, rel, obj.size
                )
        fetch = [rel for rel, sig in wanted.items() if self._index.get(rel) != sig]
        gone = [rel for rel in self._index if rel not in wanted]
        if not fetch and not gone and ((self.folder / layout.MARKER).exists() or not wanted):
            return False  # nothing new, or nothing at all: an empty prefix is no experiment
        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in _SUBDIRS:
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        if layout.MARKER not in wanted and not (self.folder / layout.MARKER).exists():
            layout.ensure_layout(self.folder)  # a bucket with parts but no marker yet
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            for rel, failure in zip(fetch, pool.map(self._fetch, fetch), strict=True):
                if failure is None:
                    self._index[rel] = wanted[rel]
                elif rel not in self._skipped:  # one bad object never stops the reader; said once
                    self._skipped.add(rel)
                    log.warning("%s/%s: not mirrored (%s)", self.remote.url, rel, failure)
        for rel in gone:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / rel).unlink()
            self._index.pop(rel, None)
        self._save_index()
        if self.folder.parent == cache_root():
            os.utime(self.folder)  # recently used: the last the bound removes
            _bound(keep=self.folder)
        return True


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _bound(keep: Path) -> None:
    """Remove other mirrors, least recently used first, while the cache is over its bound."""
    try:
        limit = int(os.environ.get("MLT_S3_CACHE_BYTES", CACHE_BYTES))
    except ValueError:
        limit = CACHE_BYTES
    root = cache_root()
    with contextlib.suppress(OSError):
        mirrors = sorted((p for p in root.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
        total = _size(root)
        for old in mirrors:
            if total <= limit:
                return
            size = _size(old)
            shutil.rmtree(old, ignore_errors=True)
            total -= size


def fresh(url: str, bucket: Any = None) -> Path:
    """The mirror of *url*, brought up to date now (for one-off readers: the CLI, the export)."""
    mirror = Mirror(url, bucket)
    mirror.refresh()
    return mirror.folder


__all__ = ["Mirror", "fresh"]
