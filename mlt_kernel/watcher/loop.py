"""The resource watcher: a process beside the kernel that keeps its timeline and notes its death.

```text
python -m mlt_kernel.watcher --pid KERNEL_PID --session SESSION_ID [--busy-interval 0.05] [--idle-interval 1.0]
```

The kernel starts it with ``WatcherHandle.start`` (``mlt_kernel.watcher.handle``)
and tells it, one short line at a time over the watcher's stdin, where the
experiment folder is and when cells start and end (``mlt_kernel.watcher.protocol``).

What the watcher does:

- It samples the kernel and all its descendants (joblib/loky, DataLoader
  workers…; not itself nor MLTrack's other helper processes) every ``busy_interval`` while a cell runs and every
  ``idle_interval`` otherwise: resident memory, CPU % (100 = one core) from clock-tick deltas, GPU
  memory of those processes and device utilisation (NVML). Each sample is one
  ``samples`` record in a journal of its own, ``{EXP}/journals/{session}.samples.v1.jsonl``
  (a reader that wants no timeline never reads them), written ``SAMPLE_BATCH``
  at a time (one ``os.write``) while a cell runs and at once between cells, and
  before any other record; when a cell ends, a ``cell_usage`` record in
  ``{session}.watcher.v1.jsonl`` carries the cell's peaks.
- One sample reads ``/proc/PID/stat`` of every known process (one ``pread``
  each); the set of descendants is looked up again at most every
  ``CHILD_SCAN_INTERVAL`` seconds and at a cell's first sample, because
  finding descendants costs more than reading them.
- Nothing is done on the kernel's reply path: a cell's first sample comes
  ``busy_interval`` after it starts (the kernel's own peak is exact anyway),
  and a cell too short to be sampled takes the children's and GPU memory of
  the latest reading (no ``cell_usage`` record when there is none: its
  kernel peak is in its own record), refreshed by a sample ``AFTER_CELL_S``
  after it ends.
- A cell's start is written by the watcher, not on the kernel's reply path:
  the row that comes with ``start`` is written to the watcher's journal when
  the cell is still running at the reading of the messages after the one that
  brought it (``MESSAGE_TICK_S`` to twice that after it started), so a long
  cell shows as ``running`` and a quick one, whose final row the kernel
  writes just after its reply, costs no write at all. If the kernel
  dies first, that row is what its ``killed`` row is made from.
- Nothing is written before the kernel names the experiment folder: records
  made before that are held in memory and written to the first folder named
  (so the first cell, which often sets ``EXP_PATH``, keeps its timeline).
- It notices the kernel's death at once (a pidfd, else polling ``/proc``),
  marks the open cell, the open run and the session ``killed`` in its own
  journal (with the last reading, the cell's peak and, where a cgroup memory
  limit is visible, the limit and whether the OOM killer fired), compacts the
  session into Parquet and exits.
- It exits when told to stop, when its stdin closes, or when the kernel is gone,
  so it never outlives the kernel. It ignores SIGINT: Jupyter interrupts the
  kernel's whole process group.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import select
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from mlt_kernel.core import layout
from mlt_kernel.core.schema import CELL_USAGE, CELLS, SAMPLES, SESSIONS, code_sha1
from mlt_kernel.store.journal import JournalWriter, journal_name, now_us, read_lines
from mlt_kernel.store.postmortem import killed_rows, session_ended
from mlt_kernel.watcher import procfs, protocol
from mlt_kernel.watcher.guard import SIGNAL as GUARD_SIGNAL
from mlt_kernel.watcher.guard import Guard, resolve_limit
from mlt_kernel.watcher.sampler import CellWindow, Reading, Sampler, _max

log = logging.getLogger("mlt_kernel.watcher")

#: A sample this long after a cell ends, off the kernel's reply path.
AFTER_CELL_S = 0.2
#: Records held while no experiment folder is known (~17 min of 50 ms samples).
PENDING_LIMIT = 20_000
#: Samples written together while a cell runs (half a second at the busy
#: interval); between cells each sample is written at once.
SAMPLE_BATCH = 10
#: After its stdin closes, how long the watcher waits to see whether the kernel is exiting.
EXIT_GRACE_S = 2.0
#: Without a pidfd, how often the kernel's liveness is polled.
LIVENESS_POLL_S = 0.05
#: How often the kernel's messages (cell start and end) are read.
MESSAGE_TICK_S = 0.05

_READ_SIZE = 1 << 16
#: Samples kept to say how fast memory grew before a death, and over how long.
GROWTH_READINGS = 64
GROWTH_SPAN_S = 2.0


class Watcher:
    """The watcher's main loop: messages from the kernel, samples, the kernel's death."""

    def __init__(
        self,
        kernel_pid: int,
        session_id: str,
        *,
        busy_interval: float = protocol.BUSY_INTERVAL_S,
        idle_interval: float = protocol.IDLE_INTERVAL_S,
        control_fd: int = 0,
        gpu: Any = None,
        memory_limit: int | None = None,
        memory_guard: float = 0.0,
        guard_fd: int | None = None,
    ) -> None:
        self.kernel_pid = kernel_pid
        self.session_id = session_id
        self.busy_interval = busy_interval
        self.idle_interval = idle_interval
        self.control_fd = control_fd
        self.sampler = Sampler(kernel_pid, gpu)
        self.folders: list[Path] = []  # every experiment folder named, the current one last
        self._writer: JournalWriter | None = None
        self._samples_writer: JournalWriter | None = None  #: the samples journal, beside the watcher's
        self._pending: deque[tuple[str, dict[str, Any]]] = deque(maxlen=PENDING_LIMIT)
        self._samples: list[dict[str, Any]] = []  # taken, not yet written (see SAMPLE_BATCH)
        self._cell: CellWindow | None = None
        self._last: Reading | None = None
        self._rescan_due = False
        self._next_sample = 0.0
        self._buffer = b""
        self._write_failed = False
        self._cgroup = procfs.cgroup_memory_dir(kernel_pid)
        start = procfs.read_cgroup_memory(self._cgroup) if self._cgroup else None
        self._oom_kills_at_start = start.oom_kills if start else None
        limit, source = resolve_limit(memory_limit, start.limit_bytes if start else None, procfs.read_meminfo())
        self.guard = Guard(limit, memory_guard if guard_fd is not None else 0.0)
        self.guard_fd = guard_fd
        self._next_guard = math.inf
        self._recent: deque[tuple[int, int]] = deque(maxlen=GROWTH_READINGS)  #: (t µs, RSS) of the last samples
        if self.guard.armed:
            log.info("memory guard at %.0f %% of %d bytes (%s)", 100 * self.guard.fraction, limit, source)
        self._pidfd = self._open_pidfd()

    # -- the loop ------------------------------------------------------------

    def _open_pidfd(self) -> int | None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return None
        try:
            fd: int = pidfd_open(self.kernel_pid)
            return fd
        except ProcessLookupError:
            raise
        except OSError:  # an old kernel (ENOSYS), a seccomp filter…: poll /proc instead
            return None

    def kernel_alive(self) -> bool:
        if self._pidfd is not None:
            return not select.select([self._pidfd], [], [], 0)[0]
        if procfs.AVAILABLE:
            stat = procfs.read_stat(self.kernel_pid)
            return stat is not None and not stat.exiting
        try:
            os.kill(self.kernel_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def run(self) -> int:
        """Watch until the kernel stops us, goes away or dies; the exit status.

        The kernel's messages are read every ``MESSAGE_TICK_S``, not the moment
        they arrive: waking up twice per cell would compete for the CPU with
        the kernel just when it is answering its frontend.
        """
        os.set_blocking(self.control_fd, False)
        poller = select.poll()
        if self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        self._next_sample = next_read = time.monotonic()
        while True:
            timeout = max(0.0, min(self._next_sample, next_read, self._next_guard) - time.monotonic())
            ready = {fd for fd, _ in poller.poll(timeout * 1000.0)}
            now = time.monotonic()
            # Messages first: a "start" written just before the kernel died must count.
            if now >= next_read or ready:
                next_read = now + MESSAGE_TICK_S
                outcome = self._read_control()
                if outcome == "stop":
                    self._finish()
                    return 0
                if outcome == "eof":
                    return self._control_closed()
                self._write_start()
            if (self._pidfd is not None and self._pidfd in ready) or (self._pidfd is None and not self.kernel_alive()):
                self._kernel_died()
                return 0
            if time.monotonic() >= self._next_guard:
                self._guard_check()
            if time.monotonic() >= self._next_sample:
                self._take_sample()

    def _read_control(self) -> str | None:
        """Handle every message waiting in the pipe; ``"stop"``, ``"eof"`` or None."""
        chunks: list[bytes] = []
        eof = False
        while True:  # all of it: a burst of cells may have left more than one read's worth
            try:
                data = os.read(self.control_fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                break
            chunks.append(data)
            if len(data) < _READ_SIZE:  # drained
                break
        if chunks:
            self._buffer += b"".join(chunks)
            *lines, self._buffer = self._buffer.split(b"\n")
            for raw in lines:
                if self._handle(raw.decode("utf-8", "replace").strip()) == "stop":
                    return "stop"
        return "eof" if eof else None

    def _handle(self, line: str) -> str | None:
        try:
            message = protocol.parse(line)
        except ValueError as exc:
            log.warning("ignored a %s", exc)
            return None
        match message:
            case protocol.CellStarted(cell_seq, run_id, row):
                self.cell_started(cell_seq, run_id, row)
            case protocol.CellEnded(cell_seq):
                self.cell_finished(cell_seq)
            case protocol.GuardOff():
                if self._cell is not None:
                    self._cell.guarded = False
            case protocol.SetExperiment(folder):
                self.set_experiment(folder)
            case protocol.Stop():
                return "stop"
        return None

    def _control_closed(self) -> int:
        # The kernel closed the pipe: usually it is exiting. If it is gone
        # within a moment, treat it as a death (the journals tell whether it
        # ended cleanly); if it lives on, it just let go of us.
        deadline = time.monotonic() + EXIT_GRACE_S
        while time.monotonic() < deadline:
            if self._pidfd is not None:
                if select.select([self._pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break
            elif not self.kernel_alive():
                break
            else:
                time.sleep(LIVENESS_POLL_S)
        if not self.kernel_alive():
            self._kernel_died()
        else:
            self._finish()
        return 0

    # -- messages ------------------------------------------------------------

    def set_experiment(self, folder: Path) -> None:
        if self.folders and self.folders[-1] == folder:
            return
        self._flush_samples()  # taken while the last folder was current
        self._close_writers()
        if folder in self.folders:
            self.folders.remove(folder)
        self.folders.append(folder)
        self._writer = JournalWriter(self._journal_path(folder))
        self._samples_writer = JournalWriter(self._journal_path(folder, SAMPLES.name))
        while self._pending:
            self._emit(*self._pending.popleft())

    def cell_started(self, cell_seq: int, run_id: str | None, row: str | None = None) -> None:
        """Cell *cell_seq* began; *row* is its journal line (status ``running``) to keep."""
        if self._cell is not None:  # the end of the previous cell was lost
            self._close_cell()
        folder = self.folders[-1] if self.folders else None
        self._cell = CellWindow(cell_seq, run_id if isinstance(run_id, str) else None, row, folder)
        self._rescan_due = True  # workers started by the previous cell, or by this one
        self._next_sample = time.monotonic() + self.busy_interval
        self.guard.reset()
        self._next_guard = self._next_sample if self.guard.armed else math.inf

    def _write_start(self) -> None:
        """Write the open cell's start row once it has run past a reading of the messages."""
        cell = self._cell
        if cell is None or cell.row is None:
            return
        if cell.fresh:  # it may end within the millisecond: wait a reading
            cell.fresh = False
            return
        row = cell.start = self._start_row(cell)
        cell.row = None
        if row is None:
            return
        # Into the folder it belongs to (None: held for the first folder named).
        if cell.folder in (None, self.folders[-1] if self.folders else None):
            self._emit(CELLS.name, dict(row))
            return
        writer = JournalWriter(self._journal_path(cell.folder))  # the cell moved the kernel on
        try:
            writer.write(CELLS.name, dict(row))
        except (OSError, ValueError) as exc:
            log.warning("cannot write the start of cell %d: %s", cell.cell_seq, exc)
        finally:
            writer.close()

    def _start_row(self, cell: CellWindow) -> dict[str, Any] | None:
        """The open cell's start row as the kernel sent it (its own ``recorded_at`` kept)."""
        try:
            row = json.loads(cell.row) if cell.row is not None else None
        except ValueError:
            row = None
        if not isinstance(row, dict) or row.pop("table", None) != CELLS.name:
            if cell.row is not None:
                log.warning("ignored a malformed cell row %r", cell.row[:200])
            return None
        if row.get("code_sha1") is None and isinstance(row.get("code"), str):
            row["code_sha1"] = code_sha1(row["code"])  # left out by the kernel: the code is whole
        return row

    def cell_finished(self, cell_seq: int) -> None:
        if self._cell is None:
            return
        if self._cell.cell_seq != cell_seq:
            log.warning("cell %d ended while the watcher had cell %d open", cell_seq, self._cell.cell_seq)
        cell = self._cell
        if cell.samples == 0:
            last = self._last
            if last is not None and not (last.children_rss_bytes or last.gpu_bytes):
                # Too short to be sampled, and nothing beside the kernel to report:
                # no record (a notebook of quick cells would double the journal).
                self._cell = None
                self._next_sample = time.monotonic() + min(AFTER_CELL_S, self.idle_interval)
                return
            if last is not None:
                cell.add(last)
        self._close_cell()

    def _close_cell(self) -> None:
        self._next_guard = math.inf
        cell, self._cell = self._cell, None
        if cell is not None:
            self._emit(CELL_USAGE.name, self._usage_record(cell))
        self._next_sample = time.monotonic() + min(AFTER_CELL_S, self.idle_interval)

    def _usage_record(self, cell: CellWindow) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "cell_seq": cell.cell_seq,
            "children_peak_rss_bytes": cell.children_peak_rss_bytes,
            "peak_gpu_bytes": cell.peak_gpu_bytes,
            "samples": cell.samples,
            "memory_limit_bytes": cell.memory_limit_bytes,
        }

    # -- the memory guard ----------------------------------------------------

    def _guard_check(self) -> None:
        """Read the memory of the kernel and its children; stop the cell if it is about to run out."""
        cell = self._cell
        if cell is None or not cell.guarded or not self.guard.armed or self.guard.fired:
            self._next_guard = math.inf
            return
        now = time.monotonic()
        used = self.sampler.memory()
        if used is None:  # the kernel is exiting; the pidfd will say so
            self._next_guard = math.inf
            return
        meminfo = procfs.read_meminfo()  # ~20 µs: what other work has left counts at every reading
        available = meminfo.available_bytes if meminfo is not None else None
        cell.memory_limit_bytes = self.guard.limit(used, available)
        interval = self.guard.interval(used, available, self.busy_interval)
        self._next_guard = now + interval
        if self.guard.check(now, used, available, interval) and self._confirmed(used, available):
            self.guard.fired = True
            self._next_guard = math.inf
            self._fire(cell, used, cell.memory_limit_bytes or 0)

    def _confirmed(self, used: int, available: int | None) -> bool:
        """Whether the memory is really there: children forked from the kernel share its pages,
        which their RSS counts again; their proportional sizes (PSS) count each page once."""
        children = self.sampler.children
        if not children:
            return True
        kernel = procfs.pss_bytes(self.sampler.kernel_pid)
        if kernel is None:  # no smaps_rollup (Linux < 4.14): go by RSS
            return True
        proportional = kernel + sum(procfs.pss_bytes(pid) or 0 for pid in children)  # None: gone meanwhile
        return proportional >= used or self.guard.still_past(proportional, available)

    def _fire(self, cell: CellWindow, used: int, limit: int) -> None:
        """Tell the kernel what was read, then interrupt its cell (``guard.SIGNAL``; its handler raises).

        Never a signal the kernel does not handle (its default action would end it):
        user code may have taken the handler back since the kernel started.
        """
        if procfs.catches(self.kernel_pid, GUARD_SIGNAL) is False:
            log.warning("memory guard: the kernel no longer handles its signal; cell %d not stopped", cell.cell_seq)
            return
        if self.guard_fd is not None:
            try:
                os.write(self.guard_fd, protocol.guard_fired(cell.cell_seq, used, limit))
            except OSError as exc:  # the kernel closed its end: it is going
                log.warning("cannot tell the kernel what the memory guard read: %s", exc)
        try:
            if self._pidfd is not None and hasattr(signal, "pidfd_send_signal"):
                signal.pidfd_send_signal(self._pidfd, GUARD_SIGNAL)  # never a reused pid
            else:
                os.kill(self.kernel_pid, GUARD_SIGNAL)
        except OSError as exc:
            log.warning("the memory guard could not interrupt cell %d: %s", cell.cell_seq, exc)
            return
        log.warning(
            "memory guard: stopped cell %d at %d of %d bytes (growing %.0f MB/s)",
            cell.cell_seq,
            used,
            limit,
            self.guard.rate / 1e6,
        )

    # -- samples -------------------------------------------------------------

    def _take_sample(self) -> None:
        cell = self._cell
        if self._rescan_due:
            self._rescan_due = False
            self.sampler.rescan()
        self._next_sample = time.monotonic() + (self.busy_interval if cell else self.idle_interval)
        reading = self.sampler.sample()
        if reading is None:  # the kernel is exiting; the pidfd will say so
            return
        self._recent.append((reading.t_us, reading.rss_bytes))
        self._last = reading
        if cell is not None:
            cell.add(reading)
        self._samples.append(
            {
                "session_id": self.session_id,
                "t": reading.t_us,
                "rss_bytes": reading.rss_bytes,
                "children_rss_bytes": reading.children_rss_bytes,
                "cpu_percent": reading.cpu_percent,
                "gpu_bytes": reading.gpu_bytes,
                "gpu_util": reading.gpu_util,
                "cell_seq": cell.cell_seq if cell else None,
                "run_id": cell.run_id if cell else None,
            }
        )
        if cell is None or len(self._samples) >= SAMPLE_BATCH:
            self._flush_samples()

    def _flush_samples(self) -> None:
        samples, self._samples = self._samples, []
        if not samples:
            return
        if self._samples_writer is None:
            stamp = now_us()
            self._pending.extend((SAMPLES.name, {**record, "recorded_at": stamp}) for record in samples)
            return
        try:
            self._samples_writer.write_many(SAMPLES.name, samples)
        except OSError as exc:
            self._write_failed_once(self._samples_writer, exc)

    def _journal_path(self, folder: Path, role: str = "watcher") -> Path:
        return folder / layout.JOURNALS / journal_name(self.session_id, role)

    def _emit(self, table_name: str, record: dict[str, Any]) -> None:
        self._flush_samples()  # records stay in the order they were taken
        writer = self._samples_writer if table_name == SAMPLES.name else self._writer
        if writer is None:
            record.setdefault("recorded_at", now_us())
            self._pending.append((table_name, record))
            return
        try:
            writer.write(table_name, record)
        except OSError as exc:
            self._write_failed_once(writer, exc)

    def _write_failed_once(self, writer: JournalWriter, exc: OSError) -> None:
        # Folder removed, disk full: keep watching, say so once.
        if not self._write_failed:
            self._write_failed = True
            log.warning("cannot write %s: %s", writer.path, exc)

    def _close_writers(self) -> None:
        for writer in (self._writer, self._samples_writer):
            if writer is not None:
                writer.close()

    def _finish(self) -> None:
        """Clean end: the last sample, the open cell's usage, the journal closed."""
        if self._cell is not None:
            self.cell_finished(self._cell.cell_seq)
        else:
            self._take_sample()
        self._close()

    def _close(self) -> None:
        self._flush_samples()
        self._close_writers()
        self.sampler.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    # -- death ---------------------------------------------------------------

    def _kernel_died(self) -> None:
        """Mark what was open as killed, in every folder the session wrote to, and compact."""
        death_us = now_us()
        cell = self._cell
        start = None
        if cell is not None:
            start = cell.start if cell.row is None else self._start_row(cell)
            self._cell = None
            self._emit(CELL_USAGE.name, self._usage_record(cell))
        self._flush_samples()
        self._close_writers()
        cgroup = procfs.read_cgroup_memory(self._cgroup) if self._cgroup else None
        oom_kill: bool | None = None
        if cgroup and cgroup.oom_kills is not None and self._oom_kills_at_start is not None:
            oom_kill = cgroup.oom_kills > self._oom_kills_at_start
        death = {
            "ended_at": death_us,
            "death_cause": "oom" if oom_kill else "unknown",
            "memory_limit_bytes": (cgroup.limit_bytes if cgroup else None) or self.guard.limit_bytes,
            "oom_kill": oom_kill,
            "last_rss_bytes": self._last.rss_bytes if self._last else None,
            "memory_guard": self.guard.fraction if self.guard.armed else 0.0,
            "growth_bytes_per_s": self._death_growth(),
        }
        journals = {folder: self._kernel_records(folder) for folder in self.folders}
        folder = (cell.folder if cell is not None else None) or (self.folders[-1] if self.folders else None)
        if start is not None and folder in journals:
            # The open cell's start, which the kernel left to the watcher.
            journals[folder].append({"table": CELLS.name, **start})
        if not any(session_ended(records, self.session_id) for records in journals.values()):
            # It died with the session open (or the session ended and said so:
            # then there is nothing to mark, only to compact).
            marked_session = False
            for folder, records in journals.items():
                writer = JournalWriter(self._journal_path(folder))
                try:
                    for table, row in killed_rows(records, self.session_id, death, self._cell_changes(cell)):
                        writer.write(table, row)
                        marked_session |= table == SESSIONS.name
                    if folder == self.folders[-1] and not marked_session:
                        # No sessions row anywhere (the kernel died before
                        # writing one): still say how the session ended.
                        writer.write(
                            SESSIONS.name,
                            {"session_id": self.session_id, "status": "killed", "kernel_pid": self.kernel_pid, **death},
                        )
                except OSError as exc:
                    log.warning("cannot record the kernel's death in %s: %s", folder, exc)
                finally:
                    writer.close()
        self.sampler.close()
        self._compact()

    def _death_growth(self) -> float:
        """How fast memory grew before the death: the steepest rise over the last ``GROWTH_SPAN_S``.

        Not just the last two readings: near a cgroup's limit the kernel stalls
        in reclaim, and its memory stops growing just before the OOM killer acts.
        """
        if not self._recent:
            return self.guard.rate
        since = self._recent[-1][0] - int(GROWTH_SPAN_S * 1e6)
        best, low = 0.0, None
        for t, rss in self._recent:
            if t < since:
                continue
            if low is None or rss < low[1]:
                low = (t, rss)
            elif t > low[0]:
                best = max(best, (rss - low[1]) * 1e6 / (t - low[0]))
        return max(best, self.guard.rate)

    def _kernel_records(self, folder: Path) -> list[dict[str, Any]]:
        path = folder / layout.JOURNALS / journal_name(self.session_id, "kernel")
        try:
            records, _, _ = read_lines(path)
        except OSError:
            return []
        return records

    @staticmethod
    def _cell_changes(cell: CellWindow | None) -> Any:
        """What the watcher saw during the open cell, for its ``killed`` row."""

        def changes(row: dict[str, Any]) -> dict[str, Any]:
            if cell is None or cell.cell_seq != row.get("cell_seq"):
                return {}
            return {
                "kernel_peak_rss_bytes": cell.kernel_peak_rss_bytes,
                "children_peak_rss_bytes": _max(row.get("children_peak_rss_bytes"), cell.children_peak_rss_bytes),
                "peak_gpu_bytes": _max(row.get("peak_gpu_bytes"), cell.peak_gpu_bytes),
            }

        return changes

    def _compact(self) -> None:
        try:
            from mlt_kernel.store import parquet as store  # pyarrow: only now, never while watching
        except ImportError as exc:
            log.warning("cannot compact session %s: %s", self.session_id, exc)
            return
        for folder in self.folders:
            try:
                store.compact_writer(folder, self.session_id)
            except Exception as exc:  # noqa: BLE001 - one folder's failure must not cost the others
                log.warning("cannot compact session %s in %s: %s", self.session_id, folder, exc)


