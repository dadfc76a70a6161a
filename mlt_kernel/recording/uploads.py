"""The sync processes of a session's ``s3://`` experiments (``store.sync``), seen from the kernel.

The kernel only starts one per spool (when the folder is first used, after a
cell's reply), asks it for a last round when the session ends (``SIGUSR1``, not
waited for), and shows once under a cell what it says is wrong with the
bucket. The uploads themselves never touch the kernel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from mlt_kernel.core.children import python_command
from mlt_kernel.core.locations import remote_of
from mlt_kernel.store.sync import SYNC, problem

#: Seconds between looks at what the syncs say (a look is one failed ``open`` when all is well).
LOOK_EVERY_S = 5.0


class Uploads:
    """One sync process per spool the session records into."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._procs: dict[Path, subprocess.Popen[bytes]] = {}
        self._said: dict[Path, str | None] = {}
        self._looked = 0.0

    def start(self, spool: Path) -> None:
        if spool in self._procs:
            return
        try:
            (spool / SYNC).mkdir(parents=True, exist_ok=True)
            with open(spool / SYNC / "log", "ab") as out:
                self._procs[spool] = subprocess.Popen(
                    python_command("mlt_kernel.store.sync", str(spool), "--pid", str(os.getpid())),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # an interrupt of the kernel's group is not for it
                )
        except OSError as exc:
            self.log.error("MLTrack: could not start the upload of %s: %s", spool, exc)

    def problems(self) -> list[str]:
        """New one-line problems the syncs report (each said once, again after it was fixed)."""
        now = time.monotonic()
        if not self._procs or now - self._looked < LOOK_EVERY_S:
            return []
        self._looked = now
        lines = []
        for spool in self._procs:
            said = problem(spool)
            if said is not None and said != self._said.get(spool):
                remote = remote_of(spool)
                where = remote.url if remote is not None else str(spool)
                lines.append(f"MLTrack: {said}; the records of {where} are kept in {spool} and uploaded when it can.")
            self._said[spool] = said
        return lines

    def close(self) -> None:
        """Ask each sync for its last round; they end on their own once the kernel has."""
        for proc in self._procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGUSR1)


__all__ = ["Uploads"]
