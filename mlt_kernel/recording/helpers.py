"""Helper processes a session runs off the kernel: looking back at a folder, adding notes to documents.

Reading an experiment loads DuckDB and pyarrow; the kernel never does, so the
work that needs to read runs as ``python -m mlt_kernel.…`` children, one at a
time and in order on one thread, never on a cell's path. ``doc=`` notes queued
meanwhile go to their documents together, in one helper per folder. What a
helper prints on stdout is said under the next cell, and so is a failure (one
line, also in the kernel log). When the session ends, what is queued gets
``CLOSE_WAIT_S`` to run; a note still waiting is added by the next session that
opens the folder (``append-notes --pending``).
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlt_kernel.core.children import python_command

#: How long after a folder is first used its earlier sessions are looked at:
#: that helper (pyarrow, DuckDB) would otherwise compete for the CPU with the
#: kernel's first replies.
LOOK_BACK_DELAY_S = 1.0
#: Longest a helper may run.
HELPER_TIMEOUT_S = 120.0
#: How long the end of a session waits for the helpers still queued: short, because
#: Jupyter gives a kernel a few seconds to shut down (what is left, the next session does).
CLOSE_WAIT_S = 1.5

_DOCUMENTS = "mlt_kernel.tracking.documents"


@dataclass
class _Task:
    what: str  #: for the log: "looking at earlier sessions in …"
    argv: list[str] = field(default_factory=list)
    delay: float = 0.0  #: wait this long first (skipped when the session closes)
    notes: Path | None = None  #: the folder whose queued doc= notes this task adds


class Helpers:
    """Runs helper processes one after another on a daemon thread."""

    def __init__(self, log: logging.Logger, say: Callable[[str], None]) -> None:
        self.log = log
        self.say = say
        self._tasks: queue.Queue[_Task | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._notes: dict[Path, list[tuple[str, str]]] = {}  #: folder -> (title, note_id) not yet handed on

    def look_back(self, exp: Path, session_id: str) -> None:
        """Recover sessions of *exp* that died without compaction, say how the last one died, and add
        the ``doc=`` notes an earlier session left unattached."""
        argv = python_command("mlt_kernel.read.lookback", str(exp), session_id)
        self._submit(_Task(f"looking at earlier sessions in {exp}", argv, LOOK_BACK_DELAY_S))
        pending = python_command(_DOCUMENTS, "append-notes", "--pending", str(exp))
        self._submit(_Task(f"adding earlier notes of {exp} to their documents", pending))

    def add_to_document(self, exp: Path, title: str, note_id: str) -> None:
        """Append note *note_id* to document *title* of *exp* once (created if needed)."""
        with self._lock:
            queued = self._notes.setdefault(exp, [])
            queued.append((title, note_id))
            if len(queued) > 1:
                return  # a task for this folder is waiting and takes this note too
        self._submit(_Task(f"adding notes to documents of {exp}", notes=exp))

    def _submit(self, task: _Task) -> None:
        with self._lock:
            if self._closing.is_set():
                return
            self._tasks.put(task)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="mlt-helpers", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                if task.delay and self._closing.wait(task.delay):
                    continue  # the session ended first: the next one looks
                if task.notes is not None:
                    with self._lock:
                        pairs = self._notes.pop(task.notes, [])
                    task.argv = python_command(
                        _DOCUMENTS, "append-notes", str(task.notes), "--", *(x for pair in pairs for x in pair)
                    )
                self._run(task)
            except Exception:  # one task's failure must not stop the ones after it
                self.log.exception("MLTrack: %s failed", task.what)
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
            for line in proc.stderr.strip().splitlines()[-3:]:
                if line.startswith("MLTrack:"):
                    self.say(line)
        if proc.stdout.strip():
            self.say(proc.stdout.strip())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every helper queued so far has run; whether they all did within *timeout*."""
        done = self._tasks.all_tasks_done
        with done:
            return done.wait_for(lambda: not self._tasks.unfinished_tasks, timeout)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Run what is queued (skipping delayed look-backs) for up to *timeout*, then stop; whether all ran."""
        with self._lock:
            self._closing.set()
            thread = self._thread
            if thread is None or not thread.is_alive():
                return not any(self._notes.values())
            self._tasks.put(None)
        thread.join(timeout)
        return not thread.is_alive()


__all__ = ["CLOSE_WAIT_S", "LOOK_BACK_DELAY_S", "Helpers"]
