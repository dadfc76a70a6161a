"""RSS before and after a cell, and its exact peak.

On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the high-water
mark of the resident set (``VmHWM``) and reading it after the cell gives the
exact peak — a sampler misses short spikes and cannot run while the cell
holds the GIL. The mark is read through ``getrusage``: ``ru_maxrss`` is the
larger of that mark and a peak inherited at ``exec`` from the parent process,
which never changes, so a value above what it read when the hook started is
the mark itself; otherwise ``VmHWM`` is read from ``/proc/self/status`` (a
longer read). Elsewhere (or where ``clear_refs`` is refused) the peak is the
larger of the two readings around the cell, marked as not exact; the
watcher's timeline then fills in.

Around the cell are the reset, one ``getrusage`` before and one after (shared
with the timing hook, for the CPU time) and one read of ``/proc/self/statm``
for the RSS after the cell.
"""

from __future__ import annotations

import itertools
import os
import resource
from typing import Any

from mlt_kernel.core import gilio
from mlt_kernel.hooks import CellContext, Hook, register
from mlt_kernel.watcher.procfs import PAGE_SIZE


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
        # Right after a reset: the larger of the inherited peak and the RSS, so
        # no lower than the inherited peak (see the module docs).
        self.inherited_max = _maxrss()

    def rss(self) -> int:
        return int(gilio.pread(self.statm, 128).split()[1]) * PAGE_SIZE

    def reset_peak(self) -> bool:
        if self.clear_refs is None:
            return False
        try:
            gilio.write(self.clear_refs, b"5")
        except OSError:
            return False
        return True

    def peak(self, maxrss: int | None = None) -> int:
        """The high-water mark since the last reset (*maxrss*: ``ru_maxrss`` in bytes, read just now)."""
        maxrss = _maxrss() if maxrss is None else maxrss
        if maxrss > self.inherited_max:
            return maxrss
        data = gilio.pread(self.status, 8192)
        i = data.index(b"VmHWM:")
        return int(data[i + 6 : data.index(b"kB", i)]) * 1024

    def rss_at_reset(self, maxrss: int | None = None) -> int:
        """The RSS right after a reset, which the high-water mark then equals."""
        maxrss = _maxrss() if maxrss is None else maxrss
        return maxrss if maxrss > self.inherited_max else self.rss()

    def close(self) -> None:
        for fd in (self.statm, self.status, self.clear_refs):
            if fd is not None:
                os.close(fd)


class Peaks:
    """Exact peaks of scopes that overlap — a cell, the runs and fits inside it — from one high-water mark.

    A scope starts with a reset of the mark; just before any reset, the mark so
    far is folded into every open scope, so that none loses the peak it had
    reached. A scope's peak is the largest value folded into it. With no other
    scope open (the usual cell) this costs what one reset and one read cost.
    """

    def __init__(self, proc: ProcSelf) -> None:
        self._proc = proc
        self._open: dict[int, int] = {}
        self._tokens = itertools.count()

    def begin(self) -> tuple[int, resource.struct_rusage] | None:
        """Open a scope: ``(token, getrusage just after the reset)``; None where peaks are not exact."""
        if self._open:
            self._fold(_maxrss())
        if not self._proc.reset_peak():
            return None
        ru = usage()
        token = next(self._tokens)
        self._open[token] = self._proc.rss_at_reset(ru.ru_maxrss * 1024)
        return token, ru

    def start_value(self, token: int) -> int | None:
        """The RSS at the scope's start (the mark right after its reset), while it is open."""
        return self._open.get(token)

    def end(self, token: int, maxrss: int | None = None) -> int | None:
        """Close a scope: its exact peak (*maxrss*: ``ru_maxrss`` in bytes, read just now)."""
        if token not in self._open:
            return None
        self._fold(_maxrss() if maxrss is None else maxrss)
        return self._open.pop(token)

    def _fold(self, maxrss: int) -> None:
        peak = self._proc.peak(maxrss)
        for token, value in self._open.items():
            if peak > value:
                self._open[token] = peak


def _maxrss() -> int:
    return usage().ru_maxrss * 1024


def usage() -> resource.struct_rusage:
    """This process's ``getrusage``: its peak RSS and, for the timing hook, its CPU time."""
    return resource.getrusage(resource.RUSAGE_SELF)


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
        #: Exact peaks of the cell and of what runs inside it (runs, fits); None where not exact.
        self.peaks = Peaks(self._proc) if self._proc is not None and self._proc.clear_refs is not None else None
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
        begun = self.peaks.begin() if self.peaks is not None else None
        cell.scratch["exact"] = begun is not None
        if begun is not None:
            # Read once for both: the mark just reset, and the CPU time so far
            # (the timing hook, which runs next, takes it from here).
            token, cell.scratch["usage_before"] = begun
            cell.scratch["peak_token"] = token
            cell.record["rss_before_bytes"] = self.peaks.start_value(token)  # type: ignore[union-attr]
        else:
            cell.record["rss_before_bytes"] = self._rss()

    def post_cell(self, cell: CellContext) -> None:
        # Read as the cell ends, not when its record is written: by then the
        # kernel has built its reply, and the RSS would count that too.
        after = self._rss()
        before = cell.record["rss_before_bytes"]
        exact = cell.scratch.get("exact", False)
        peak = 0
        if exact and self.peaks is not None:
            ru = cell.scratch.get("usage_after") or usage()  # the timing hook read it a moment ago
            peak = self.peaks.end(cell.scratch["peak_token"], ru.ru_maxrss * 1024) or 0
        cell.record["rss_after_bytes"] = after
        cell.record["peak_exact"] = exact
        cell.record["peak_rss_bytes"] = max(peak, before, after)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
