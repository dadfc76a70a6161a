"""The recorder: turns IPython's execution events into records.

It pairs ``pre_run_cell``/``post_run_cell`` (``post_run_cell`` arrives without
``pre_run_cell`` for blank cells; silent executions are not recorded), applies
the cell's directives, runs the hooks inside one guarded boundary, keeps the
current run, and appends every record to the session's journal in the chosen
experiment folder. It is used by ``MLTrackKernel`` and by ``%load_ext mlt_kernel``
alike; nothing here knows about the kernel.

Only measuring happens on a cell's reply path: the readings around the cell
and its start (so that a killed kernel leaves a trace), handed to the watcher
in the one line that tells it a cell started, or written ahead here when no
watcher takes it. The final record, the figures the cell made and the run's
bookkeeping are written from the event loop once the reply has gone (in
``MLTrackKernel``, when the IOPub thread has sent the idle status; elsewhere a
millisecond after the reply), and always before the next cell starts or the
session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import platform
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from traitlets.config import LoggingConfigurable

from mlt_kernel.core import layout
from mlt_kernel.core.errors import RunError
from mlt_kernel.core.locations import remote_of
from mlt_kernel.core.schema import CELLS, RUNS, SESSIONS, SOURCES, code_sha1
from mlt_kernel.core.version import __version__
from mlt_kernel.hooks import CellContext, Hook, default_hooks
from mlt_kernel.hooks.memory import MemoryHook
from mlt_kernel.recording import guard
from mlt_kernel.recording.autolog import Autolog
from mlt_kernel.recording.folders import FolderChoice
from mlt_kernel.recording.helpers import Helpers
from mlt_kernel.recording.notebook_notes import NotebookNotes, notebook_path
from mlt_kernel.recording.options import RecordingOptions
from mlt_kernel.recording.plan import MARK, Plan, make_plan, rewrite
from mlt_kernel.recording.provenance import Provenance, environment, imported_modules, notebook_folder
from mlt_kernel.recording.runs import Run, check_params
from mlt_kernel.recording.uploads import Uploads
from mlt_kernel.store.destinations import Destinations
from mlt_kernel.store.journal import encode, now_us

if TYPE_CHECKING:
    from mlt_kernel.watcher.handle import WatcherHandle

CODE_CHARS = 2000
#: Longest source kept whole (``sources``); a longer one keeps its first CODE_CHARS.
MAX_SOURCE_CHARS = 1 << 20
#: How long after a cell its record is written (off the reply path; see Recorder._post)
#: where the kernel does not say when its reply has gone (Recorder.reply_sent).
FINISH_DELAY_S = 0.001
#: How long the end of a session waits for provenance still being gathered (a session of seconds).
PROVENANCE_WAIT_S = 2.0


@dataclass
class _Pending:
    ctx: CellContext
    run: Run | None
    folders: set[Path] = field(default_factory=set)
    guarded: bool = True  #: the memory guard may stop it (until its code has run)


def _status(result: Any) -> tuple[str, str | None]:
    err = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    if err is None:
        return "ok", None
    if isinstance(err, KeyboardInterrupt):  # Ctrl-C, or MemoryGuardInterrupt
        return "interrupted", type(err).__name__
    return "error", type(err).__name__


class Recorder(RecordingOptions, LoggingConfigurable):
    """Records the cells of one session (one kernel process).

    A traitlets object like ipykernel's own: ``Recorder(shell, parent=kernel,
    **kernel.recording_options())`` takes the kernel's options and log. It is
    the ``Session`` that tracking code and hooks write through.
    """

    def __init__(self, shell: Any, *, hooks: list[Hook] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shell = shell  #: the IPython shell whose cells are recorded
        self.session_id = layout.new_writer_id()
        self.started_at = now_us()
        self.hooks = default_hooks() if hooks is None else hooks
        # What each phase calls: the hooks that do something in it, in the
        # phase's order (post and finish unwind pre's).
        self._phases = {
            phase: [
                (getattr(hook, phase), hook)
                for hook in (self.hooks if phase == "pre_cell" else reversed(self.hooks))
                if getattr(type(hook), phase) is not getattr(Hook, phase)
            ]
            for phase in ("pre_cell", "post_cell", "finish_cell")
        }
        self.folders = FolderChoice(shell, self.exp_path, self.say)
        self.dest = Destinations(self.session_id, self._session_record, self.log)
        self.helpers = Helpers(self.log, self.say)
        self.uploads = Uploads(self.log)
        self.cell_seq = 0
        self.open_runs: list[Run] = []  #: innermost last
        self.peaks = next((h.peaks for h in self.hooks if isinstance(h, MemoryHook)), None)
        self._pending: _Pending | None = None
        self._unfinished: _Pending | None = None  #: a cell measured, its record not yet written
        self._finish_timer: asyncio.TimerHandle | None = None
        self._finish_loop: asyncio.AbstractEventLoop | None = None
        #: Set by a kernel that calls reply_sent once each reply's idle status has gone.
        self.tells_reply_sent = False
        self._plan_cache: tuple[str, Plan] | None = None
        self._sources: set[tuple[Path, str]] = set()  #: (folder, code_sha1) of sources written
        self._messages: list[str] = []
        self._messages_lock = threading.Lock()
        self._watcher: WatcherHandle | None = None
        self._watcher_lock = threading.Lock()  #: the watcher's folder is told in order
        self._closed = False
        self._session_lock = threading.Lock()  #: no session row from another thread once the session ends
        self._prov: Provenance | None = None  #: gathers it (option ``provenance``)
        if self.provenance:
            self._prov = Provenance(notebook_folder(self.notebook), self.log)
            self._prov.when_ready(self._write_session_provenance)
            self._prov.start()
        self.autologger = Autolog(self)
        if self.autolog:
            self.autologger.enable()
        self.dest.on_select = self._on_select
        self.guard_settings = guard.settings(self.memory_limit, self.memory_guard, self.log)
        self._guard_handler = self._guard_signal  #: the one bound method installed (compared by identity)
        self._run_code = getattr(getattr(type(shell), "run_code", None), "__code__", None)
        #: Whether the watcher may stop cells: the guard is on and this process handles its signal.
        self.guarding = bool(
            self.watcher and self.guard_settings.fraction > 0 and guard.install(self._guard_handler, self.log)
        )
        if self.watcher:
            threading.Thread(target=self._start_watcher, name="mlt-watcher-start", daemon=True).start()
        self._loop: asyncio.AbstractEventLoop | None = None  #: the kernel's event loop, once a cell ran in it
        self._start_dir = _cwd()
        #: Notes from the notebook's tagged Markdown cells (option ``markdown_notes``).
        self.markdown: NotebookNotes | None = None
        if self.markdown_notes:
            self.markdown = NotebookNotes(self, self._notebook_file, self._wake_markdown, self.say)
            self.markdown.start()

    @property
    def run(self) -> Run | None:
        """The innermost open run: where ``log_*`` calls go."""
        return self.open_runs[-1] if self.open_runs else None

    # -- experiment folder -------------------------------------------------
    def wanted_path(self) -> Path:
        """Where records go now: ``EXP_PATH`` in the notebook, else env, option, default."""
        return self.folders.wanted()

    def folder(self) -> Path:
        """Where records go now, opened for writing."""
        return self.dest.select(self.wanted_path())

    @property
    def notebook(self) -> str | None:
        """The notebook's path, when the frontend tells it (``__session__`` or ``JPY_SESSION_NAME``)."""
        ns = getattr(self.shell, "user_ns", None) or {}
        notebook = ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        return str(notebook) if notebook else None

    def _notebook_file(self) -> Path | None:
        """The notebook's file, to read its Markdown notes (see ``notebook_notes.notebook_path``)."""
        return notebook_path(getattr(self.shell, "user_ns", None) or {}, os.environ, self._start_dir)

    def _wake_markdown(self) -> None:
        """From the notebook's watching thread: write its notes on the kernel's thread, between cells."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: close() flushes
                loop.call_soon_threadsafe(self._flush_markdown)

    def _flush_markdown(self, *, final: bool = False) -> None:
        # Never before the first cell has chosen the folder (its EXP_PATH decides where notes go).
        if self.markdown is None or not self.markdown.waiting or self.dest.current is None or self._closed:
            return
        try:
            self.markdown.flush(final=final)
        except Exception:
            self.log.exception("MLTrack: recording the notebook's Markdown notes failed")

    def _session_record(self, exp: Path, status: str = "running", **extra: Any) -> dict[str, Any]:
        proc_exact = any(getattr(h, "exact", False) for h in self.hooks)
        rec = {
            "session_id": self.session_id,
            "started_at": self.started_at,
            "status": status,
            "kernel_pid": os.getpid(),
            "hostname": socket.gethostname(),
            "user": _user(),
            "python": platform.python_version(),
            "mlt_version": __version__,
            "exp_path": str(exp),
            "notebook": self.notebook,
            "peak_exact": proc_exact,
            "memory_guard": self.guard_settings.fraction if self.guarding else 0.0,
        }
        if self._prov is not None:
            rec.update(self._prov.session)
        rec.update(extra)
        return rec

    def _write_session_provenance(self) -> None:
        """The session's row again, in every folder it wrote to, now that its provenance is known."""
        assert self._prov is not None
        if not self._prov.session:
            return
        with self._session_lock:
            if self._closed:
                return
            for root, writer in list(self.dest.writers.items()):
                writer.write(SESSIONS.name, self._session_record(root))

    def _on_select(self, exp: Path, new: bool) -> None:
        # The watcher writes where the kernel writes: it writes the cells' starts.
        with self._watcher_lock:
            if self._watcher is not None:
                self._watcher.set_experiment(str(exp))
        if new:
            self.helpers.look_back(exp, self.session_id)
            if remote_of(exp) is not None:
                self.uploads.start(exp)

    def say(self, line: str) -> None:
        """Show *line* in the output of the next cell that ends."""
        with self._messages_lock:
            self._messages.append(line)

    def _flush_messages(self) -> None:
        if not self._messages:
            return
        with self._messages_lock:
            lines, self._messages = self._messages, []
        for line in lines:
            print(line, file=sys.stderr)

    # -- watcher -----------------------------------------------------------
    def _start_watcher(self) -> None:
        try:
            from mlt_kernel.watcher.handle import WatcherHandle

            watcher = WatcherHandle.start(
                os.getpid(),
                self.session_id,
                busy_interval=self.busy_interval,
                idle_interval=self.idle_interval,
                memory_limit=self.guard_settings.limit_bytes,
                memory_guard=self.guard_settings.fraction if self.guarding else 0.0,
            )
        except Exception:
            self.log.exception("MLTrack: the resource watcher did not start")
            return
        if self._closed:
            watcher.stop()
            return
        with self._watcher_lock:  # not between a folder's selection and its telling
            self._watcher = watcher
            if self.dest.current is not None:
                watcher.set_experiment(str(self.dest.current))

    def _guard_signal(self, signum: int, frame: FrameType | None) -> None:
        """The watcher's memory guard: stop the running cell, if it is the one the watcher named.

        Nothing happens for a signal without the watcher's line for this cell
        (sent by something else, or late), between cells, outside the cell's own
        code (see ``guard.in_cell_code``), or for ``# mlt: guard off``.
        """
        watcher = self._watcher
        fired = watcher.guard_fired() if watcher is not None else None
        pending = self._pending
        if fired is None or pending is None or not pending.guarded or fired.cell_seq != self.cell_seq:
            return
        if self._run_code is not None and not guard.in_cell_code(frame, self._run_code):
            self.log.warning("MLTrack: the memory guard fired outside cell %d's code; not stopped", self.cell_seq)
            return
        pending.guarded = False  # once
        rec = pending.ctx.record
        rec.update(memory_limit_bytes=fired.limit_bytes, guard_rss_bytes=fired.rss_bytes, guard_at=now_us())
        raise guard.interrupt(fired, self.guard_settings.fraction, getattr(self.shell, "user_ns", {}) or {})

    # -- directives --------------------------------------------------------
    def plan(self, code: str) -> Plan:
        """Decide what to do with *code*; pure (the transformer may call it twice)."""
        if self._plan_cache is not None and self._plan_cache[0] == code:
            return self._plan_cache[1]
        plan = make_plan(code, self.run)
        self._plan_cache = (code, plan)
        return plan

    def transform(self, lines: list[str]) -> list[str]:
        """IPython cleanup transformer: note cells become a call, bad directives an error."""
        self.finish_cell()  # the last cell's run may still be open until then
        try:
            code = "".join(lines)
            return rewrite(lines, self.plan(code)) if MARK in code else lines
        except Exception:  # the cell runs as written rather than fail on our account
            self.log.exception("MLTrack: could not read the cell's directives")
            return lines

    # -- IPython events ----------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        try:
            self._pre(info)
        except Exception:
            self._pending = None
            self.log.exception("MLTrack: recording failed before the cell")

    def post_run_cell(self, result: Any) -> None:
        try:
            self._post(result)
        except Exception:
            self.log.exception("MLTrack: recording failed after the cell")
        finally:
            self._pending = None
            self._plan_cache = None
        with contextlib.suppress(Exception):
            for line in self.uploads.problems():
                self.say(line)
            self._flush_messages()

    def _pre(self, info: Any) -> None:
        self.finish_cell()  # the last cell's record comes first
        self._pending = None
        if getattr(info, "silent", False):
            return
        code = info.raw_cell or ""
        plan = self.plan(code)
        if plan.kind == "skip":
            return
        self.cell_seq += 1
        if plan.kind == "record" and plan.record is not None and plan.record.action != "stop":
            self._open_run(plan.record.name or "", plan.record.params, span=plan.record.action == "start")
        rec: dict[str, Any] = {
            "session_id": self.session_id,
            "cell_seq": self.cell_seq,
            # IPython has already counted this cell when pre_run_cell fires.
            "execution_count": self.shell.execution_count - (1 if getattr(info, "store_history", True) else 0),
            "cell_id": getattr(info, "cell_id", None),
            # Hashed off the reply path (see _finish) when the code is kept whole.
            "code_sha1": code_sha1(code) if len(code) > CODE_CHARS else None,
            "code": code[:CODE_CHARS],
            "status": "running",
        }
        ctx = CellContext(rec, self)
        if len(code) > CODE_CHARS:
            ctx.scratch["source"] = code  # written whole once the reply has gone (see _finish)
        # Hooks read it instead of asking again. As the last cell left it: only a
        # cell changes EXP_PATH or the working directory, and _post looks again.
        ctx.scratch["exp_path"] = self.folders.last()
        guarded = self.guarding and (plan.parsed is None or plan.parsed.first("guard") is None)
        if guarded and signal.getsignal(guard.SIGNAL) is not self._guard_handler:
            guarded = False  # the cell before took the signal: this one runs unguarded
        pending = _Pending(ctx, self.run, guarded=guarded)
        for run in self.open_runs:
            if run.code:
                run.resume()
        if plan.kind == "record" and plan.record is not None and plan.record.action == "stop":
            assert self.run is not None
            self.run.stop_status = "finished"
        self._pending = pending
        self._run_hooks("pre_cell", ctx)
        self._tag_run(rec, self.run)
        watcher = self._watcher
        if self.dest.current is None:  # no folder before the first cell ends
            if watcher is not None:
                watcher.cell_started(self.cell_seq, rec.get("run_id"))
                if self.guarding and not pending.guarded:
                    watcher.guard_off()
            return
        # The cell's start, so that a long cell shows as running and a kernel
        # killed during it leaves a trace. The watcher writes it (once the cell
        # has run a while, or when the kernel dies): one line to the watcher
        # is the only write on the reply path. Without one, it is written here.
        if watcher is not None and watcher.cell_started(self.cell_seq, rec.get("run_id"), encode(CELLS.name, rec)):
            pending.folders = {self.dest.current}
        else:
            pending.folders = self.dest.write(CELLS.name, _hashed(rec))
        if watcher is not None and self.guarding and not pending.guarded:
            watcher.guard_off()

    def _post(self, result: Any) -> None:
        pending = self._pending
        if pending is None:
            return  # blank, silent or skipped cell
        pending.guarded = False  # its code has run: nothing left to stop
        for run in self.open_runs:
            if run.code:
                run.pause()
                run.last_cell_seq = self.cell_seq
        ctx = pending.ctx
        ctx.result = result
        self._run_hooks("post_cell", ctx)
        rec = ctx.record
        if getattr(result, "execution_count", None) is not None:
            rec["execution_count"] = result.execution_count
        rec["status"], rec["error_name"] = _status(result)
        self._unfinished = pending
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._loop = loop or self._loop
        if loop is None or self.dest.current is None or self.folders.changed():
            # A new folder is opened now: what it says belongs in this cell's output.
            self.finish_cell()
        else:
            # Written once the reply and the idle status have gone: the kernel's
            # threads that send them need the GIL, which this work would hold.
            # MLTrackKernel says when that is (reply_sent); elsewhere a timer
            # guesses. The next cell, and the end of the session, write it first
            # if neither has come.
            self._finish_loop = loop
            if not self.tells_reply_sent:
                self._finish_timer = loop.call_later(FINISH_DELAY_S, self.finish_cell)

    def reply_sent(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        """The kernel published a reply's idle status; *schedule* runs a callable in
        its IOPub thread after what that thread has to send (the status itself)."""
        loop = self._finish_loop
        if self._unfinished is None or loop is None:
            return

        def later() -> None:  # in the IOPub thread, the status sent
            with contextlib.suppress(RuntimeError):  # the loop closed: shutdown finishes it
                loop.call_soon_threadsafe(self.finish_cell)

        schedule(later)

    def finish_cell(self) -> None:
        """Write the record of a cell that was measured; nothing when there is none.

        Runs just after the cell's reply (or at once outside an event loop),
        and at the latest when the next cell starts or the session closes.
        """
        pending, self._unfinished = self._unfinished, None
        if pending is None:
            return
        if self._finish_timer is not None:
            self._finish_timer.cancel()
            self._finish_timer = None
        try:
            self._finish(pending)
        except Exception:
            self.log.exception("MLTrack: recording failed after the cell")

    def _finish(self, pending: _Pending) -> None:
        ctx = pending.ctx
        rec = _hashed(ctx.record)
        wanted = ctx.scratch["exp_path"] = self.wanted_path()  # the cell may have set EXP_PATH
        self.autologger.flush()
        self._run_hooks("finish_cell", ctx)
        # The cell belongs to the run open when it started, else to the one open now.
        run = pending.run if pending.run is not None else self.run
        self._tag_run(rec, run)
        try:
            self.dest.select(wanted)
            self._write_source(ctx.scratch.get("source"), rec["code_sha1"])
            self.dest.write(CELLS.name, rec, also=pending.folders)
        finally:
            # Told once the final row is written: a kernel that dies in between
            # leaves the watcher the cell's start, which that row supersedes.
            if self._watcher is not None:
                self._watcher.cell_finished(rec["cell_seq"])
        if run is not None and not run.code:  # a code run keeps its own clocks
            run.add_cell(rec)
            if run.stop_status is not None:
                self._close_run(run, run.stop_status)
            elif not run.span:  # a spanning run survives a failed or interrupted cell
                self._close_run(run, rec["status"] if rec["status"] != "ok" else "finished")
        for code_run in [r for r in self.open_runs if r.code and r.stop_status is not None]:
            self._close_run(code_run, code_run.stop_status or "finished")  # '# mlt: record stop'
        self._flush_markdown()  # notes saved before the first cell, or while this one ran

    def _write_source(self, source: str | None, sha1: str) -> None:
        """The whole source of a cell longer than its record keeps, once per folder and source."""
        folder = self.dest.current
        if source is None or len(source) > MAX_SOURCE_CHARS or folder is None or (folder, sha1) in self._sources:
            return
        self.dest.write(SOURCES.name, {"code_sha1": sha1, "code": source})
        self._sources.add((folder, sha1))

    def _run_hooks(self, phase: str, ctx: CellContext) -> None:
        """Call the hooks of *phase*; one that fails is logged and the others still run."""
        calls = iter(self._phases[phase])
        hook = None
        while True:
            try:
                for fn, hook in calls:  # noqa: B007 - the same iterator: after a failure, the next hook
                    fn(ctx)
                return
            except Exception:
                self.log.exception("MLTrack: hook %r failed; the cell is not affected", getattr(hook, "name", hook))

    # -- runs --------------------------------------------------------------
    def _tag_run(self, rec: dict[str, Any], run: Run | None) -> None:
        if run is not None:
            rec["run_id"] = run.run_id
            rec["run_name"] = run.name

    def _open_run(self, name: str, params: Mapping[str, Any], *, span: bool, code: bool = False) -> Run:
        parent = self.run
        if parent is not None and not code:
            raise RunError(f"run {parent.name!r} is still open; stop it before starting {name!r}")
        check_params(params)
        run = Run(
            layout.new_writer_id(),
            name,
            dict(params),
            now_us(),
            span,
            code=code,
            parent_run_id=parent.run_id if parent is not None else None,
            user_keys=set(params),
        )
        if code:
            run._end = self._end_code_run
            in_cell = self._pending is not None
            run.first_cell_seq = run.last_cell_seq = self.cell_seq if in_cell else None
            begun = self.peaks.begin() if self.peaks is not None else None
            if begun is not None:
                run.peak_token = begun[0]
                run.rss_at_start = self.peaks.start_value(begun[0])  # type: ignore[union-attr]
            if in_cell:
                run.resume()
        if self.dest.current is not None:
            run.folders |= self.dest.write(RUNS.name, run.record(self.session_id, "running"))
        self.open_runs.append(run)  # only once it is recorded: a failed start leaves no open run
        return run

    def _close_run(self, run: Run, status: str) -> None:
        # Runs started inside it end with it: a child does not outlive its parent.
        while run in self.open_runs and self.open_runs[-1] is not run:
            self._close_run(self.open_runs[-1], "finished" if status == "finished" else status)
        if run in self.open_runs:
            self.open_runs.remove(run)
        run.is_open = False
        if run.code:
            run.pause()
            if self._pending is not None:
                run.last_cell_seq = self.cell_seq
            if run.peak_token is not None and self.peaks is not None:
                run.peak_rss_bytes = self.peaks.end(run.peak_token)
        self.dest.select(self.wanted_path())
        rec = run.record(self.session_id, status, now_us())
        prov = self._prov
        modules = imported_modules() if prov is not None else set()
        packages = prov.packages(modules) if prov is not None else None
        if prov is not None:
            rec["env"] = environment()
        if packages is not None:
            rec["packages"] = packages
        # Every folder that holds the run's "running" row gets its end too.
        folders = self.dest.write(RUNS.name, rec, also=run.folders)
        if prov is not None and packages is None and not prov.ready:
            prov.when_ready(lambda: self._write_packages(rec, folders, modules))

    def _write_packages(self, rec: dict[str, Any], folders: set[Path], modules: set[str]) -> None:
        """A run's last row again with its packages: it ended before the session's provenance was known."""
        assert self._prov is not None
        packages = self._prov.packages(modules)
        with self._session_lock:
            if packages is None or self._closed:
                return
            for folder in folders:
                self.dest.writers[folder].write(RUNS.name, {**rec, "packages": packages})

    def start_run(self, name: str, params: Mapping[str, Any]) -> Run:
        """``mlt.start`` / ``mlt.run``: a run of code, starting now, inside the open run if there is one."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a run needs a non-empty name, got {name!r}")
        return self._open_run(name, params, span=True, code=True)

    def stop_run(self, run: Run | None = None) -> Run:
        """``mlt.stop``: end *run* (default: the innermost open run) now.

        A run opened by a directive (``# mlt: record …``) ends when its cell does,
        so that the cell belongs to it.
        """
        target = run if run is not None else self.run
        if target is None or not target.is_open:
            raise RunError("mlt.stop(): no run is open" if target is None else f"run {target.name!r} has ended")
        if target.code or self._pending is None:
            self._close_run(target, "finished")
        else:
            target.stop_status = "finished"
        return target

    def _end_code_run(self, run: Run, status: str) -> None:
        """The end of a ``with mlt.run(…)`` block."""
        try:
            self._close_run(run, status)
        except Exception:
            self.log.exception("MLTrack: recording the end of run %r failed", run.name)

    def log_params(self, params: Mapping[str, Any]) -> None:
        run = self.require_run()
        check_params(params)
        run.params.update(params)
        run.user_keys |= set(params)
        self.dest.select(self.wanted_path())
        run.folders |= self.dest.write(RUNS.name, run.record(self.session_id, "running"))

    def auto_params(self, run: Run, params: Mapping[str, Any]) -> None:
        """Params autolog found (the model and its non-default params): the user's own keys win."""
        new = {k: v for k, v in params.items() if k not in run.user_keys and run.params.get(k, params) != v}
        if not new or not run.is_open:
            return
        run.params.update(new)
        self.dest.select(self.wanted_path())
        run.folders |= self.dest.write(RUNS.name, run.record(self.session_id, "running"))

    def require_run(self) -> Run:
        if self.run is None:
            raise RunError(
                "no run is open: tag the cell with '# mlt: record name=…', call mlt.start(name), "
                "or pass run= naming an earlier run"
            )
        return self.run

    # -- writing from the API and the hooks -----------------------------------
    def write(self, table: str, record: Mapping[str, Any]) -> Path:
        """Append a record to the current experiment (chosen now if needed)."""
        folder = self.folder()
        self.dest.write(table, dict(record))
        return folder

    def add_to_document(self, title: str, note_id: str) -> None:
        """Append note *note_id* to document *title* once, in a helper process (no reading here)."""
        self.helpers.add_to_document(self.folder(), title, note_id)

    @property
    def pending_cell(self) -> dict[str, Any] | None:
        return self._pending.ctx.record if self._pending is not None else None

    # -- end of session ------------------------------------------------------
    def close(self) -> None:
        """End the session: close the open run, stop the watcher, finish the helpers, compact."""
        if self._closed:
            return
        self.finish_cell()
        if self.markdown is not None:
            self.markdown.close()  # one last look: a save just before the kernel stops counts
            self._flush_markdown(final=True)
        with contextlib.suppress(Exception):
            if self.open_runs:
                self._close_run(self.open_runs[0], "finished")
        if self._prov is not None:
            self._prov.wait(PROVENANCE_WAIT_S)  # a session of seconds: its rows get it too
        with self._session_lock:
            self._closed = True
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                self._watcher.stop()
        self.autologger.close()
        for hook in self.hooks:
            with contextlib.suppress(Exception):
                hook.close()
        if self.guarding:
            guard.uninstall(self._guard_handler)
        if not self.helpers.close():
            self.log.warning("MLTrack: a helper process was still running when the session ended")
        self.dest.close(ended_at=now_us())
        self.uploads.close()  # each sync makes its last round and ends once the kernel has


def _hashed(rec: dict[str, Any]) -> dict[str, Any]:
    """*rec* with its ``code_sha1``, which a cell's start leaves out when the code is kept whole."""
    if rec.get("code_sha1") is None:
        rec["code_sha1"] = code_sha1(rec.get("code") or "")
    return rec


def _cwd() -> Path:
    try:
        return Path.cwd()
    except OSError:  # the folder was removed
        return Path(os.sep)


def _user() -> str | None:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return None


__all__ = ["Recorder", "check_params"]
