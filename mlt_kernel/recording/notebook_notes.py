"""Notes from Markdown cells: the saved notebook, read when it changes.

A kernel never sees a Markdown cell, so the notebook's file is read instead:

```markdown
<!-- mlt: note plot=roc_rf.png doc="Findings" -->
## Random forest
The forest wins on F1.
```

Where the file is comes from the frontend (:func:`notebook_path`). A daemon
thread looks at it every ``POLL_S`` seconds: one ``lstat`` while it is unchanged
(device, inode, size, modification and change times), and only after a change
one bounded read, without following a link, of a regular file of at most
``MAX_NOTEBOOK_BYTES``. A file without ``mlt`` in it is not even parsed. The
file is untrusted: anything unexpected in it is one line, said once (when the
file is the same at the next look: jupyter_server saves a notebook in place, so
a look during a save may find it cut short), and the notes already recorded
stay as they are.

The thread only reads. What it found is written from the kernel's own thread
(:meth:`NotebookNotes.flush`, scheduled on its event loop, and after every cell),
so that recording keeps one writer: a note saved while a cell runs is written
once it ends, and nothing is written before the first cell has chosen the
experiment folder. A note that says what is already recorded is not written
again: the first time a session writes a notebook's notes, a helper process
(``python -m mlt_kernel.recording.notebook_notes recorded EXP NOTE_ID…``; reading
loads DuckDB, which the kernel never does) says what the folder holds for them,
and after that the session compares with what it wrote itself (in that folder:
after the notebook sets another ``EXP_PATH``, the next save writes the notes
there too). Deleting the
cell, or its tag, leaves its note as it was, as deleting a note cell does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlt_kernel.core import safeio
from mlt_kernel.core.children import python_command
from mlt_kernel.core.errors import DirectiveError
from mlt_kernel.recording.directives import parse_markdown_note
from mlt_kernel.tracking.notes import markdown_note_id, note_digest, record_markdown_note
from mlt_kernel.tracking.session import Session

#: Seconds between two looks at the notebook file.
POLL_S = 1.0
#: Largest notebook file read (its outputs count: images are stored in it).
MAX_NOTEBOOK_BYTES = 64 << 20
#: Most tagged Markdown cells taken from one notebook; those after them are left out (said once).
MAX_MARKDOWN_NOTES = 1000
#: Longest the helper that says what a folder holds for a notebook's notes may take.
RECORDED_TIMEOUT_S = 60.0
#: What a tagged cell must contain: files without it are not parsed.
_MARK = b"mlt"
_DIGEST_LINE = re.compile(r"^(n-[0-9a-f]{20}) ([0-9a-f]{40})$")


@dataclass(frozen=True)
class MarkdownNote:
    """A tagged Markdown cell, as saved."""

    key: str  #: the cell's id, else ``"line:"`` and its first line (nbformat < 4.5 has no cell ids)
    cell_id: str | None
    markdown: str  #: the cell after its tag line, verbatim
    plot: str | None
    doc: str | None


@dataclass(frozen=True)
class Scan:
    """The tagged Markdown cells of one saved notebook, and what was wrong with the others."""

    notes: tuple[MarkdownNote, ...] = ()
    problems: tuple[str, ...] = ()  #: one short line per cell left out


class NotebookError(ValueError):
    """The file is not a notebook that can be read; the message is one line."""


# -- finding the notebook ---------------------------------------------------


def notebook_path(user_ns: Mapping[str, Any], environ: Mapping[str, str], start_dir: Path) -> Path | None:
    """The notebook file this kernel serves, when its frontend says.

    - jupyter_server (JupyterLab, Notebook 7) sets ``JPY_SESSION_NAME`` in the
      kernel's environment (ipykernel copies it to ``__session__``): the absolute
      path when the session was created with a name, as JupyterLab does; else
      the path relative to the server's root, which the kernel does not know,
      but the server starts the kernel in the notebook's folder (*start_dir*);
    - VS Code runs ``__vsc_ipynb_file__ = "/abs/path.ipynb"`` in the kernel.

    The name is taken when the kernel starts; a notebook renamed since is not
    found (its kernel restarted, it is). ``None`` for a console or a script.
    """
    told: Any = environ.get("JPY_SESSION_NAME") or user_ns.get("__session__") or user_ns.get("__vsc_ipynb_file__")
    if not isinstance(told, str) or not told.endswith(".ipynb") or "\0" in told:
        return None
    path = Path(told)
    return path if path.is_absolute() else start_dir / path.name


# -- reading and scanning -----------------------------------------------------


def read_notebook(path: Path) -> bytes:
    """The notebook's bytes: a regular file, not a link, at most ``MAX_NOTEBOOK_BYTES``.

    Raises:
        UnsafeFileError, FileTooLargeError, OSError: see ``mlt_kernel.core.safeio``.
    """
    return safeio.read_bytes(path, MAX_NOTEBOOK_BYTES, what="notebook")


def scan_notebook(data: bytes) -> Scan:
    """The tagged Markdown cells of the notebook *data*, in order.

    A cell with a bad tag (a malformed directive, a duplicated cell id) is left
    out and named in ``problems``; the others are kept.

    Raises:
        NotebookError: *data* is not a notebook (not UTF-8, not JSON, no list of cells).
    """
    if _MARK not in data:
        return Scan()
    try:
        nb = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NotebookError(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer too long
        raise NotebookError(f"not a notebook JSON can read ({type(exc).__name__})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise NotebookError("not a notebook (no list of cells)")
    notes: list[MarkdownNote] = []
    problems: list[str] = []
    keys: set[str] = set()
    for index, cell in enumerate(cells):
        try:
            note = _markdown_note(cell)
        except (DirectiveError, NotebookError) as exc:
            problems.append(f"cell {index + 1}: {exc}")
            continue
        if note is None:
            continue
        if note.key in keys:
            problems.append(f"cell {index + 1}: {_key_text(note)} is already another note's")
            continue
        if len(notes) == MAX_MARKDOWN_NOTES:
            problems.append(f"cell {index + 1} and later: more than {MAX_MARKDOWN_NOTES} Markdown notes")
            break
        keys.add(note.key)
        notes.append(note)
    return Scan(tuple(notes), tuple(problems))


def _markdown_note(cell: Any) -> MarkdownNote | None:
    if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
        return None
    source = cell.get("source")
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        source = "".join(source)
    if not isinstance(source, str) or "mlt" not in source:
        return None
    parsed = parse_markdown_note(source)
    if parsed is None:
        return None
    directive, markdown = parsed
    cell_id = cell.get("id")
    if cell_id is not None and (not isinstance(cell_id, str) or not cell_id or len(cell_id) > 64):
        raise NotebookError(f"the cell id {str(cell_id)[:70]!r} is not an nbformat cell id")
    first_line = next((line.strip() for line in markdown.splitlines() if line.strip()), "")
    return MarkdownNote(
        key=cell_id if cell_id is not None else f"line:{first_line}",
        cell_id=cell_id,
        markdown=markdown,
        plot=directive.options.get("plot"),
        doc=directive.options.get("doc"),
    )


def _key_text(note: MarkdownNote) -> str:
    return f"cell id {note.cell_id!r}" if note.cell_id is not None else f"first line {note.key[5:][:60]!r}"


# -- watching ----------------------------------------------------------------

#: What says that a file changed: device, inode, size, modification and change times.
Signature = tuple[int, int, int, int, int]


def _signature(path: Path) -> Signature:
    st = os.lstat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Seen:
    path: Path | None = None
    signature: Signature | None = None
    failed: Signature | None = None  #: the file as it was when it last could not be read
    problem: str | None = None  #: the last reading problem said, not said again
    unrecorded: str | None = None  #: the last writing problem said, not said again
    folder: Path | None = None  #: the experiment folder the notes below are about
    written: dict[str, MarkdownNote] = field(default_factory=dict)  #: by note key, in that folder
    #: note_id -> digest of what the folder held when this session first wrote (None: not asked yet).
    recorded: dict[str, str] | None = None
    asking: bool = False  #: the helper that says it runs


def recorded_digests(folder: Path, note_ids: list[str]) -> dict[str, str]:
    """``note_id -> note_digest`` of the notes among *note_ids* that *folder* holds, from a helper process.

    Raises:
        OSError, subprocess.SubprocessError: the helper did not start, failed or ran too long.
    """
    if not note_ids:
        return {}
    proc = subprocess.run(
        python_command(__name__, "recorded", str(folder), *note_ids),
        capture_output=True,
        text=True,
        timeout=RECORDED_TIMEOUT_S,
        check=False,
        start_new_session=True,  # an interrupt of the kernel's process group is not for it
    )
    if proc.returncode != 0:
        raise OSError(f"the helper failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    wanted = set(note_ids)
    found = (_DIGEST_LINE.match(line) for line in proc.stdout.splitlines())
    return {m.group(1): m.group(2) for m in found if m is not None and m.group(1) in wanted}


class NotebookNotes:
    """Records the tagged Markdown cells of the notebook *locate* finds, when it is saved.

    *wake* is called from the watching thread when there is something to
    write; it must get :meth:`flush` called on the kernel's thread. *say* shows
    a line under the next cell's output.
    """

    def __init__(
        self,
        session: Session,
        locate: Callable[[], Path | None],
        wake: Callable[[], None],
        say: Callable[[str], None],
        *,
        interval: float = POLL_S,
        recorded: Callable[[Path, list[str]], dict[str, str]] = recorded_digests,
    ) -> None:
        self.session = session
        self.locate = locate
        self.wake = wake
        self.say = say
        self.interval = interval
        self.recorded = recorded  #: what a folder holds for some notes (:func:`recorded_digests`)
        self._seen = _Seen()
        self._pending: tuple[Path, Scan] | None = None  #: found by the thread, not yet written
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()  #: one check at a time (the thread, or close)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="mlt-notebook-notes", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.check():
                    self.wake()
            except Exception:  # the thread must outlive a surprise: the next save is read again
                self.session.log.exception("MLTrack: reading the notebook's Markdown notes failed")

    def check(self) -> bool:
        """Look at the notebook once; True when a changed file brought notes to write."""
        with self._check_lock:
            path = self.locate()
            seen = self._seen
            if path != seen.path:
                self._seen = seen = _Seen(path)
            if path is None:
                return False
            try:
                signature = _signature(path)
            except OSError:  # not saved yet, or renamed: nothing to read
                return False
            if signature == seen.signature:
                return False
            try:
                scan = scan_notebook(read_notebook(path))
            except (OSError, NotebookError) as exc:
                # jupyter_server rewrites a notebook in place: a look during a save can find
                # it cut short. Said only when the file is the same at the next look.
                if signature == seen.failed:
                    seen.signature = signature
                    self._problem(path, str(exc))
                seen.failed = signature
                return False
            if signature != _quiet_signature(path):
                return False  # written meanwhile: read again at the next look
            seen.signature = signature
            self._problem(path, scan.problems[0] + _more(scan.problems) if scan.problems else None)
            if not scan.notes:
                return False
            with self._lock:
                self._pending = (path, scan)
            return True

    def _problem(self, path: Path, problem: str | None) -> None:
        seen = self._seen
        if problem is not None and problem != seen.problem:
            line = _one_line(f"MLTrack: Markdown notes of {path.name} not read: {problem}")
            self.session.log.warning("%s", line)
            self.say(line)
        seen.problem = problem

    def flush(self, *, final: bool = False) -> None:
        """Write the notes found since the last flush; on the kernel's thread, after the first cell.

        The first time for a notebook, it asks what the folder already holds
        and writes once the answer is in (:meth:`wake` again); *final* (the
        session ends) writes without asking.
        """
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        path, scan = pending
        seen = self._seen
        if seen.path != path:
            return  # another notebook since: its own scan comes
        folder = self.session.folder()
        if folder != seen.folder:  # the notebook set another EXP_PATH: the notes go there too
            seen.folder, seen.written, seen.recorded = folder, {}, None
        if seen.recorded is None and not final:
            with self._lock:
                self._pending = self._pending or pending  # written once the folder has answered
            if not seen.asking:
                seen.asking = True
                ids = [markdown_note_id(str(path), note.key) for note in scan.notes]
                args = (seen, folder, ids)
                threading.Thread(target=self._ask, args=args, name="mlt-notebook-notes-recorded", daemon=True).start()
            return
        problems: list[str] = []
        for note in scan.notes:
            if seen.written.get(note.key) == note:
                continue  # saved unchanged: nothing new to write
            note_id = markdown_note_id(str(path), note.key)
            try:
                record_markdown_note(
                    self.session,
                    str(path),
                    note.key,
                    note.markdown,
                    cell_id=note.cell_id,
                    plot=note.plot,
                    doc=note.doc,
                    recorded=(seen.recorded or {}).pop(note_id, None),
                )
            except ValueError as exc:  # a bad plot name or title, a note too long (PlotPathError is one)
                problems.append(f"{_key_text(note)}: {exc}")
                continue
            seen.written[note.key] = note
        # One save can be seen twice (a file replaced, then its mode set): the same line is said once.
        line = None
        if problems:
            line = f"MLTrack: Markdown notes of {path.name} not recorded: {problems[0]}{_more(problems)}"
        if line is not None and line != seen.unrecorded:
            self.session.log.warning("%s", _one_line(line))
            self.say(_one_line(line))
        seen.unrecorded = line

    def _ask(self, seen: _Seen, folder: Path, note_ids: list[str]) -> None:
        """On a thread of its own: what *folder* holds for the notes, then wake the kernel to write."""
        recorded: dict[str, str] = {}  # on failure, written again: a version too many rather than one lost
        try:
            recorded = self.recorded(folder, note_ids)
        except (OSError, subprocess.SubprocessError) as exc:
            self.session.log.warning("MLTrack: could not read which Markdown notes %s holds (%s)", folder, exc)
        except Exception:
            self.session.log.exception("MLTrack: could not read which Markdown notes %s holds", folder)
        finally:
            if seen.folder == folder:  # else the folder changed meanwhile: it is asked in turn
                seen.recorded = recorded
            seen.asking = False
        self.wake()

    @property
    def asking(self) -> bool:
        """Whether the helper that says what the folder holds is running."""
        return self._seen.asking

    @property
    def waiting(self) -> bool:
        """Whether notes were found that :meth:`flush` has not written yet."""
        return self._pending is not None

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching, after one last look (a save just before the kernel stops counts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(Exception):
            self.check()


def main(argv: list[str] | None = None) -> int:
    """``recorded EXP NOTE_ID…``: a line ``NOTE_ID DIGEST`` for each of those notes that EXP holds."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "recorded":
        print(f"usage: python -m {__name__} recorded EXP NOTE_ID...", file=sys.stderr)
        return 2
    from mlt_kernel.read.experiment import Experiment

    rows = Experiment(args[1]).sql(
        "SELECT note_id, markdown, plot, doc FROM notes "
        "WHERE list_contains(?::VARCHAR[], note_id) AND NOT coalesce(deleted, false)",
        [args[2:]],
    )
    for note_id, markdown, plot, doc in rows.itertuples(index=False):
        print(note_id, note_digest(_text(markdown) or "", _text(plot), _text(doc)))
    return 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None  # NULL comes back as None or NaN


def _quiet_signature(path: Path) -> Signature | None:
    """The file's signature now, or None when it is gone."""
    try:
        return _signature(path)
    except OSError:
        return None


def _one_line(text: str) -> str:
    """*text* on one line: a file name may hold a line break."""
    return " ".join(text.splitlines())


def _more(problems: list[str] | tuple[str, ...]) -> str:
    return f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""


__all__ = [
    "MAX_MARKDOWN_NOTES",
    "MAX_NOTEBOOK_BYTES",
    "POLL_S",
    "MarkdownNote",
    "NotebookError",
    "NotebookNotes",
    "Scan",
    "notebook_path",
    "read_notebook",
    "scan_notebook",
]


if __name__ == "__main__":
    sys.exit(main())
