"""Readings of one process tree: the kernel and its descendants, from ``/proc`` and NVML.

One sample reads ``/proc/PID/stat`` of every known process (one ``pread``
each); the set of descendants is looked up again at most every
``CHILD_SCAN_INTERVAL`` seconds (and when the loop asks, at a cell's first
sample), because finding descendants costs more than reading them. MLTrack's
own helper processes (the watcher, compaction, recovery) are not counted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlt_kernel.store.journal import now_us
from mlt_kernel.watcher import procfs

#: How often (seconds) the set of the kernel's descendants is looked up again.
CHILD_SCAN_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of the kernel and its descendants."""

    t_us: int
    kernel_rss_bytes: int
    children_rss_bytes: int
    cpu_percent: float | None
    gpu_bytes: int | None
    gpu_util: float | None

    @property
    def rss_bytes(self) -> int:
        return self.kernel_rss_bytes + self.children_rss_bytes


class Sampler:
    """Reads memory, CPU and GPU of one process tree (``/proc`` and NVML)."""

    def __init__(self, kernel_pid: int, gpu: Any = None) -> None:
        self.kernel_pid = kernel_pid
        self.gpu = gpu
        self._stats = procfs.StatReader()
        self._children: set[int] = set()
        self._next_scan = 0.0
        self._ticks: dict[int, int] = {}
        self._ticks_at: float | None = None

    @property
    def children(self) -> set[int]:
        return set(self._children)

    def rescan(self) -> None:
        """Look up the kernel's descendants now, leaving out MLTrack's own helpers."""
        children = procfs.children_of(self.kernel_pid)
        # The kernel started us, and starts other helpers (recovery,
        # compaction): they are its children, but their memory is not the
        # user's. Checked at every scan, not cached: right after a fork a
        # helper still shows the kernel's command line.
        helpers = {os.getpid()} | {pid for pid in children if _is_helper(procfs.cmdline(pid))}
        for pid in helpers & children:
            children -= procfs.children_of(pid)
        self._children = children - helpers
        self._stats.retain(self._children | {self.kernel_pid})
        self._next_scan = time.monotonic() + CHILD_SCAN_INTERVAL

    def sample(self) -> Reading | None:
        """A reading, or None when the kernel is gone or exiting.

        A process killed a moment ago already reads 0 bytes while it tears down;
        such a reading would end the timeline with a false drop, so there is none.
        """
        if time.monotonic() >= self._next_scan:
            self.rescan()
        t_us = now_us()
        kernel = self._stats.read(self.kernel_pid)
        if kernel is None or kernel.exiting:
            return None
        ticks = {kernel.pid: kernel.cpu_ticks}
        children_rss = 0
        for pid in list(self._children):
            stat = self._stats.read(pid)
            if stat is None:
                self._children.discard(pid)
                continue
            children_rss += stat.rss_bytes
            ticks[pid] = stat.cpu_ticks
        gpu_bytes = gpu_util = None
        if self.gpu is not None:
            reading = self.gpu.read(ticks.keys())
            gpu_bytes, gpu_util = reading.memory_bytes, reading.utilization
        return Reading(t_us, kernel.rss_bytes, children_rss, self._cpu_percent(ticks), gpu_bytes, gpu_util)

    def memory(self) -> int | None:
        """The RSS of the kernel and its known descendants now (bytes): the memory guard's quick reading."""
        kernel = self._stats.read(self.kernel_pid)
        if kernel is None or kernel.exiting:
            return None
        total = kernel.rss_bytes
        for pid in list(self._children):
            stat = self._stats.read(pid)
            if stat is not None:
                total += stat.rss_bytes
        return total

    def _cpu_percent(self, ticks: dict[int, int]) -> float | None:
        # Per-process deltas: a child that exits must not make the sum drop, and
        # one found late must not bring all its past ticks into this interval.
        mono = time.monotonic()
        previous, previous_at = self._ticks, self._ticks_at
        self._ticks, self._ticks_at = ticks, mono
        if previous_at is None or mono <= previous_at:
            return None
        used = sum(t - previous[pid] for pid, t in ticks.items() if pid in previous and t >= previous[pid])
        return round(100.0 * used / procfs.CLOCK_TICKS / (mono - previous_at), 1)

    def close(self) -> None:
        self._stats.close()


def _is_helper(argv: list[str] | None) -> bool:
    """Whether *argv* runs one of MLTrack's helper modules (``python -P -m mlt_kernel.…``, or the dashboard)."""
    if not argv or "-m" not in argv[:-1]:
        return False
    return argv[argv.index("-m") + 1].startswith(("mlt_kernel.", "mlt_dashboard."))


@dataclass(slots=True)
class CellWindow:
    """What the watcher saw during one cell."""

    cell_seq: int
    run_id: str | None
    row: str | None = None  #: the kernel's journal line of the cell's start, until written
    folder: Path | None = None  #: the experiment folder when the cell started
    start: dict[str, Any] | None = None  #: that row, once written
    fresh: bool = True  #: its start came with the latest reading of the messages
    samples: int = 0
    kernel_peak_rss_bytes: int | None = None
    children_peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    guarded: bool = True  #: the memory guard watches it (``# mlt: guard off`` says not)
    memory_limit_bytes: int | None = None  #: the limit in force when the guard last read

    def add(self, reading: Reading) -> None:
        self.samples += 1
        self.kernel_peak_rss_bytes = _max(self.kernel_peak_rss_bytes, reading.kernel_rss_bytes)
        self.children_peak_rss_bytes = _max(self.children_peak_rss_bytes, reading.children_rss_bytes)
        self.peak_gpu_bytes = _max(self.peak_gpu_bytes, reading.gpu_bytes)


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
