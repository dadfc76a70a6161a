"""Reading ``/proc`` directly, cheaply enough to do it every 50 ms.

The watcher samples the kernel and its descendants twenty times a second while
a cell runs. psutil would cost an object, several files and a ``children()``
walk of all of ``/proc`` per sample; here one sample of one process is one
``pread`` of ``/proc/PID/stat`` on a file descriptor kept open between samples
(~3 µs), which gives the parent pid, the state, the resident set size and the
CPU ticks at once. A kept descriptor also pins the process: once it has exited,
reading fails even if its pid has been reused.

Everything here returns None (or an empty set) where ``/proc`` is not there,
so callers degrade instead of failing on other systems.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: Whether this system has a Linux-style ``/proc``.
AVAILABLE = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if AVAILABLE else 4096
#: Units of ``utime``/``stime`` in ``/proc/PID/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if AVAILABLE else 100

_PF_EXITING = 0x4  # include/linux/sched.h: set as soon as a process starts to exit
_STAT_READ = 1024  # a stat line is ~300 bytes; the command name is at most 64

# A cgroup v1 memory limit of "no limit" is a page-rounded LONG_MAX; anything
# this large is no limit.
_V1_NO_LIMIT = 1 << 60


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What one read of ``/proc/PID/stat`` says about a process."""

    pid: int
    ppid: int
    state: str  #: ``R``, ``S``, ``D``, ``Z`` (zombie: exited, memory already freed) …
    rss_bytes: int
    cpu_ticks: int  #: user + system time, in ``CLOCK_TICKS`` per second
    flags: int = 0  #: the kernel's ``PF_*`` flags

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")

    @property
    def exiting(self) -> bool:
        """Dying or dead: its memory is being (or has been) released and reads as 0."""
        return self.zombie or bool(self.flags & _PF_EXITING)


def parse_stat(pid: int, data: bytes) -> ProcStat | None:
    """Parse the content of ``/proc/PID/stat``; None when it is malformed."""
    # The command name is in parentheses and may itself hold spaces or ')'.
    end = data.rfind(b")")
    if end < 0:
        return None
    fields = data[end + 2 :].split()
    try:
        # Fields after the name, 0-based: 0 state, 1 ppid, 6 flags, 11 utime,
        # 12 stime, 21 rss (pages).
        return ProcStat(
            pid=pid,
            ppid=int(fields[1]),
            state=fields[0].decode("ascii", "replace"),
            rss_bytes=int(fields[21]) * PAGE_SIZE,
            cpu_ticks=int(fields[11]) + int(fields[12]),
            flags=int(fields[6]),
        )
    except (IndexError, ValueError):
        return None


def _read_small(path: str, size: int = 4096) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    """One reading of *pid*, or None when it is gone or not visible."""
    if not AVAILABLE:
        return None
    data = _read_small(f"/proc/{pid}/stat", _STAT_READ)
    return parse_stat(pid, data) if data else None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of *pid* from ``/proc/PID/statm`` (pages × page size)."""
    if not AVAILABLE:
        return None
    data = _read_small(f"/proc/{pid}/statm", 256)
    try:
        return int(data.split()[1]) * PAGE_SIZE if data else None
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The command line of *pid* (``/proc/PID/cmdline``), or None when gone or not visible."""
    if not AVAILABLE:
        return None
    data = _read_small(f"/proc/{pid}/cmdline", 4096)
    if data is None:
        return None
    return [arg.decode("utf-8", "replace") for arg in data.rstrip(b"\0").split(b"\0")] if data else []


def cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of *pid* in clock ticks (``CLOCK_TICKS`` per second)."""
    stat = read_stat(pid)
    return stat.cpu_ticks if stat else None


class StatReader:
    """Reads ``/proc/PID/stat`` of many processes, keeping one descriptor per process.

    ``pread`` on a kept descriptor costs half of open + read + close, and the
    descriptor stays bound to the process it was opened for: after that process
    exits, reading raises ``ESRCH`` instead of describing a newer process that
    reused the pid.
    """

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def read(self, pid: int) -> ProcStat | None:
        """A reading of *pid*, or None once it is gone."""
        if not AVAILABLE:
            return None
        fd = self._fds.get(pid)
        if fd is None:
            try:
                fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._fds[pid] = fd
        try:
            data = os.pread(fd, _STAT_READ, 0)
        except OSError:
            self.forget(pid)
            return None
        stat = parse_stat(pid, data) if data else None
        if stat is None:
            self.forget(pid)
        return stat

    def forget(self, pid: int) -> None:
        """Close the descriptor of *pid* (it exited, or is no longer watched)."""
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def retain(self, pids: set[int]) -> None:
        """Close the descriptors of every process not in *pids*."""
        for pid in [p for p in self._fds if p not in pids]:
            self.forget(pid)

    def close(self) -> None:
        for pid in list(self._fds):
            self.forget(pid)


def _has_children_files() -> bool:
    # /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN (on in the usual
    # distribution kernels, but not everywhere).
    return AVAILABLE and os.path.exists(f"/proc/self/task/{os.getpid()}/children")


_CHILDREN_FILES = _has_children_files()


def _children_by_task_files(pid: int) -> set[int] | None:
    """Direct children of *pid* from its threads' ``children`` files; None when unreadable."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out: set[int] = set()
    for tid in tids:
        data = _read_small(f"/proc/{pid}/task/{tid}/children", 65536)
        if data:
            out.update(int(c) for c in data.split())
    return out


def _parent_map() -> dict[int, list[int]]:
    """``ppid -> [pid, …]`` of every visible process (one read per process)."""
    tree: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return tree
    for name in entries:
        if not name.isdigit():
            continue
        stat = read_stat(int(name))
        if stat is not None:
            tree.setdefault(stat.ppid, []).append(stat.pid)
    return tree


def children_of(pid: int, *, walk: bool | None = None) -> set[int]:
    """Every descendant of *pid* (children, their children, …); empty when none or not visible.

    Uses the ``/proc/PID/task/TID/children`` files where the kernel has them:
    the cost then grows with the threads and descendants of *pid* only, not
    with the number of processes on the machine. Otherwise (or with
    ``walk=True``) it reads the parent pid of every process in ``/proc`` once
    and follows the tree. Both are snapshots: a process forked meanwhile shows
    up on the next call.
    """
    if not AVAILABLE:
        return set()
    if walk is None:
        walk = not _CHILDREN_FILES
    found: set[int] = set()
    if walk:
        tree = _parent_map()
        stack = list(tree.get(pid, ()))
        while stack:
            child = stack.pop()
            if child not in found and child != pid:
                found.add(child)
                stack.extend(tree.get(child, ()))
        return found
    stack = [pid]
    while stack:
        kids = _children_by_task_files(stack.pop())
        for child in kids or ():
            if child not in found and child != pid:
                found.add(child)
                stack.append(child)
    return found


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """What the memory controller of a cgroup shows."""

    limit_bytes: int | None  #: None when unlimited
    oom_kills: int | None  #: processes the OOM killer killed in it so far; None when not shown


def cgroup_memory_dir(pid: int | str = "self") -> Path | None:
    """The folder of *pid*'s memory cgroup (v2, else v1), or None when not visible."""
    if not AVAILABLE:
        return None
    data = _read_small(f"/proc/{pid}/cgroup", 65536)
    if not data:
        return None
    v1: str | None = None
    v2: str | None = None
    for line in data.decode("utf-8", "replace").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    # Inside a container the cgroup is usually mounted as the root of the
    # hierarchy, so the path /proc shows does not exist below the mount: then
    # the mount root is the cgroup.
    candidates: list[tuple[Path, str]] = []
    if v1 is not None:  # the memory controller is on v1 (also in "hybrid" setups)
        base = Path("/sys/fs/cgroup/memory")
        candidates = [(base / v1.lstrip("/"), "memory.limit_in_bytes"), (base, "memory.limit_in_bytes")]
    elif v2 is not None:
        base = Path("/sys/fs/cgroup")
        candidates = [(base / v2.lstrip("/"), "memory.max"), (base, "memory.max")]
    for folder, marker in candidates:
        if (folder / marker).is_file():
            return folder
    return None


