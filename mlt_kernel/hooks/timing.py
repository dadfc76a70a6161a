"""Wall and CPU time of a cell."""

from __future__ import annotations

import time

from . import CellContext, Hook, register


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
        cell.scratch["cpu0"] = cpu_seconds()
        cell.scratch["perf0"] = time.perf_counter()

    def post_cell(self, cell: CellContext) -> None:
        wall = time.perf_counter() - cell.scratch["perf0"]
        cell.record["wall_s"] = wall
        cell.record["cpu_s"] = cpu_seconds() - cell.scratch["cpu0"]
        cell.record["ended_at"] = cell.record["started_at"] + int(wall * 1e6)
