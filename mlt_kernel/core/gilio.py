"""Short system calls made without letting go of the GIL.

``os.write`` and ``os.pread`` release the GIL around the call. For the few
microseconds it takes to append a journal line or read ``/proc/self/statm``
that is a bad trade in a kernel: while a cell starts and ends, the kernel's
other threads (IOPub, the history writer, the heartbeat) are ready to run, so
each release hands them the GIL and the cell's thread waits for it to come
back — measured at tens of microseconds per call, several times the call
itself. Here the same libc functions are called through ``ctypes.PyDLL``,
which keeps the GIL, so a recorded cell costs what its system calls cost.

Only for calls that cannot block for long: regular files, ``/proc`` and
non-blocking pipes. Where libc cannot be loaded the ``os`` functions are used.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc: ctypes.PyDLL | None
try:
    _libc = ctypes.PyDLL(None, use_errno=True)
    _write = _libc.write
    _write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    _write.restype = ctypes.c_ssize_t
    _pread = _libc.pread
    _pread.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)
    _pread.restype = ctypes.c_ssize_t
except (OSError, AttributeError):  # no libc to load (a static or unusual build)
    _libc = None


def _raise() -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def write(fd: int, data: bytes) -> int:
    """``os.write`` holding the GIL; returns the bytes written."""
    if _libc is None:
        return os.write(fd, data)
    while True:
        n: int = _write(fd, data, len(data))
        if n >= 0:
            return n
        if ctypes.get_errno() != errno.EINTR:
            _raise()


def pread(fd: int, size: int, offset: int = 0) -> bytes:
    """``os.pread`` holding the GIL."""
    if _libc is None:
        return os.pread(fd, size, offset)
    buf = ctypes.create_string_buffer(size)
    while True:
        n = _pread(fd, buf, size, offset)
        if n >= 0:
            return buf.raw[:n]
        if ctypes.get_errno() != errno.EINTR:
            _raise()
