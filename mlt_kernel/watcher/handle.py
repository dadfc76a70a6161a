"""The kernel's end of the watcher: starts the process and tells it what happens.

The lines it writes are built by ``mlt_kernel.watcher.protocol``; the per-cell
ones cost one non-blocking ``os.write`` each and never raise.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import threading
from typing import Any

from mlt_kernel.core import gilio
from mlt_kernel.core.children import python_command
from mlt_kernel.watcher import protocol

log = logging.getLogger("mlt_kernel.watcher")

#: The pipe's capacity asked for (Linux; 64 KiB otherwise): room for the
#: messages of a burst of hundreds of quick cells between two readings.
_PIPE_SIZES = (1 << 18,)

#: This process's pid, kept current across forks: os.getpid() is a system call,
#: and the handle asks on every message whether it runs in a forked child.
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class WatcherHandle:
    """The kernel's end of the watcher: starts it and tells it what happens.

    The per-cell methods cost one non-blocking ``os.write`` of a short line and
    never raise: a watcher that is gone or stuck costs the kernel nothing but
    one line in its log.
    """

    def __init__(self, process: subprocess.Popen[bytes], guard_fd: int | None = None) -> None:
        self._process = process
        assert process.stdin is not None
        self._fd = process.stdin.fileno()
        os.set_blocking(self._fd, False)
        for size in _PIPE_SIZES if hasattr(fcntl, "F_SETPIPE_SZ") else ():
            try:
                fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, size)
                break
            except OSError:  # above /proc/sys/fs/pipe-max-size
                continue
        self._owner = os.getpid()
        self._complained = False
        #: Where the memory guard's lines come from (the watcher's stdout), when it has one.
        self._guard_fd = guard_fd
        if guard_fd is not None:
            os.set_blocking(guard_fd, False)

    @classmethod
    def start(
        cls,
        kernel_pid: int,
        session_id: str,
        *,
        busy_interval: float = protocol.BUSY_INTERVAL_S,
        idle_interval: float = protocol.IDLE_INTERVAL_S,
        memory_limit: int | None = None,
        memory_guard: float = 0.0,
    ) -> WatcherHandle:
        """Start a watcher of *kernel_pid* for *session_id*; returns at once.

        With *memory_guard* > 0 the watcher stops a guarded cell at that share
        of *memory_limit* (None: the cgroup's, else the machine's) by sending
        the kernel ``guard.SIGNAL``: only ask for it once the kernel handles that
        signal (``mlt_kernel.recording.guard``).
        """
        argv = python_command(
            "mlt_kernel.watcher",
            *("--pid", str(kernel_pid), "--session", session_id),
            *("--busy-interval", repr(float(busy_interval)), "--idle-interval", repr(float(idle_interval))),
            *("--memory-limit", str(int(memory_limit or 0)), "--memory-guard", repr(float(memory_guard))),
        )
        # Same process group as the kernel (start_new_session=False): it goes
        # when the group is killed, and it ignores the group's SIGINT itself.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # the memory guard's lines (protocol.guard_fired)
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=False,
        )
        assert process.stderr is not None
        threading.Thread(target=_forward_log, args=(process.stderr,), name="mlt-watcher-log", daemon=True).start()
        assert process.stdout is not None
        return cls(process, guard_fd=process.stdout.fileno())

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def _send_bytes(self, data: bytes) -> bool:
        """Write one message (a whole line); whether it was sent."""
        if _PID[0] != self._owner:  # a forked worker of the kernel: not ours to tell
            return False
        if len(data) > protocol.PIPE_BUF:
            self._complain(f"message of {len(data)} bytes not sent (more than {protocol.PIPE_BUF})")
            return False
        try:
            gilio.write(self._fd, data)
        except BlockingIOError:
            self._complain("the watcher is not reading; a message was dropped")
        except OSError as exc:  # BrokenPipeError: it has exited; EBADF: stopped
            self._complain(f"the watcher is gone ({exc.strerror or exc})")
        else:
            return True
        return False

    def _complain(self, why: str) -> None:
        if not self._complained:
            self._complained = True
            log.warning("resource watcher: %s", why)

    def set_experiment(self, path: str | os.PathLike[str]) -> None:
        """Tell the watcher the experiment folder (it writes nothing until it has one)."""
        try:
            self._send_bytes(protocol.experiment(path))
        except (TypeError, ValueError) as exc:
            self._complain(f"bad experiment folder {path!r} ({exc})")

    def cell_started(self, cell_seq: int, run_id: str | None, row: bytes | None = None) -> bool:
        """A cell began; *row*, its journal line (status ``running``), is the watcher's to write.

        Returns whether the watcher took *row*. When it did not (a line too
        long for one message, a watcher gone or stuck), the caller writes the
        row itself; the start is still told when it fits without the row.
        """
        try:
            line, with_row = protocol.cell_started(cell_seq, run_id, row)
        except (TypeError, ValueError) as exc:
            self._complain(f"bad cell {cell_seq!r} ({exc})")
            return False
        return self._send_bytes(line) and with_row

    def cell_finished(self, cell_seq: int) -> None:
        """The cell ended; the watcher writes its ``cell_usage`` record."""
        try:
            self._send_bytes(protocol.cell_ended(cell_seq))
        except (TypeError, ValueError) as exc:
            self._complain(f"bad cell {cell_seq!r} ({exc})")

    def guard_off(self) -> None:
        """The cell that just started runs without the memory guard (``# mlt: guard off``)."""
        self._send_bytes(protocol.GUARD_OFF)

    def guard_fired(self) -> protocol.GuardFired | None:
        """What the memory guard read when it last stopped a cell, if it did since the last call.

        Called from the kernel's signal handler: one non-blocking read.
        """
        if self._guard_fd is None:
            return None
        try:
            data = os.read(self._guard_fd, 65536)
        except OSError:  # BlockingIOError: nothing written
            return None
        fired = None
        for line in data.decode("ascii", "replace").splitlines():
            fired = protocol.parse_guard_fired(line) or fired
        return fired

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the watcher to write its last records and exit; kill it after *timeout*."""
        if os.getpid() != self._owner:
            return
        if self._process.poll() is None:
            self._send_bytes(protocol.STOP)
        if self._process.stdout is not None:
            try:
                self._process.stdout.close()
            except OSError:
                pass
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("resource watcher did not stop within %.1f s; killed", timeout)
            self._process.kill()
            try:
                self._process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass


def _forward_log(stream: Any) -> None:
    """Re-log the watcher's log lines (``LEVELNO LOGGER MESSAGE``) in the kernel."""
    try:
        for raw in stream:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            parsed = protocol.parse_log_line(text)
            if parsed is not None:
                level, name, message = parsed
                logging.getLogger(name).log(level, "%s", message)
            elif text.strip():
                log.warning("resource watcher: %s", text)
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass
