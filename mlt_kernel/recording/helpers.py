"""Helper processes a session runs off the kernel: looking back at a folder, adding notes to documents.

Reading an experiment loads DuckDB and pyarrow; the kernel never does, so the
work that needs to read runs as ``python -m mlt_kernel.…`` children, one at a
time and in order on one thread, never on a cell's path. What a helper prints
on stdout is said under the next cell; a failure is one line in the kernel log.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlt_kernel.core.children import python_command

#: How long after a folder is first used its earlier sessions are looked at:
#: that helper (pyarrow, DuckDB) would otherwise compete for the CPU with the
#: kernel's first replies.
LOOK_BACK_DELAY_S = 1.0
#: Longest a helper may run.
HELPER_TIMEOUT_S = 120.0
#: How long the end of a session waits for the helpers still queued.
CLOSE_WAIT_S = 30.0


@dataclass(frozen=True)
class _Task:
    what: str  #: for the log: "looking at earlier sessions in …"
    argv: list[str]
    delay: float = 0.0  #: wait this long first (skipped when the session closes)


class Helpers:
    """Runs helper processes one after another on a daemon thread."""

    def __init__(self, log: logging.Logger, say: Callable[[str], None]) -> None:
        self.log = log
        self.say = say
        self._tasks: queue.Queue[_Task | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def look_back(self, exp: Path, session_id: str) -> None:
        """Recover sessions of *exp* that died without compaction; say how the last one died."""
        argv = python_command("mlt_kernel.read.lookback", str(exp), session_id)
        self._submit(_Task(f"looking at earlier sessions in {exp}", argv, LOOK_BACK_DELAY_S))

    def add_to_document(self, exp: Path, title: str, note_id: str) -> None:
        """Append note *note_id* to document *title* of *exp* once (created if needed)."""
        argv = python_command("mlt_kernel.tracking.documents", "append-note", str(exp), title, note_id)
        self._submit(_Task(f"adding note {note_id} to document {title!r}", argv))

    def _submit(self, task: _Task) -> None:
        with self._lock:
            if self._closing.is_set():
                return
            self._tasks.put(task)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="mlt-helpers", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                if task.delay and self._closing.wait(task.delay):
                    continue  # the session ended first: the next one looks
                self._run(task)
            finally:
                self._tasks.task_done()
        self._tasks.task_done()

    def _run(self, task: _Task) -> None:
        try:
            proc = subprocess.run(
                task.argv,
                capture_output=True,
                text=True,
                timeout=HELPER_TIMEOUT_S,
                check=False,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError):
            self.log.exception("MLTrack: %s failed", task.what)
            return
        if proc.returncode != 0:
            self.log.error("MLTrack: %s failed: %s", task.what, proc.stderr.strip())
        if proc.stdout.strip():
            self.say(proc.stdout.strip())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every helper queued so far has run; whether they all did within *timeout*."""
        done = self._tasks.all_tasks_done
        with done:
            return done.wait_for(lambda: not self._tasks.unfinished_tasks, timeout)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Run what is queued (skipping delayed look-backs), then stop; whether all ran in *timeout*."""
        with self._lock:
            self._closing.set()
            thread = self._thread
            if thread is None:
                return True
            self._tasks.put(None)
        thread.join(timeout)
        return not thread.is_alive()


__all__ = ["CLOSE_WAIT_S", "LOOK_BACK_DELAY_S", "Helpers"]
