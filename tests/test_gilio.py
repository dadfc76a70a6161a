"""The GIL-holding system calls behave like the ``os`` functions they replace."""

from __future__ import annotations

import os

import pytest

from mlt_kernel.core import gilio


def test_write_and_pread_a_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        assert gilio.write(fd, b'{"a":1}\n') == 8
        assert gilio.write(fd, b'{"b":2}\n') == 8
    finally:
        os.close(fd)
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    fd = os.open(path, os.O_RDONLY)
    try:
        assert gilio.pread(fd, 4, 8) == b'{"b"'
        assert gilio.pread(fd, 100, 0) == path.read_bytes()
        assert gilio.pread(fd, 10, 100) == b""
    finally:
        os.close(fd)


def test_errors_are_the_os_exceptions():
    r, w = os.pipe()
    os.set_blocking(w, False)

    def fill() -> None:  # a non-blocking write fails at once when the pipe is full
        while True:
            gilio.write(w, b"x" * 4096)

    with pytest.raises(BlockingIOError):
        fill()
    os.close(r)
    with pytest.raises(BrokenPipeError):
        gilio.write(w, b"x")
    os.close(w)
    with pytest.raises(OSError) as bad:
        gilio.write(w, b"x")
    assert bad.value.errno == 9  # EBADF


def test_proc_self_reads():
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        assert int(gilio.pread(fd, 128).split()[1]) > 0
    finally:
        os.close(fd)
