"""``%mlt`` and ``mlt.dashboard()`` / ``mlt.show()``: the experiment, seen from the notebook.

```text
%mlt dashboard          start the dashboard of this notebook's experiment (or reuse it); shows its link
%mlt dashboard stop     end it
%mlt runs               the runs table, inline
%mlt run NAME           one run's card, inline
```

The experiment is the one the cells are recorded into (``EXP_PATH``,
``MLT_EXP_PATH``…, see ``folders``). The inline views are static HTML from
``mlt_dashboard.inline`` (loaded on first use: DuckDB, pandas): no script, so
they read the same in nbviewer, VS Code and on GitHub. The dashboard is its own
process (``dashboards``); a cell that asks for it returns at once.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from mlt_kernel.core import layout
from mlt_kernel.core.errors import UnknownRunError
from mlt_kernel.recording import current
from mlt_kernel.recording.folders import FolderChoice, as_folder

if TYPE_CHECKING:
    from mlt_kernel.recording.dashboards import Dashboard

USAGE = "usage: %mlt dashboard [stop] | %mlt runs | %mlt run NAME"


class Inline:
    """HTML for the notebook (``text/html``), with a line of text for frontends without HTML."""

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def experiment_folder(path: str | os.PathLike[str] | None = None) -> Path:
    """*path*, else where this session records (``EXP_PATH``, ``MLT_EXP_PATH``, the option, the default)."""
    if path is not None:
        folder = as_folder(path)
        if folder is None:
            raise ValueError(f"not a folder path: {path!r}")
        return folder
    recorder = current.recorder
    if recorder is not None:
        return recorder.wanted_path()
    from IPython import get_ipython

    return FolderChoice(get_ipython(), "").wanted()


def _experiment(path: str | os.PathLike[str] | None) -> Path:
    folder = experiment_folder(path)
    if not layout.is_experiment(folder):
        raise FileNotFoundError(f"no MLTrack experiment in {folder} yet: record a cell there first")
    return folder


def dashboard(path: str | os.PathLike[str] | None = None, *, stop: bool = False) -> Dashboard | None:
    """Start the dashboard of the experiment (or find the one running) without waiting for it.

    Returns the :class:`~mlt_kernel.recording.dashboards.Dashboard`, which a
    notebook shows as its link. ``stop=True`` ends it instead and returns the
    one ended (None when none was running).
    """
    from mlt_kernel.recording import dashboards

    if stop:
        return dashboards.stop(experiment_folder(path))
    recorder = current.recorder
    if path is None and recorder is not None:
        # This cell's record goes there anyway: the folder is made now, so that a first
        # cell ``%mlt dashboard`` already has an experiment to show.
        return dashboards.start(recorder.folder())
    return dashboards.start(_experiment(path))


def show(run: str | None = None, *, path: str | os.PathLike[str] | None = None) -> Inline:
    """The experiment's runs table (or, with *run*, that run's card) as HTML with no script.

    *run* is a run id or a name unique in the experiment (``UnknownRunError``
    otherwise). As the last line of a cell it shows inline.
    """
    from mlt_dashboard import inline

    folder = _experiment(path)
    if run is None:
        return Inline(inline.runs_html(folder), f"MLTrack: the runs of {folder}")
    return Inline(inline.run_html(folder, str(run)), f"MLTrack: run {run} of {folder}")


@magics_class
class MLTMagics(Magics):
    """The ``%mlt`` line magic."""

    @line_magic
    def mlt(self, line: str) -> Any:
        """%mlt dashboard [stop] | %mlt runs | %mlt run NAME — the experiment, from the notebook."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%mlt {line}: {exc}; {USAGE}") from None
        try:
            return self._run(words)
        except (UnknownRunError, FileNotFoundError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise UsageError(f"MLTrack: {message}") from None

    def _run(self, words: list[str]) -> Any:
        match words:
            case ["dashboard"]:
                _display(dashboard())
            case ["dashboard", "stop"]:
                folder = experiment_folder()
                ended = dashboard(stop=True)
                if ended is None:
                    print(f"MLTrack: no dashboard of {folder} is running")
                else:
                    print(f"MLTrack: stopped the dashboard of {folder} (pid {ended.pid})")
            case ["runs"]:
                _display(show())
            case ["run", name]:
                _display(show(name))
            case _:
                raise UsageError(USAGE if not words else f"%mlt {shlex.join(words)}: not understood; {USAGE}")
        return None


def _display(value: Any) -> None:
    from IPython.display import display

    display(value)  # type: ignore[no-untyped-call]


def register(shell: Any) -> None:
    """Make ``%mlt`` available in *shell*."""
    shell.register_magics(MLTMagics)


def unregister(shell: Any) -> None:
    """Remove ``%mlt`` from *shell* (``%unload_ext mlt_kernel``)."""
    shell.magics_manager.magics["line"].pop("mlt", None)


__all__ = ["USAGE", "Inline", "MLTMagics", "dashboard", "experiment_folder", "register", "show", "unregister"]
