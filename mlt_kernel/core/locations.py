"""Experiments on S3-compatible object storage: ``s3://bucket/prefix`` and the local folders behind one.

A writer never writes into the bucket directly: its kernel journals into a
*spool*, a local experiment folder under the user's data folder (one per URL,
``$XDG_DATA_HOME/mlt-kernel/spool/…``, marked by ``remote.json``), and a sync
process uploads sealed Parquet parts from it. A reader keeps a *cache*, a local
mirror of the bucket's immutable parts (``$XDG_CACHE_HOME/mlt-kernel/s3/…``),
and queries that. Nothing here talks to the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Name of the file that marks a spool and says which URL it belongs to.
REMOTE_MARKER = "remote.json"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Remote:
    """An experiment's URL on object storage."""

    url: str  #: normalised: ``s3://bucket/prefix`` (no trailing slash)
    bucket: str
    prefix: str  #: ``""`` or ``a/b`` (no leading or trailing slash)

    def key(self, relative: str) -> str:
        """The object key of a path relative to the experiment."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    @property
    def tag(self) -> str:
        """A folder name for this URL: readable, and unique by a hash of the whole URL."""
        tail = re.sub(r"[^A-Za-z0-9._-]+", "_", (self.prefix.rsplit("/", 1)[-1] or self.bucket))[:40]
        return f"{self.bucket}-{tail}-{hashlib.sha1(self.url.encode()).hexdigest()[:10]}"


def is_remote(path: Any) -> bool:
    """Whether *path* is an ``s3://`` URL (any case of the scheme)."""
    return isinstance(path, str) and path.strip()[:5].lower() == "s3://"


def parse_remote(url: str) -> Remote:
    """``s3://bucket/prefix`` as a :class:`Remote`; ``ValueError`` (one line) for anything else."""
    text = url.strip()
    if not is_remote(text):
        raise ValueError(f"{url!r} is not an s3:// URL")
    rest = text[5:]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"{url!r}: {bucket!r} is not a bucket name (3-63 of a-z, 0-9, '.', '-')")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or any(ord(c) < 32 for c in prefix):
        raise ValueError(f"{url!r}: the prefix may not contain '.', '..' or control characters")
    prefix = "/".join(parts)
    return Remote(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}", bucket, prefix)


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"))


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def spool_root() -> Path:
    return _data_home() / "mlt-kernel" / "spool"


def spool_dir(remote: Remote) -> Path:
    """The local folder a writer's kernel records into for *remote*."""
    return spool_root() / remote.tag


def cache_root() -> Path:
    return _cache_home() / "mlt-kernel" / "s3"


def cache_dir(remote: Remote) -> Path:
    """The local mirror a reader queries for *remote*."""
    return cache_root() / remote.tag


def mark_spool(folder: Path, remote: Remote) -> None:
    """Say in *folder* which URL it spools for (once)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / REMOTE_MARKER
    if not marker.exists():
        tmp = folder / f".{REMOTE_MARKER}.tmp"
        tmp.write_text(json.dumps({"url": remote.url}))
        os.replace(tmp, marker)


def remote_of(folder: str | os.PathLike[str]) -> Remote | None:
    """The URL a spool folder uploads to; None for an ordinary folder."""
    marker = Path(folder) / REMOTE_MARKER
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        if marker.is_file() and not marker.is_symlink() and marker.stat().st_size < 4096:
            return parse_remote(json.loads(marker.read_text())["url"])
    return None


__all__ = [
    "REMOTE_MARKER",
    "Remote",
    "cache_dir",
    "cache_root",
    "is_remote",
    "mark_spool",
    "parse_remote",
    "remote_of",
    "spool_dir",
    "spool_root",
]
