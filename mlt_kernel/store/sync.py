"""A spool's uploads to its bucket: sealed Parquet parts, plots, predictions.

``python -m mlt_kernel.store.sync SPOOL --pid KERNEL`` runs beside a kernel that
records into an ``s3://`` experiment (``core.locations``). Every
``SYNC_INTERVAL_S`` it *seals* what the journals gained since the last pass —
the new whole lines of each journal become one Parquet part per table, named
``tables/{table}/s-{writer}-{role}-{seq}.v1.parquet`` — and uploads the parts
create-only, then the plots and predictions files not uploaded yet. A part is
written to ``.sync/outbox`` before the journal offsets move, and leaves the
outbox only once the bucket has it, so a crash or a failed upload loses nothing
and never uploads a row twice (a retried name is refused as taken, which is
success). A failing bucket is retried with back-off (up to ``MAX_BACKOFF_S``)
and said in ``.sync/problem``, which the kernel shows once under a cell.

It ends a while after the kernel: ``SIGUSR1`` (the kernel's end) or the
kernel's death starts a last round, which also waits for the watcher to write
how the kernel died; a spool left with something to upload (the bucket was down,
the machine died) is uploaded by the next session on this machine that records
into the same URL. One sync per spool at a time (a lock file); journals whose
every line is in the bucket, and whose writer has ended, leave the spool.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.locations import Remote, remote_of
from mlt_kernel.core.schema import SCHEMA_VERSION, TABLES
from mlt_kernel.store.journal import parse_journal_name, read_lines

log = logging.getLogger("mlt_kernel.store.sync")

#: Seconds between passes while the kernel runs: what teammates see is at most this old (plus a pass).
SYNC_INTERVAL_S = 10.0
#: Longest wait between attempts when the bucket fails.
MAX_BACKOFF_S = 300.0
#: After the kernel ended, how long the last round waits for the watcher's last lines.
SETTLE_S = 3.0
#: After the kernel ended, how long a sync goes on trying a failing bucket before it leaves the rest
#: to the next session.
GIVE_UP_AFTER_S = 600.0
#: A journal untouched this long, with every line uploaded, belongs to a writer that has ended.
IDLE_JOURNAL_S = 120.0

SYNC = ".sync"
STATE = "state.json"
OUTBOX = "outbox"
PROBLEM = "problem"
#: Folders of the experiment whose files are uploaded as they are.
FILE_FOLDERS = (layout.PLOTS, layout.PREDICTIONS)


# -- state ----------------------------------------------------------------------------------


def _state_path(spool: Path) -> Path:
    return spool / SYNC / STATE


def load_state(spool: Path) -> dict[str, Any]:
    try:
        state = json.loads(_state_path(spool).read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    state.setdefault("journals", {})
    state.setdefault("files", {})
    return state


def save_state(spool: Path, state: dict[str, Any]) -> None:
    path = _state_path(spool)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


# -- sealing ----------------------------------------------------------------------------------


def part_name(writer: str, role: str, seq: int) -> str:
    return f"s-{writer}-{role}-{seq:06d}.v{SCHEMA_VERSION}.parquet"


def seal(spool: Path, state: dict[str, Any]) -> int:
    """Turn what each journal gained into parts in the outbox; returns how many parts."""
    from mlt_kernel.store import parquet as store

    folder = spool / layout.JOURNALS
    try:
        safeio.check_folder(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return 0
    outbox = spool / SYNC / OUTBOX
    made = 0
    for entry in entries:
        parsed = parse_journal_name(entry.name)
        if parsed is None or parsed[2] != SCHEMA_VERSION or not entry.is_file(follow_symlinks=False):
            continue
        writer, role, _ = parsed
        mark = state["journals"].setdefault(entry.name, {"offset": 0, "seq": 0})
        records, offset, bad = read_lines(Path(layout.JOURNALS) / entry.name, int(mark["offset"]), beneath=spool)
        if offset <= mark["offset"]:
            continue
        if bad:
            log.warning("%s: skipped %d unreadable journal line(s)", entry.path, bad)
        by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in records:
            if rec.get("table") in TABLES:
                by_table[rec["table"]].append(rec)
        for table, rows in by_table.items():
            target = outbox / layout.TABLES / table / part_name(writer, role, int(mark["seq"]))
            store.write_parquet_atomic(store.records_to_arrow(table, rows), target)
            made += 1
        mark["offset"], mark["seq"] = offset, int(mark["seq"]) + 1
        mark["sealed_at"] = time.time()
        save_state(spool, state)  # only now: the same lines are sealed again, under the same names, after a crash
    return made


# -- uploading --------------------------------------------------------------------------------


def _outbox_files(spool: Path) -> list[tuple[str, Path]]:
    outbox = spool / SYNC / OUTBOX
    out: list[tuple[str, Path]] = []
    try:  # never through a link: the outbox's files are uploaded, then removed
        safeio.check_folder(spool / SYNC)
        safeio.check_folder(outbox)
    except OSError:
        return out
    for path in sorted(outbox.rglob("*.parquet")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            out.append((path.relative_to(outbox).as_posix(), path))
    return out


def _new_files(spool: Path, state: dict[str, Any]) -> list[tuple[str, Path, list[int]]]:
    """Plots and predictions files not uploaded as they are now."""
    out = []
    for sub in FILE_FOLDERS:
        folder = spool / sub
        try:
            safeio.check_folder(folder)
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            rel = f"{sub}/{entry.name}"
            signature = [st.st_size, st.st_mtime_ns]
            if state["files"].get(rel) != signature:
                out.append((rel, Path(entry.path), signature))
    return out


def upload(spool: Path, bucket: Any, state: dict[str, Any]) -> int:
    """Upload the outbox's parts and the new plots and predictions; returns how many objects."""
    sent = 0
    marker = spool / layout.MARKER
    if not state.get("marker") and marker.is_file() and not marker.is_symlink():
        bucket.put(layout.MARKER, marker.read_bytes())  # False when a teammate's came first: fine
        state["marker"] = True
    for rel, path in _outbox_files(spool):
        bucket.put(rel, path)  # taken already = uploaded by an earlier attempt
        path.unlink()
        sent += 1
    for rel, path, signature in _new_files(spool, state):
        # A plot saved again under its name replaces the object: the newest is the plot.
        bucket.put(rel, path, create_only=rel.startswith(layout.PREDICTIONS))
        state["files"][rel] = signature
        save_state(spool, state)
        sent += 1
    save_state(spool, state)
    return sent


