"""The logging API used from notebook code (``import mlt_kernel as mlt``).

Every call goes to the session's recorder, which exists inside the MLTrack
kernel or after ``%load_ext mlt_kernel``; elsewhere the calls raise
``NotRecordingError``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlt_kernel.core.errors import NotRecordingError, RunError, UnknownRunError
from mlt_kernel.core.schema import METRICS
from mlt_kernel.recording import current
from mlt_kernel.recording.runs import Run

if TYPE_CHECKING:
    from mlt_kernel.read.experiment import Experiment
    from mlt_kernel.recording.recorder import Recorder


def _active() -> Recorder:
    recorder = current.recorder
    if recorder is None:
        raise NotRecordingError(
            "MLTrack is not recording here: choose the 'Python (MLTrack)' kernel, or run %load_ext mlt_kernel first"
        )
    return recorder


def current_run() -> str | None:
    """The id of the open run, or None."""
    rec = _active()
    return rec.run.run_id if rec.run is not None else None


def start(name: str, **params: Any) -> Run:
    """Start a run now; it lasts until ``mlt.stop()``, in this cell or a later one.

    Started while another run is open, it is a child of that run
    (``parent_run_id``). Returns the :class:`Run` (``id``, ``name``, ``params``;
    ``str(run)`` is its id), which is also a context manager.
    """
    return _active().start_run(name, params)


def run(name: str, **params: Any) -> Run:
    """``with mlt.run("lr", C=1.0) as run:`` — a run for the block; ``error`` when the block raises.

    Several in a loop, in one cell, are several runs, each with its own params,
    metrics, wall and CPU time and exact peak memory.
    """
    return _active().start_run(name, params)


def stop(run: Run | str | None = None) -> Run:
    """End the innermost open run now (or *run*, with the runs started inside it).

    A run opened by ``# mlt: record …`` ends when its cell does.
    """
    rec = _active()
    if run is None or isinstance(run, Run):
        return rec.stop_run(run)
    found = next((r for r in rec.open_runs if run in (r.run_id, r.name)), None)
    if found is None:
        raise RunError(f"mlt.stop(): no open run is {run!r}")
    return rec.stop_run(found)


def autolog(on: bool = True) -> None:
    """Record scikit-learn fits (``Experiment.fits()``), or pause that with ``autolog(False)``."""
    _active().autologger.enable(bool(on))


def log_params(**params: Any) -> None:
    """Add parameters (strings, numbers, booleans) to the open run."""
    _active().log_params(params)


def _resolve_run(rec: Recorder, run: str | Run | None) -> tuple[str, str]:
    """``(run_id, name)`` of *run* (a Run, an id or a unique name), or of the innermost open run."""
    if run is None:
        open_run = rec.require_run()
        return open_run.run_id, open_run.name
    if isinstance(run, Run):
        return run.run_id, run.name
    for open_run in reversed(rec.open_runs):
        if run in (open_run.run_id, open_run.name):
            return open_run.run_id, open_run.name
    row = _reader(rec.folder()).resolve_run(run)
    return row["run_id"], row["name"]


#: Readers of the folders written to, kept for the session: DuckDB loads into
#: the kernel only when a call names an earlier run (``run=``).
_readers: dict[Path, Experiment] = {}


def _reader(folder: Path) -> Experiment:
    from mlt_kernel.read.experiment import Experiment

    reader = _readers.get(folder)
    if reader is None:
        reader = _readers[folder] = Experiment(folder)
    return reader


def _metric_value(name: str, value: Any) -> float:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a metric needs a non-empty name, got {name!r}")
    item = getattr(value, "item", None)
    if callable(item):  # numpy and torch scalars
        value = item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"metric {name!r}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r}: {number} is not finite")
    return number


def _check_step(step: object) -> None:
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise ValueError(f"step must be an integer, got {step!r}")


def log_metrics(mapping: Mapping[str, Any], step: int | None = None, *, run: str | Run | None = None) -> None:
    """Log several metric values at once (a training curve point when *step* is given)."""
    rec = _active()
    _check_step(step)
    values = {name: _metric_value(name, value) for name, value in mapping.items()}
    run_id, _ = _resolve_run(rec, run)
    for name, value in values.items():
        rec.write(
            METRICS.name,
            {
                "run_id": run_id,
                "session_id": rec.session_id,
                "name": name,
                "step": None if step is None else int(step),
                "value": value,
            },
        )


def log_metric(name: str, value: Any, step: int | None = None, *, run: str | Run | None = None) -> None:
    """Log one metric value (a training curve point when *step* is given)."""
    log_metrics({name: value}, step, run=run)


def log_predictions(
    y_true: Any,
    y_pred: Any = None,
    *,
    y_proba: Any = None,
    labels: Any = None,
    run: str | Run | None = None,
    split: str = "test",
    task: str | None = None,
) -> dict[str, float]:
    """Store predictions of the open (or named) run and compute its metrics.

    Returns the metrics computed with scikit-learn. Bad input raises
    ``ValueError`` naming the problem, and nothing of the call is stored.
    """
    from mlt_kernel.tracking.predictions import record_predictions

    rec = _active()
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    return record_predictions(
        rec,
        y_true,
        y_pred,
        y_proba=y_proba,
        labels=labels,
        run=_resolve_run(rec, run)[0],
        split=split,
        task=task,
    )


def note(markdown: str, plot: str | None = None, doc: str | None = None) -> str:
    """Store a Markdown note, tied to a plot file and/or a document; returns its id."""
    from mlt_kernel.tracking.notes import record_note

    if not isinstance(markdown, str):
        raise ValueError(f"a note is Markdown text, got {type(markdown).__name__}")
    return record_note(_active(), markdown, plot=plot, doc=doc, display=False)


def _note_cell(markdown: str, plot: str | None = None, doc: str | None = None) -> None:
    """What a ``# mlt: note`` cell runs: show the Markdown and store the note."""
    from mlt_kernel.tracking.notes import record_note

    record_note(_active(), markdown, plot=plot, doc=doc, display=True)


def dashboard(path: str | os.PathLike[str] | None = None, *, stop: bool = False) -> Any:
    """The experiment's dashboard, started or found (see ``mlt_kernel.recording.notebook.dashboard``).

    Imported on call: importing ``mlt_kernel`` must not import IPython (the dashboard process does).
    """
    from mlt_kernel.recording import notebook

    return notebook.dashboard(path, stop=stop)


def show(run: str | None = None, *, path: str | os.PathLike[str] | None = None) -> Any:
    """The runs table, or one run's card, as static HTML (see ``mlt_kernel.recording.notebook.show``)."""
    from mlt_kernel.recording import notebook

    return notebook.show(run, path=path)


__all__ = [
    "RunError",
    "UnknownRunError",
    "current_run",
    "dashboard",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_predictions",
    "note",
    "show",
    "start",
    "stop",
]
