"""The memory guard's decisions: which limit, when to stop the running cell, how often to look.

The limit is ``MLTrackKernel.memory_limit`` when set, else the memory cgroup's
limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else the machine's
memory. On a machine shared with other work the memory actually available
counts too: the limit in force is never more than what the kernel and its
children use now plus ``MemAvailable``.

The guard fires while a guarded cell runs, when the memory of the kernel and
its children reaches ``fraction`` of that limit, or would reach it before the
next reading at the rate it grew over the last ``RATE_WINDOW_S``, once the cell
has grown ``GROWTH_MARGIN`` from its lowest reading: the cell is stopped before
the limit, not after. It reads again before memory growing at ``MAX_GROWTH``
(or faster, at the rate it saw) could reach the threshold: at the watcher's
busy interval far from it, every ``FAST_INTERVAL_S`` close to it.
Pure decisions: the watcher's loop does the reading and the stopping.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field

from mlt_kernel.watcher.procfs import MemInfo

#: The signal that stops a cell: a real-time one, which libraries leave alone (SIGUSR1 is
#: faulthandler's and some job schedulers'). The kernel's handler raises in the cell.
SIGNAL = signal.SIGRTMIN + 5 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR1
#: The share of the limit at which the guard stops a cell, unless set.
DEFAULT_FRACTION = 0.9
#: The fastest growth (bytes per second) the guard plans its readings for, until it sees faster.
MAX_GROWTH = 4 << 30
#: The guard's gap between readings near the threshold.
FAST_INTERVAL_S = 0.005
#: What the guard allows between its decision and the cell stopping: the
#: signal, the kernel's handler, the allocation under way when it arrives.
REACTION_S = 0.05
#: A cell is stopped only once it has grown by this much from its lowest reading: one that
#: starts above the threshold (the last cell left the memory full) and does not grow is let be.
GROWTH_MARGIN = 16 << 20
#: The growth rate is taken over this much of the recent readings: NumPy fills a
#: large array in bursts much faster than the cell grows on average.
RATE_WINDOW_S = 0.1


def resolve_limit(
    option_bytes: int | None, cgroup_bytes: int | None, meminfo: MemInfo | None
) -> tuple[int | None, str]:
    """The limit and where it comes from: ``option``, ``cgroup``, ``machine``, or ``(None, "none")``."""
    if option_bytes:
        return option_bytes, "option"
    if cgroup_bytes:
        return cgroup_bytes, "cgroup"
    if meminfo is not None:
        return meminfo.total_bytes, "machine"
    return None, "none"


@dataclass
class Guard:
    """The guard of one session; :meth:`reset` at each cell's start."""

    limit_bytes: int | None
    fraction: float = DEFAULT_FRACTION
    _recent: deque[tuple[float, int]] = field(default_factory=deque)  #: (time, reading) of this cell
    rate: float = 0.0  #: bytes per second over the last RATE_WINDOW_S of this cell (0 when shrinking)
    fired: bool = False
    low: int | None = None  #: the cell's lowest reading: the cell is stopped only once it grew from it

    @property
    def armed(self) -> bool:
        return self.fraction > 0 and bool(self.limit_bytes)

    def reset(self) -> None:
        self._recent.clear()
        self.rate = 0.0
        self.low = None
        self.fired = False

    def limit(self, used: int, available: int | None) -> int | None:
        """The limit in force: the configured one, or less when the machine has less to give."""
        if self.limit_bytes is None:
            return None
        return self.limit_bytes if available is None else min(self.limit_bytes, used + available)

    def threshold(self, used: int, available: int | None) -> float:
        limit = self.limit(used, available)
        return float("inf") if limit is None or not self.armed else self.fraction * limit

    def check(self, now: float, used: int, available: int | None, next_reading_s: float) -> bool:
        """Whether to stop the cell, given the reading *used* (bytes) taken at *now* (monotonic seconds).

        Only says so; the caller sets ``fired`` once it has stopped the cell.
        """
        if not self.armed or self.fired:
            return False
        recent = self._recent
        while len(recent) > 1 and recent[1][0] <= now - RATE_WINDOW_S:  # keep one reading at or before the window
            recent.popleft()
        if recent and now > recent[0][0]:
            self.rate = max(0.0, (used - recent[0][1]) / (now - recent[0][0]))
        recent.append((now, used))
        self.low = used if self.low is None else min(self.low, used)
        threshold = self.threshold(used, available)
        ahead = used + self.rate * (next_reading_s + REACTION_S)
        return used - self.low >= GROWTH_MARGIN and (used >= threshold or ahead >= threshold)

    def still_past(self, used: int, available: int | None) -> bool:
        """Whether *used*, a stricter reading of the same moment, is past the threshold.

        No look ahead: the rate comes from the readings this one corrects (a fork
        looks like growth); real growth is confirmed a reading later.
        """
        return used >= self.threshold(used, available)

    def interval(self, used: int, available: int | None, busy_interval: float) -> float:
        """How long until the guard reads again during a guarded cell."""
        headroom = self.threshold(used, available) - used
        reach_s = headroom / max(MAX_GROWTH, self.rate) - REACTION_S  # the soonest it could be crossed
        return min(busy_interval, max(FAST_INTERVAL_S, reach_s))


__all__ = [
    "DEFAULT_FRACTION",
    "FAST_INTERVAL_S",
    "GROWTH_MARGIN",
    "MAX_GROWTH",
    "RATE_WINDOW_S",
    "REACTION_S",
    "SIGNAL",
    "Guard",
    "resolve_limit",
]