def read_cgroup_memory(folder: Path) -> CgroupMemory | None:
    """Limit and OOM-kill count of the memory cgroup in *folder* (v2 or v1)."""
    if (folder / "memory.max").exists():
        limit_text = _read_small(str(folder / "memory.max"), 64)
        events = _read_small(str(folder / "memory.events"), 4096)
        if limit_text is None:
            return None
        limit_text = limit_text.strip()
        limit = None if limit_text == b"max" else _to_int(limit_text)
    else:
        limit_text = _read_small(str(folder / "memory.limit_in_bytes"), 64)
        events = _read_small(str(folder / "memory.oom_control"), 4096)
        if limit_text is None:
            return None
        limit = _to_int(limit_text.strip())
        if limit is not None and limit >= _V1_NO_LIMIT:
            limit = None
    return CgroupMemory(limit_bytes=limit, oom_kills=_oom_kills(events))


def cgroup_memory(pid: int | str = "self") -> CgroupMemory | None:
    """Memory limit and OOM-kill count of *pid*'s cgroup, or None when not visible."""
    folder = cgroup_memory_dir(pid)
    return read_cgroup_memory(folder) if folder is not None else None


@dataclass(frozen=True, slots=True)
class MemInfo:
    """The machine's memory (``/proc/meminfo``)."""

    total_bytes: int
    available_bytes: int  #: what can be had without swapping (``MemAvailable``)


def read_meminfo() -> MemInfo | None:
    """The machine's total and available memory, or None where ``/proc/meminfo`` says neither."""
    data = _read_small("/proc/meminfo", 16384) if AVAILABLE else None
    values: dict[bytes, int] = {}
    for line in (data or b"").splitlines():
        key, _, rest = line.partition(b":")
        if key in (b"MemTotal", b"MemAvailable"):
            number = _to_int(rest.split()[0]) if rest.split() else None
            if number is not None:
                values[key] = number * 1024  # kB
    if len(values) < 2:
        return None
    return MemInfo(values[b"MemTotal"], values[b"MemAvailable"])


def pss_bytes(pid: int) -> int | None:
    """The proportional set size of *pid* (``smaps_rollup``): pages shared with other
    processes (a fork's copy-on-write pages) counted once across them. None where not shown."""
    data = _read_small(f"/proc/{pid}/smaps_rollup", 8192) if AVAILABLE else None
    for line in (data or b"").splitlines():
        if line.startswith(b"Pss:"):
            parts = line.split()
            value = _to_int(parts[1]) if len(parts) > 1 else None
            return value * 1024 if value is not None else None
    return None


def catches(pid: int, signum: int) -> bool | None:
    """Whether *pid* has a handler for signal *signum* (``SigCgt``); None where not shown."""
    data = _read_small(f"/proc/{pid}/status", 16384) if AVAILABLE else None
    for line in (data or b"").splitlines():
        if line.startswith(b"SigCgt:"):
            try:
                mask = int(line.split()[1], 16)
            except (IndexError, ValueError):
                return None
            return bool(mask >> (signum - 1) & 1)
    return None


def _to_int(text: bytes) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _oom_kills(events: bytes | None) -> int | None:
    # v2 memory.events and v1 memory.oom_control both have an "oom_kill N" line
    # (v1 since Linux 4.13).
    if not events:
        return None
    for line in events.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"oom_kill":
            return _to_int(value.strip())
    return None


__all__ = [
    "AVAILABLE",
    "CLOCK_TICKS",
    "PAGE_SIZE",
    "CgroupMemory",
    "MemInfo",
    "ProcStat",
    "StatReader",
    "catches",
    "cgroup_memory",
    "cgroup_memory_dir",
    "children_of",
    "cmdline",
    "cpu_ticks",
    "parse_stat",
    "pss_bytes",
    "read_cgroup_memory",
    "read_meminfo",
    "read_stat",
    "rss_bytes",
]
