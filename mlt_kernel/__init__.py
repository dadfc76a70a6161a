"""MLTrack: documents and tracks supervised machine-learning work inside Jupyter.

```python
import mlt_kernel as mlt

mlt.log_predictions(y_test, model.predict(X_test), y_proba=model.predict_proba(X_test))
mlt.log_metric("loss", loss, step=epoch)
exp = mlt.Experiment("mlt-experiments/default")
exp.runs()
```

Importing this package is cheap: the read API (DuckDB, pyarrow) and the
kernel (ipykernel) load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlt_kernel.api import (
    _note_cell,  # noqa: F401 - what a note cell runs: __import__('mlt_kernel')._note_cell(…)
    autolog,
    current_run,
    dashboard,
    log_metric,
    log_metrics,
    log_params,
    log_predictions,
    note,
    run,
    show,
    start,
    stop,
)
from mlt_kernel.core.errors import (
    DamagedFileWarning,
    DirectiveError,
    FileTooLargeError,
    MemoryGuardInterrupt,
    MLTrackError,
    MLTrackWarning,
    NotRecordingError,
    PlotPathError,
    RunError,
    UnknownRunError,
    UnsafeFileError,
)
from mlt_kernel.core.version import __version__
from mlt_kernel.recording.runs import Run

if TYPE_CHECKING:
    from mlt_kernel.experiment import Experiment

__all__ = [
    "DamagedFileWarning",
    "DirectiveError",
    "Experiment",
    "FileTooLargeError",
    "MLTrackError",
    "MLTrackWarning",
    "MemoryGuardInterrupt",
    "NotRecordingError",
    "PlotPathError",
    "Run",
    "RunError",
    "UnknownRunError",
    "UnsafeFileError",
    "__version__",
    "autolog",
    "current_run",
    "dashboard",
    "load_ipython_extension",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_predictions",
    "note",
    "run",
    "show",
    "start",
    "stop",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    if name == "Experiment":
        from mlt_kernel.experiment import Experiment

        return Experiment
    raise AttributeError(f"module 'mlt_kernel' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlt_kernel``: record cells in a plain IPython kernel."""
    from mlt_kernel.recording.extension import attach

    attach(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from mlt_kernel.recording.extension import detach

    detach(ipython)
