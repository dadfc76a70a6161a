"""Where a session's records go: one journal per experiment folder it touched.

The folder is chosen when the first record is written — never before the first
cell ends — and may change when the notebook assigns ``EXP_PATH``. A folder
that cannot be written is replaced by a fallback folder, named once in the
cell's output; the records are kept there.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout
from mlt_kernel.core.children import python_command
from mlt_kernel.core.locations import remote_of
from mlt_kernel.core.schema import SESSIONS
from mlt_kernel.store.journal import JournalWriter, journal_name

SessionRecord = Callable[..., dict[str, Any]]

#: Seconds a shutting-down kernel waits for its compaction before leaving it running.
COMPACTION_WAIT_S = 3.0


def fallback_root() -> Path:
    """``$XDG_DATA_HOME/mlt-kernel/fallback`` (``~/.local/share/…``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mlt-kernel" / "fallback"


def private_temp_root() -> Path | None:
    """``$TMPDIR/mlt-fallback-{uid}``, created 0700; None when it is not safely ours.

    Anyone can create a name in ``/tmp`` first: a folder there that is a link,
    belongs to another user, or that others may write into would let them read
    or replace our records, so it is refused rather than used.
    """
    path = Path(tempfile.gettempdir()) / f"mlt-fallback-{os.getuid()}"
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None  # someone else's, or others could have put files into it
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)  # ours, made readable by others earlier (sticky /tmp: nobody swapped it)
    except OSError:
        return None
    return path


def _fallback_candidates(wanted: Path) -> Iterator[Path]:
    """Where records go when *wanted* cannot be written: under the home folder, else a private temp folder."""
    tag = f"{wanted.name or 'experiment'}-{hashlib.sha1(str(wanted).encode()).hexdigest()[:8]}"
    yield fallback_root() / tag
    temp = private_temp_root()  # made only when the home folder failed too
    if temp is not None:
        yield temp / tag


class Destinations:
    """The session's journal writers, one per experiment folder."""

    def __init__(self, session_id: str, session_record: SessionRecord, log: logging.Logger) -> None:
        self.session_id = session_id
        self._session_record = session_record
        self.log = log
        self.writers: dict[Path, JournalWriter] = {}
        self.current: Path | None = None
        self._wanted: Path | None = None
        self._redirect: dict[Path, Path] = {}
        #: Called with the folder and whether it is new to the session, whenever
        #: the current folder changes.
        self.on_select: Callable[[Path, bool], None] | None = None

    def select(self, wanted: Path) -> Path:
        """Make *wanted* (or its fallback) the current folder; returns the folder used."""
        if wanted == self._wanted and self.current is not None:
            return self.current
        known = set(self.writers)
        folder = self._redirect.get(wanted) or self._open(wanted)
        self._wanted = wanted
        previous, self.current = self.current, folder
        # Told only now that `current` is set: the watcher's start-up thread reads it.
        if folder != previous and self.on_select is not None:
            self.on_select(folder, folder not in known)
        return folder

    def _open(self, wanted: Path) -> Path:
        for folder in itertools.chain([wanted], _fallback_candidates(wanted)):
            if folder in self.writers:
                return folder
            try:
                root = layout.ensure_layout(folder)
                writer = JournalWriter(root / layout.JOURNALS / journal_name(self.session_id, "kernel"))
                writer.write(SESSIONS.name, self._session_record(root))
            except OSError as exc:
                if folder == wanted:
                    problem = f"{exc.strerror or exc} ({folder})"
                continue
            self.writers[root] = writer
            if root != wanted:
                self._redirect[wanted] = root
                print(
                    f"MLTrack: cannot write the experiment folder: {problem}; recording to {root} instead.",
                    file=sys.stderr,
                )
            return root
        raise OSError(f"MLTrack: no writable experiment folder for {wanted}")

    def write(self, table: str, record: dict[str, Any], *, also: Collection[Path] = ()) -> set[Path]:
        """Write *record* to the current folder (and to the folders in *also*); returns them."""
        if self.current is None:
            raise RuntimeError("no experiment folder selected")
        if not also or (len(also) == 1 and self.current in also):  # every cell: no set of paths to build
            self.writers[self.current].write(table, record)
            return {self.current}
        targets = {self.current, *also}
        for folder in targets:
            self.writers[folder].write(table, record)
        return targets

    def close(self, ended_at: int) -> None:
        """Write the session's end everywhere, close the journals and compact them."""
        for root, writer in self.writers.items():
            with contextlib.suppress(OSError):
                writer.write(SESSIONS.name, self._session_record(root, "ended", ended_at=ended_at))
            writer.close()
        # A spool's journals go to its bucket (store.sync, told by the recorder): never compacted here.
        folders = [str(root) for root in self.writers if remote_of(root) is None]
        if not folders:
            return
        try:
            proc = subprocess.Popen(
                python_command("mlt_kernel.store.compaction", "--writer", self.session_id, *folders),
                # Its own session: the interrupt or kill of the kernel's group must not stop it.
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            self.log.error("MLTrack: could not compact %s (%s); readers use the journals", folders, exc)
            return
        try:
            # Shutdown waits a moment, not for a long session's compaction: that
            # goes on in the background (Jupyter kills a kernel slow to exit).
            _, err = proc.communicate(timeout=COMPACTION_WAIT_S)
        except subprocess.TimeoutExpired:
            return
        if proc.returncode != 0:
            self.log.error("MLTrack: compaction failed; readers use the journals: %s", err.strip())
