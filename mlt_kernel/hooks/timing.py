"""Wall and CPU time of a cell."""

from __future__ import annotations

import time

from mlt_kernel.hooks import CellContext, Hook, register

try:
    import resource
except ImportError:  # not POSIX: the memory hook then leaves no usage to share
    resource = None  # type: ignore[assignment]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads).

    ``time.process_time`` is one ``clock_gettime``; ``os.times`` also collects
    the children's times and costs tens of microseconds in a kernel process.
    """
    return time.process_time()


@register
class TimingHook(Hook):
    name = "timing"

    def pre_cell(self, cell: CellContext) -> None:
        cell.record["started_at"] = time.time_ns() // 1000
        # The memory hook's getrusage, when it made one, holds the CPU time:
        # one system call fewer on the cell's path (and again after it).
        before = cell.scratch.get("usage_before")
        cell.scratch["cpu0"] = cpu_seconds() if before is None else before.ru_utime + before.ru_stime
        cell.scratch["perf0"] = time.perf_counter()

    def post_cell(self, cell: CellContext) -> None:
        wall = time.perf_counter() - cell.scratch["perf0"]
        if "usage_before" in cell.scratch and resource is not None:
            after = cell.scratch["usage_after"] = resource.getrusage(resource.RUSAGE_SELF)  # the memory hook's peak too
            cpu = after.ru_utime + after.ru_stime
        else:
            cpu = cpu_seconds()
        cell.record["wall_s"] = wall
        cell.record["cpu_s"] = max(cpu - cell.scratch["cpu0"], 0.0)
        cell.record["ended_at"] = cell.record["started_at"] + int(wall * 1e6)
