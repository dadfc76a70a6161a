"""Attach a recorder to an IPython shell (the kernel and ``%load_ext`` share this)."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from . import api
from .recorder import Recorder


def attach(shell: Any, *, logger: logging.Logger | None = None, **options: Any) -> Recorder:
    """Record the cells of *shell*; idempotent."""
    if api._recorder is not None and api._recorder.shell is shell:
        return api._recorder
    recorder = Recorder(shell, logger=logger, **options)
    shell.events.register("pre_run_cell", recorder.pre_run_cell)
    shell.events.register("post_run_cell", recorder.post_run_cell)
    # First among the cleanup transforms: note cells are Markdown, not Python.
    shell.input_transformers_cleanup.insert(0, recorder.transform)
    api._recorder = recorder
    atexit.register(recorder.close)
    return recorder


def detach(shell: Any) -> None:
    """Stop recording (``%unload_ext mlt_kernel``) and close the session."""
    recorder = api._recorder
    if recorder is None or recorder.shell is not shell:
        return
    shell.events.unregister("pre_run_cell", recorder.pre_run_cell)
    shell.events.unregister("post_run_cell", recorder.post_run_cell)
    if recorder.transform in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(recorder.transform)
    api._recorder = None
    atexit.unregister(recorder.close)
    recorder.close()
