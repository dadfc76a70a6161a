"""The public API is exactly ``mlt_kernel.__all__``, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import mlt_kernel

PUBLIC = {
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
}


def test_all_is_pinned_and_importable():
    assert set(mlt_kernel.__all__) == PUBLIC
    for name in mlt_kernel.__all__:
        assert getattr(mlt_kernel, name) is not None


def test_errors_subclass_the_nearest_builtin():
    assert issubclass(mlt_kernel.DirectiveError, ValueError)
    assert issubclass(mlt_kernel.RunError, RuntimeError)
    assert issubclass(mlt_kernel.UnknownRunError, KeyError)
    assert issubclass(mlt_kernel.NotRecordingError, RuntimeError)
    assert issubclass(mlt_kernel.UnsafeFileError, OSError)
    assert issubclass(mlt_kernel.FileTooLargeError, OSError)
    assert issubclass(mlt_kernel.MemoryGuardInterrupt, KeyboardInterrupt)  # stops like Ctrl-C


def test_importing_the_package_loads_no_heavy_dependency():
    code = (
        "import sys, mlt_kernel, mlt_kernel.recording.kernel\n"
        "heavy = {'duckdb', 'pyarrow', 'pandas', 'sklearn', 'panel', 'bokeh', 'pynvml', 'matplotlib'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
