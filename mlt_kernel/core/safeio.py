"""Opening files of a shared experiment folder, which is untrusted input.

Anyone with write access to a shared folder chooses its file names, and can
put a symbolic link, a FIFO or a huge file where MLTrack expects a plot, a
note or a journal. Every read of a file from the folder goes through here:

- **never through a symbolic link**: below the folder a path is walked one
  component at a time, each opened with ``O_NOFOLLOW`` relative to the one
  before (``dir_fd``), so a link anywhere below the folder — ``plots/`` itself
  or the file — is refused, and swapping a folder for a link between a check
  and the open changes nothing. The experiment folder itself is the user's
  choice and may be reached through links;
- **regular files only**: ``lstat`` before opening (a device is never opened),
  then ``O_NONBLOCK`` (a FIFO cannot block the open) and ``fstat`` on the
  descriptor must agree: a regular file, the very one ``lstat`` saw;
- **bounded reads**: a read takes a limit and raises :class:`FileTooLargeError`
  past it, whatever the file's size claims (``/proc`` files say 0).

Refusals raise :class:`UnsafeFileError`; both errors subclass ``OSError``, so a
caller that already skips unreadable files skips these too.

The limits on what is read from a folder are defined here, once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from mlt_kernel.core.errors import FileTooLargeError, UnsafeFileError

#: Largest note, and largest Markdown block of a document (UTF-8 bytes): notes
#: are prose, and rendering a bigger text would stall every page showing it.
MAX_NOTE_BYTES = 1 << 20
#: Largest plot file recorded by the kernel, or embedded in a page, a document or an export.
MAX_PLOT_BYTES = 64 << 20
#: Largest journal line; a longer one is skipped with a ``DamagedFileWarning``
#: (see ``mlt_kernel.store.journal``). Real records (a session's provenance, a cell's
#: code, a search's ``cv_results_``, curves of at most 512 points) stay far below it.
MAX_JOURNAL_LINE_BYTES = 16 << 20

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_READ_BLOCK = 1 << 20
#: Why a link is refused (also in the kernel log's warnings).
LINK = "a symbolic link (links in a shared folder are never followed)"


def _refuse(path: str | os.PathLike[str], why: str) -> UnsafeFileError:
    return UnsafeFileError(os.fspath(path), why)


def _kind(mode: int, wanted: str = "a regular file") -> str:
    """Why a file of *mode* is refused where *wanted* was expected."""
    if stat.S_ISLNK(mode):
        return LINK
    if stat.S_ISDIR(mode):
        return f"a folder, not {wanted}"
    if stat.S_ISREG(mode):
        return f"a file, not {wanted}"
    return f"not {wanted} (a FIFO, socket or device)"


def parts_below(relative: str | os.PathLike[str]) -> tuple[str, ...]:
    """The components of *relative*, a path that must stay below its folder.

    Raises:
        UnsafeFileError: an absolute path, ``..``, or nothing at all.
    """
    text = os.fspath(relative)
    path = PurePosixPath(text)
    if path.is_absolute() or "\x00" in text:
        raise _refuse(text, "an absolute path where a path inside the folder was expected")
    parts = tuple(p for p in path.parts if p != ".")
    if not parts or ".." in parts:
        raise _refuse(text, "a path that leaves its folder")
    return parts


def _open_folder(root: str | os.PathLike[str], parts: tuple[str, ...]) -> int:
    """A descriptor of *root* / *parts*, each part opened without following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            try:
                inner = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = os.path.join(os.fspath(root), *parts[: i + 1])
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    raise _refuse(where, _kind(st.st_mode, "a folder")) from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | os.PathLike[str], *, beneath: str | os.PathLike[str] | None = None) -> int:
    """A read-only descriptor of the regular file *path*, opened without following links.

    With *beneath*, *path* is relative to that folder and no component below
    it may be a link; without, only the last component is checked (the caller
    checked the folders, or they are the user's own).

    Raises:
        UnsafeFileError: a link, not a regular file, or a path leaving *beneath*.
        FileNotFoundError: no such file.
    """
    if beneath is None:
        folder_fd, name, shown = None, os.fspath(path), os.fspath(path)
    else:
        parts = parts_below(path)
        folder_fd = _open_folder(beneath, parts[:-1])
        name, shown = parts[-1], os.path.join(os.fspath(beneath), *parts)
    try:
        before = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if not stat.S_ISREG(before.st_mode):  # a device is never opened: opening one can act
            raise _refuse(shown, _kind(before.st_mode))
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=folder_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a link since the lstat
                raise _refuse(shown, LINK) from None
            raise
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise _refuse(shown, "replaced while it was being opened")
        return fd
    finally:
        if folder_fd is not None:
            os.close(folder_fd)


