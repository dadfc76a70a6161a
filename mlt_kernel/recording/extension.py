"""Attach a recorder to an IPython shell (the kernel and ``%load_ext`` share this)."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from mlt_kernel.recording import current, notebook
from mlt_kernel.recording.recorder import Recorder


def attach(shell: Any, *, parent: Any = None, **options: Any) -> Recorder:
    """Record the cells of *shell*; idempotent.

    *parent* is the kernel, whose log and options the recorder takes; without
    one (``%load_ext mlt_kernel``), the shell's configuration and the
    ``mlt_kernel`` logger.
    """
    if current.recorder is not None and current.recorder.shell is shell:
        return current.recorder
    if parent is None:
        options.setdefault("log", logging.getLogger("mlt_kernel"))
    recorder = Recorder(shell, parent=parent if parent is not None else shell, **options)
    shell.events.register("pre_run_cell", recorder.pre_run_cell)
    shell.events.register("post_run_cell", recorder.post_run_cell)
    # First among the cleanup transforms: note cells are Markdown, not Python.
    shell.input_transformers_cleanup.insert(0, recorder.transform)
    notebook.register(shell)  # %mlt
    current.recorder = recorder
    atexit.register(recorder.close)
    return recorder


def detach(shell: Any) -> None:
    """Stop recording (``%unload_ext mlt_kernel``) and close the session."""
    recorder = current.recorder
    if recorder is None or recorder.shell is not shell:
        return
    shell.events.unregister("pre_run_cell", recorder.pre_run_cell)
    shell.events.unregister("post_run_cell", recorder.post_run_cell)
    if recorder.transform in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(recorder.transform)
    notebook.unregister(shell)
    current.recorder = None
    atexit.unregister(recorder.close)
    recorder.close()


__all__ = ["attach", "detach"]