def sync_once(spool: Path, bucket: Any) -> int:
    """Seal and upload; returns the objects sent. Raises ``OSError`` when the bucket fails."""
    state = load_state(spool)
    seal(spool, state)
    return upload(spool, bucket, state)


def pending(spool: Path) -> bool:
    """Whether the spool holds something the bucket has not got."""
    state = load_state(spool)
    if _outbox_files(spool) or _new_files(spool, state):
        return True
    folder = spool / layout.JOURNALS
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            mark = state["journals"].get(entry.name, {"offset": 0})
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size > int(mark["offset"]):
                return True
    return False


def prune(spool: Path) -> int:
    """Remove journals whose every line is in the bucket and whose writer has ended (idle a while)."""
    state = load_state(spool)
    removed = 0
    now = time.time()
    folder = spool / layout.JOURNALS
    with contextlib.suppress(OSError):
        for entry in list(os.scandir(folder)):
            mark = state["journals"].get(entry.name)
            if mark is None or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if st.st_size == int(mark["offset"]) and now - st.st_mtime > IDLE_JOURNAL_S and safeio.is_owned(st):
                os.unlink(entry.path)
                del state["journals"][entry.name]
                removed += 1
    if removed:
        save_state(spool, state)
    return removed


# -- the process -----------------------------------------------------------------------------


def _say(spool: Path, problem: str | None) -> None:
    path = spool / SYNC / PROBLEM
    if problem is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(problem[:500])


def problem(spool: Path) -> str | None:
    """What the sync says is wrong with the bucket, if anything."""
    with contextlib.suppress(OSError):
        return (spool / SYNC / PROBLEM).read_text().strip() or None
    return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class _Lock:
    """One sync per spool: an exclusive ``flock`` on ``.sync/lock``, held while the process lives."""

    def __init__(self, spool: Path) -> None:
        (spool / SYNC).mkdir(parents=True, exist_ok=True)
        self._fd = os.open(spool / SYNC / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def take(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True


def run(spool: Path, remote: Remote, pid: int | None, interval: float = SYNC_INTERVAL_S) -> int:
    """Sync *spool* until its kernel has ended and everything is uploaded (or the bucket stays down)."""
    from mlt_kernel.store.objects import Bucket

    lock = _Lock(spool)
    final = {"asked": False}
    signal.signal(signal.SIGUSR1, lambda *_: final.update(asked=True))
    signal.signal(signal.SIGTERM, lambda *_: final.update(asked=True))
    while not lock.take():  # another session's sync has the spool: it uploads our lines too
        if not _alive(pid) and not final["asked"]:
            return 0
        time.sleep(interval)
    bucket = Bucket(remote)
    backoff = interval
    ended_at: float | None = None
    while True:
        done = not _alive(pid) or final["asked"]
        if done and ended_at is None:
            ended_at = time.monotonic()
            time.sleep(SETTLE_S)  # the watcher writes how the kernel died, and its last samples
        try:
            sync_once(spool, bucket)
        except Exception as exc:  # noqa: BLE001 - any failure of the bucket: retried, the spool keeps it all
            _say(spool, f"cannot upload to {remote.url}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            log.warning("sync of %s failed: %s", spool, exc)
            if ended_at is not None and time.monotonic() - ended_at > GIVE_UP_AFTER_S:
                return 1  # the next session recording into this URL uploads the rest
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        _say(spool, None)
        backoff = interval
        if ended_at is not None and not _alive(pid) and not pending(spool):
            prune(spool)
            return 0
        slept = 0.0
        while slept < interval and not (final["asked"] and ended_at is None):
            time.sleep(0.2)
            slept += 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlt_kernel.store.sync", description=__doc__.splitlines()[0])
    parser.add_argument("spool", type=Path)
    parser.add_argument("--pid", type=int, default=None, help="the kernel whose records these are")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help=f"seconds between passes (MLT_SYNC_INTERVAL_S, {SYNC_INTERVAL_S:g})",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="mlt-sync: %(message)s")
    remote = remote_of(args.spool)
    if remote is None:
        print(f"mlt-sync: {args.spool} is not the spool of an s3:// experiment", file=sys.stderr)
        return 2
    if args.once:
        from mlt_kernel.store.objects import Bucket

        sync_once(args.spool, Bucket(remote))
        return 0
    interval = args.interval
    if interval is None:
        try:
            interval = float(os.environ.get("MLT_SYNC_INTERVAL_S", SYNC_INTERVAL_S))
        except ValueError:
            interval = SYNC_INTERVAL_S
    return run(args.spool, remote, args.pid, max(interval, 0.2))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SYNC_INTERVAL_S", "load_state", "part_name", "pending", "problem", "prune", "run", "seal", "sync_once"]