class _StderrFormatter(logging.Formatter):
    """``LEVELNO LOGGER MESSAGE`` on one line: what :class:`WatcherHandle` forwards."""

    def format(self, record: logging.LogRecord) -> str:
        return protocol.log_line(record, super().format(record))


def _setup_logging() -> None:
    # stderr is a pipe to the kernel; if the kernel is gone but a forked worker
    # still holds the pipe open, a full pipe must not block the watcher.
    try:
        os.set_blocking(2, False)
    except OSError:
        pass
    logging.raiseExceptions = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    root = logging.getLogger("mlt_kernel")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlt_kernel.watcher",
        description="Sample the memory, CPU and GPU of a Jupyter kernel and its child processes, "
        "and record how it ended. Started by the MLTrack kernel; reads its instructions on stdin.",
    )
    parser.add_argument("--pid", type=int, required=True, help="pid of the kernel to watch")
    parser.add_argument("--session", required=True, help="the kernel's session id")
    parser.add_argument(
        "--busy-interval",
        type=float,
        default=protocol.BUSY_INTERVAL_S,
        help=f"seconds between samples while a cell runs (default {protocol.BUSY_INTERVAL_S})",
    )
    parser.add_argument(
        "--idle-interval",
        type=float,
        default=protocol.IDLE_INTERVAL_S,
        help=f"seconds between samples otherwise (default {protocol.IDLE_INTERVAL_S})",
    )
    parser.add_argument(
        "--memory-limit",
        type=int,
        default=0,
        help="the memory guard's limit in bytes (default 0: the cgroup's limit, else the machine's memory)",
    )
    parser.add_argument(
        "--memory-guard",
        type=float,
        default=0.0,
        help="stop a running cell at this share of the limit (default 0: no guard); "
        "the kernel must handle the guard's signal (SIGRTMIN+5), and reads the guard's line on the watcher's stdout",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # Jupyter interrupts the kernel's process group, which includes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = _parser().parse_args(argv)
    _setup_logging()
    if args.memory_guard > 0:  # a full pipe must never stall the loop: the line is only a courtesy
        os.set_blocking(1, False)
    from mlt_kernel.watcher.nvml import Gpu

    try:
        watcher = Watcher(
            args.pid,
            args.session,
            busy_interval=max(protocol.MIN_INTERVAL_S, args.busy_interval),
            idle_interval=max(protocol.MIN_INTERVAL_S, args.idle_interval),
            gpu=Gpu(),
            memory_limit=args.memory_limit or None,
            memory_guard=min(max(args.memory_guard, 0.0), 1.0),
            guard_fd=1 if args.memory_guard > 0 else None,
        )
    except ProcessLookupError:
        log.warning("kernel %d is not running; the watcher exits", args.pid)
        return 0
    return watcher.run()


if __name__ == "__main__":
    raise SystemExit(main())
