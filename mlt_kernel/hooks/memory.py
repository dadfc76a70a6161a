"""RSS before and after a cell, and its exact peak.

On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the high-water
mark of the resident set (``VmHWM``) and reading ``VmHWM`` after the cell gives
the exact peak — a sampler misses short spikes and cannot run while the cell
holds the GIL. ``ru_maxrss`` is no substitute: it inherits the parent's peak
and never goes down. Elsewhere (or where ``clear_refs`` is refused) the peak
is the larger of the two readings around the cell, marked as not exact; the
watcher's timeline then fills in.
"""

from __future__ import annotations

import os
from typing import Any

from ..procfs import PAGE_SIZE
from . import CellContext, Hook, register



class ProcSelf:
    """Keeps ``/proc/self`` files open: one ``pread`` per reading."""

    def __init__(self) -> None:
        self.statm = os.open("/proc/self/statm", os.O_RDONLY)
        self.status = os.open("/proc/self/status", os.O_RDONLY)
        try:
            self.clear_refs: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
            os.write(self.clear_refs, b"5")
        except OSError:
            self.clear_refs = None

    def rss(self) -> int:
        return int(os.pread(self.statm, 128, 0).split()[1]) * PAGE_SIZE

    def reset_peak(self) -> bool:
        if self.clear_refs is None:
            return False
        try:
            os.write(self.clear_refs, b"5")
        except OSError:
            return False
        return True

    def peak(self) -> int:
        data = os.pread(self.status, 8192, 0)
        i = data.index(b"VmHWM:")
        return int(data[i + 6 : data.index(b"kB", i)]) * 1024

    def close(self) -> None:
        for fd in (self.statm, self.status, self.clear_refs):
            if fd is not None:
                os.close(fd)


def open_proc_self() -> ProcSelf | None:
    try:
        return ProcSelf()
    except (OSError, ValueError):
        return None


@register
class MemoryHook(Hook):
    name = "memory"

    def __init__(self) -> None:
        self._proc = open_proc_self()
        self._ps: Any = None
        if self._proc is None:  # not Linux: psutil, and peaks come from the watcher
            import psutil

            self._ps = psutil.Process()

    @property
    def exact(self) -> bool:
        return self._proc is not None and self._proc.clear_refs is not None

    def _rss(self) -> int:
        if self._proc is not None:
            return self._proc.rss()
        return int(self._ps.memory_info().rss)

    def pre_cell(self, cell: CellContext) -> None:
        cell.scratch["exact"] = self._proc is not None and self._proc.reset_peak()
        cell.record["rss_before_bytes"] = self._rss()

    def post_cell(self, cell: CellContext) -> None:
        after = self._rss()
        before = cell.record["rss_before_bytes"]
        exact = cell.scratch.get("exact", False)
        cell.record["rss_after_bytes"] = after
        cell.record["peak_exact"] = exact
        peak = self._proc.peak() if exact and self._proc is not None else 0
        cell.record["peak_rss_bytes"] = max(peak, before, after)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
