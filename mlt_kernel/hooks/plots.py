"""Figures a cell saves or shows become ``plots`` records.

Three sources, each almost free when unused:

1. **matplotlib's ``savefig``, anywhere on disk.** matplotlib is never imported
   here. As soon as the user's code has imported ``matplotlib.figure`` (a
   post-import hook, ``core.imports``: also in the cell that first imports it),
   ``Figure.savefig`` is wrapped (once; the original is kept, called unchanged,
   and restored when the session ends) so that it remembers the paths it
   wrote. ``finish_cell`` records them.
2. **``{EXP}/plots/``, whatever wrote there.** Files that appeared or changed
   during the cell are recorded. The folder is listed only when its mtime moved;
   the text notes in it (``plots/roc.txt`` is the note of ``plots/roc.png``) are
   also stat-ed each cell, because an edit in place leaves the folder's mtime alone.
3. **Inline figures.** While a cell runs, a hook on ipykernel's display publisher
   and display hook (their public ``register_hook``; thread-local, so only the
   cell's own outputs pass through it) keeps each ``image/png`` output; it never
   changes or holds back a message. After the cell the images are saved as
   ``plots/{run name or 'cell'}-{execution_count}-{n}.png``.

Records carry the cell (``session_id, cell_seq``) and its run. A plot's id is
derived from its path, so saving the same file again updates its row. A cell
that plots nothing costs one ``lstat`` of ``plots/`` plus one per text note there.
The hook writes through the cell's session (``CellContext.session``).

The folder may be shared, so what lies in ``plots/`` is untrusted: links are
never followed — a link in ``plots/`` (to a file, ``/proc/self/environ``, a
folder) is skipped, and so is ``plots/`` itself when it is a link — and only
regular files are read, at most ``safeio.MAX_PLOT_BYTES`` of a plot and
``MAX_TEXT_NOTE_BYTES`` of a note (``mlt_kernel.core.safeio``). Each refusal is one
warning in the kernel log, once per file and session; nothing of it is recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.errors import FileTooLargeError, UnsafeFileError
from mlt_kernel.core.imports import PostImportFinder
from mlt_kernel.core.names import PLOT_SUFFIXES
from mlt_kernel.core.schema import PLOTS
from mlt_kernel.hooks import CellContext, Hook, register
from mlt_kernel.store.journal import now_us
from mlt_kernel.tracking.notes import record_text_note

if TYPE_CHECKING:
    from mlt_kernel.hooks import HookSession

NOTE_SUFFIX = ".txt"

# File timestamps come from a coarse clock (a few ms behind time.time()), and some
# shared file systems keep whole seconds: a file counts as written during the
# cell when its mtime is at most this much before the cell started.
_MTIME_SLACK_NS = 1_000_000_000
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

#: ``(absolute path, format)`` of each ``Figure.savefig`` call not yet recorded.
_saved: list[tuple[str, str | None]] = []


def _recording_savefig(original: Any) -> Any:
    """``Figure.savefig`` that also remembers where it wrote; never changes the result."""

    @functools.wraps(original)
    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, fname, *args, **kwargs)
        with contextlib.suppress(Exception):  # recording must never break savefig
            if isinstance(fname, (str, os.PathLike)):
                _saved.append((os.path.abspath(os.fsdecode(fname)), kwargs.get("format")))
        return result

    savefig.__mlt_original__ = original  # type: ignore[attr-defined]
    return savefig


def wrap_savefig() -> bool:
    """Wrap ``matplotlib.figure.Figure.savefig`` if the user imported matplotlib; idempotent."""
    module = sys.modules.get("matplotlib.figure")
    figure = getattr(module, "Figure", None)
    current = getattr(figure, "__dict__", {}).get("savefig")
    if current is None:
        return False
    if not hasattr(current, "__mlt_original__"):
        figure.savefig = _recording_savefig(current)  # type: ignore[union-attr]
    return True


def _wrap_now(_module: Any) -> None:
    wrap_savefig()


def unwrap_savefig() -> None:
    """Put the original ``Figure.savefig`` back."""
    module = sys.modules.get("matplotlib.figure")
    figure = getattr(module, "Figure", None)
    current = getattr(figure, "__dict__", {}).get("savefig")
    original = getattr(current, "__mlt_original__", None)
    if original is not None:
        figure.savefig = original  # type: ignore[union-attr]


def _saved_path(path: str, fmt: str | None) -> Path | None:
    """The file ``savefig(path, format=fmt)`` wrote (matplotlib adds the default suffix)."""
    if os.path.isfile(path):
        return Path(path)
    matplotlib = sys.modules.get("matplotlib")
    if fmt is None and not os.path.splitext(path)[1] and matplotlib is not None:
        candidate = f"{path}.{matplotlib.rcParams['savefig.format']}"
        if os.path.isfile(candidate):
            return Path(candidate)
    return None


class _InlineImages:
    """Display-publisher hook: keeps the ``image/png`` of each output while a recorded
    cell runs (``active``), passes every message on unchanged."""

    def __init__(self) -> None:
        self.images: list[str] = []
        self.active = False

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        if not self.active:
            return msg
        with contextlib.suppress(Exception):
            if msg["header"]["msg_type"] in ("display_data", "execute_result"):
                png = msg["content"]["data"].get("image/png")
                if isinstance(png, str):
                    self.images.append(png)
        return msg


def _ignore(message: str) -> None:
    """Where refusals go when no kernel log is at hand."""


@dataclass
class _PlotsFolder:
    """What ``{EXP}/plots/`` held when last looked at."""

    path: Path
    #: Writes one line to the kernel log (``session.log.warning``).
    warn: Callable[[str], None] = _ignore
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  #: name -> (mtime_ns, size)
    notes: list[str] = field(default_factory=list)  #: the ``.txt`` names among ``files``
    listed_mtime_ns: int | None = None  #: the folder's mtime when listed; None: list next time
    refused: set[str] = field(default_factory=set)  #: what was refused (and told) once already

    def refuse(self, what: str, reason: str) -> None:
        """Say once per session, in the kernel log, that *what* is not recorded and why."""
        if what not in self.refused:
            self.refused.add(what)
            self.warn(f"MLTrack: {what}: {reason}; not recorded")

    def changes(self, since_ns: int) -> list[str]:
        """Files that appeared or changed since the last look and were written after *since_ns*."""
        try:
            st = safeio.check_folder(self.path)
        except UnsafeFileError as exc:
            self.refuse(exc.path, exc.reason)
            return []
        except OSError:
            return []
        if st.st_mtime_ns != self.listed_mtime_ns:
            now = self._list(st)
        else:  # only the notes can have changed
            now = {}
            for name in self.notes:
                sig = _signature(os.path.join(self.path, name))
                if sig is not None:
                    now[name] = sig
        changed = [n for n, sig in now.items() if self.files.get(n) != sig and sig[0] >= since_ns]
        self.files.update(now)
        return sorted(changed)

    def _list(self, st: os.stat_result) -> dict[str, tuple[int, int]]:
        listing: dict[str, tuple[int, int]] = {}
        with contextlib.suppress(OSError), os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    est = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(est.st_mode):
                        listing[entry.name] = (est.st_mtime_ns, est.st_size)
                    elif stat.S_ISLNK(est.st_mode):
                        self.refuse(os.path.join(self.path, entry.name), safeio.LINK)
                    elif not stat.S_ISDIR(est.st_mode):  # a sub-folder is simply not a plot
                        self.refuse(os.path.join(self.path, entry.name), "not a regular file")
        self.files = {n: s for n, s in self.files.items() if n in listing}
        self.notes = [n for n in listing if n.endswith(NOTE_SUFFIX)]
        # A folder changed within the clock's resolution of now may change again
        # without its mtime moving: trust that mtime only once it is old.
        fresh = time.time_ns() - st.st_mtime_ns < _MTIME_SLACK_NS
        self.listed_mtime_ns = None if fresh else st.st_mtime_ns
        return listing

    def remember(self, name: str) -> None:
        """Note a file written by us, so that the next look does not record it again."""
        sig = _signature(os.path.join(self.path, name))
        if sig is not None:
            self.files[name] = sig


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if stat.S_ISREG(st.st_mode) else None


@register
class PlotsHook(Hook):
    """Records the figures of each cell (see the module docs)."""

    name = "plots"

    def __init__(self) -> None:
        self._folders: dict[Path, _PlotsFolder] = {}
        self._capture: tuple[_InlineImages, list[Any]] | None = None
        self._import_hook: PostImportFinder | None = None

    # -- around the cell ---------------------------------------------------------
    def pre_cell(self, cell: CellContext) -> None:
        session = cell.session
        if session is None:
            return
        cell.scratch["plots_started_ns"] = time.time_ns()
        if self._import_hook is None:  # savefig wrapped the moment matplotlib.figure is imported
            self._import_hook = PostImportFinder(lambda name: name == "matplotlib.figure", _wrap_now).install()
        wrap_savefig()
        _saved.clear()  # saved between cells, e.g. by a skipped cell: not this cell's
        folder = cell.scratch.get("exp_path") or session.wanted_path()
        if folder not in self._folders:
            state = self._folders[folder] = _PlotsFolder(folder / layout.PLOTS, session.log.warning)
            state.changes(since_ns=sys.maxsize)  # what is there already is not this cell's
        self._start_capture(session.shell)

    def post_cell(self, cell: CellContext) -> None:
        capture = self._stop_capture()
        if capture is not None and capture.images:
            cell.scratch["plots_inline"], capture.images = capture.images, []

    def finish_cell(self, cell: CellContext) -> None:
        session = cell.session
        started = cell.scratch.get("plots_started_ns")
        if session is None or started is None:
            return
        folder = cell.scratch.get("exp_path") or session.wanted_path()
        state = self._folders.get(folder)
        if state is None:  # EXP_PATH was set by this cell: keep only what it wrote
            state = self._folders[folder] = _PlotsFolder(folder / layout.PLOTS, session.log.warning)
        self._record_saved(session, cell, folder, state)
        self._record_folder(session, cell, folder, state, started - _MTIME_SLACK_NS)
        if cell.scratch.get("plots_inline"):
            self._record_inline(session, cell, folder, state, cell.scratch["plots_inline"])

    def close(self) -> None:
        self._unregister()
        if self._import_hook is not None:
            self._import_hook.uninstall()
        unwrap_savefig()

    # -- inline capture ----------------------------------------------------------
    def _start_capture(self, shell: Any) -> None:
        # Registered once per shell, switched on per cell: registering costs
        # more than the cell's whole record.
        if self._capture is None:
            images = _InlineImages()
            targets = []
            for target in (getattr(shell, "display_pub", None), getattr(shell, "displayhook", None)):
                hook = getattr(target, "register_hook", None)
                if callable(hook) and callable(getattr(target, "unregister_hook", None)):
                    hook(images)
                    targets.append(target)
            self._capture = (images, targets)
        images = self._capture[0]
        images.images = []
        images.active = True

    def _stop_capture(self) -> _InlineImages | None:
        if self._capture is None:
            return None
        images = self._capture[0]
        images.active = False
        return images

    def _unregister(self) -> None:
        if self._capture is None:
            return
        images, targets = self._capture
        self._capture = None
        for target in targets:
            with contextlib.suppress(Exception):
                target.unregister_hook(images)

    # -- recording ---------------------------------------------------------------
    def _record_saved(self, session: HookSession, cell: CellContext, folder: Path, state: _PlotsFolder) -> None:
        calls = list(_saved)
        del _saved[: len(calls)]
        paths = {}
        for raw, fmt in calls:
            path = _saved_path(raw, fmt)
            if path is not None:
                paths[str(path)] = path
        for path in paths.values():
            _record_plot(session, cell, folder, state, path, "savefig")
            if path.parent == state.path:
                state.remember(path.name)

    def _record_folder(
        self, session: HookSession, cell: CellContext, folder: Path, state: _PlotsFolder, since_ns: int
    ) -> None:
        for name in state.changes(since_ns):
            suffix = os.path.splitext(name)[1].lower()
            if suffix in PLOT_SUFFIXES:
                _record_plot(session, cell, folder, state, state.path / name, "savefig")
            elif suffix == NOTE_SUFFIX:
                try:
                    record_text_note(session, folder, name, _cell_of(session, cell))
                except (UnsafeFileError, FileTooLargeError) as exc:  # swapped for a link since the listing, or big
                    state.refuse(exc.path, exc.reason)

    def _record_inline(
        self, session: HookSession, cell: CellContext, folder: Path, state: _PlotsFolder, images: list[str]
    ) -> None:
        run = session.run
        run_name = cell.record.get("run_name") or (run.name if run is not None else "")
        stem = f"{_UNSAFE_NAME.sub('_', run_name).strip('._') or 'cell'}-{cell.record.get('execution_count')}"
        state.path.mkdir(parents=True, exist_ok=True)
        try:
            safeio.check_folder(state.path)  # never write through a linked plots/ either
        except UnsafeFileError as exc:
            state.refuse(exc.path, exc.reason)
            return
        seen: set[str] = set()
        for encoded in images:
            try:
                data = base64.b64decode(encoded, validate=False)
            except (binascii.Error, ValueError):
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue  # the same figure shown twice
            seen.add(digest)
            path = _write_new(state.path, f"{stem}-{len(seen)}", data, digest)
            _record_plot(session, cell, folder, state, path, "inline")
            state.remember(path.name)


def _write_new(folder: Path, stem: str, data: bytes, digest: str) -> Path:
    """Write *data* as ``{stem}.png`` without replacing another file (``{stem}_2.png``, …)."""
    for attempt in range(1, 1000):
        path = folder / (f"{stem}.png" if attempt == 1 else f"{stem}_{attempt}.png")
        try:
            with open(path, "xb") as f:
                f.write(data)
            return path
        except FileExistsError:
            try:  # "xb" never follows a link; reading what is there must not either
                if _size_and_sha256(path, None)[1] == digest:
                    return path  # this very image is already there
            except OSError:
                continue  # a link or some other file: not ours; the next name
    raise FileExistsError(f"no free file name for {stem}.png in {folder}")


def _size_and_sha256(path: Path, exp: Path | None) -> tuple[int, str]:
    """Size and SHA-256 of the plot file *path*, read without following a link.

    A file directly in ``{exp}/plots/`` is opened below *exp* (``plots/`` may not
    be a link either); elsewhere it is a path the user's own ``savefig`` chose.

    Raises:
        UnsafeFileError: a link or not a regular file.
        FileTooLargeError: larger than ``safeio.MAX_PLOT_BYTES``.
    """
    if exp is not None and os.path.dirname(os.path.abspath(path)) == os.path.abspath(exp / layout.PLOTS):
        opened = safeio.opened(f"{layout.PLOTS}/{path.name}", beneath=exp)
    else:
        opened = safeio.opened(path)
    with opened as fd:
        size = os.fstat(fd).st_size
        if size > safeio.MAX_PLOT_BYTES:
            raise FileTooLargeError(str(path), safeio.MAX_PLOT_BYTES, "plot")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return size, hashlib.file_digest(f, "sha256").hexdigest()


def _cell_of(session: HookSession, cell: CellContext) -> dict[str, Any]:
    run = session.run
    return {**cell.record, "run_id": cell.record.get("run_id") or (run.run_id if run is not None else None)}


def _record_plot(
    session: HookSession,
    cell: CellContext,
    folder: Path,
    state: _PlotsFolder,
    path: Path,
    source: str,
) -> None:
    """Append the ``plots`` record of *path* (its id follows from where it lies), unless it is refused."""
    try:
        size, digest = _size_and_sha256(path, folder)
    except (UnsafeFileError, FileTooLargeError) as exc:
        state.refuse(exc.path, exc.reason)
        return
    except OSError:
        return  # removed again before we looked
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if real.startswith(root + os.sep):
        rel = Path(os.path.relpath(real, root)).as_posix()
        plots_prefix = layout.PLOTS + "/"
        file = rel[len(plots_prefix) :] if rel.startswith(plots_prefix) else real
    else:
        rel = file = real
    info = _cell_of(session, cell)
    session.write(
        PLOTS.name,
        {
            "plot_id": "p-" + hashlib.sha1(rel.encode("utf-8")).hexdigest()[:20],
            "file": file,
            "path": rel,
            "size_bytes": size,
            "sha256": digest,
            "session_id": session.session_id,
            "cell_seq": info.get("cell_seq"),
            "run_id": info.get("run_id"),
            "source": source,
            "created_at": now_us(),
        },
    )