@contextlib.contextmanager
def opened(path: str | os.PathLike[str], *, beneath: str | os.PathLike[str] | None = None) -> Iterator[int]:
    """:func:`open_regular` as a context manager that closes the descriptor."""
    fd = open_regular(path, beneath=beneath)
    try:
        yield fd
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, shown: str | os.PathLike[str], what: str = "file") -> bytes:
    """At most *limit* bytes of *fd* from its start; :class:`FileTooLargeError` when there are more."""
    if os.fstat(fd).st_size > limit:
        raise FileTooLargeError(os.fspath(shown), limit, what)
    blocks: list[bytes] = []
    got = 0
    while got <= limit:  # the size may lie (/proc) or grow meanwhile: count what comes
        block = os.pread(fd, min(_READ_BLOCK, limit + 1 - got), got)
        if not block:
            break
        blocks.append(block)
        got += len(block)
    if got > limit:
        raise FileTooLargeError(os.fspath(shown), limit, what)
    return b"".join(blocks)


def read_bytes(
    path: str | os.PathLike[str], limit: int, *, beneath: str | os.PathLike[str] | None = None, what: str = "file"
) -> bytes:
    """The content of the regular file *path*, at most *limit* bytes (see :func:`open_regular`).

    Raises:
        FileTooLargeError: the file holds more than *limit* bytes (names the file and the limit).
        UnsafeFileError: see :func:`open_regular`.
    """
    shown = path if beneath is None else os.path.join(os.fspath(beneath), os.fspath(path))
    with opened(path, beneath=beneath) as fd:
        return read_fd(fd, limit, shown, what)


def read_head(path: str | os.PathLike[str], size: int) -> bytes:
    """The first *size* bytes (or fewer) of the regular file *path*, without following a link."""
    with opened(path) as fd:
        return os.pread(fd, size, 0)


def check_folder(path: str | os.PathLike[str]) -> os.stat_result:
    """The ``lstat`` of *path* when it is a real folder, not a link to one.

    Raises:
        UnsafeFileError: a link, or not a folder.
        FileNotFoundError: no such folder.
    """
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, _kind(st.st_mode, "a folder"))
    return st


def regular_file(root: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path | None:
    """``root / relative`` when it is a regular file reached through no link below *root*, else None.

    For code that hands a path on (to DuckDB, to a page) rather than reading it
    here; read it with ``beneath=root`` to close the gap between this check and
    the read.
    """
    try:
        parts = parts_below(relative)
    except UnsafeFileError:
        return None
    path = Path(root)
    try:
        for part in parts[:-1]:
            path = path / part
            check_folder(path)
        path = path / parts[-1]
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except OSError:
        return None


def is_owned(st: os.stat_result) -> bool:
    """Whether the file of *st* belongs to this process's user (whom deleting it would be up to)."""
    return st.st_uid == os.getuid()


__all__ = [
    "LINK",
    "MAX_JOURNAL_LINE_BYTES",
    "MAX_NOTE_BYTES",
    "MAX_PLOT_BYTES",
    "check_folder",
    "is_owned",
    "open_regular",
    "opened",
    "parts_below",
    "read_bytes",
    "read_fd",
    "read_head",
    "regular_file",
]
