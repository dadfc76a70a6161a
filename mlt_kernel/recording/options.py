"""The kernel's options (traitlets), declared once.

``MLTrackKernel`` has them as ``MLTrackKernel.<name>`` (kernelspec argv or
``ipython_kernel_config.py``); the recorder takes them from the kernel
(``Recorder(parent=kernel)``), or under ``%load_ext mlt_kernel`` from the
IPython configuration (``c.RecordingOptions.<name>``). README's options table is
:func:`options_table` (a test fails when the two drift apart).
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Float, Unicode
from traitlets.config import Configurable

from mlt_kernel.watcher import guard, protocol


class RecordingOptions(Configurable):
    """What a user may set about recording."""

    exp_path = Unicode(
        "",
        help="""Experiment folder used when the notebook assigns no EXP_PATH variable
        and MLT_EXP_PATH is not set. Empty: ./mlt-experiments/default beside the
        kernel's working directory.""",
    ).tag(config=True)

    watcher = Bool(
        True,
        help="""Start the resource watcher: a separate process that samples the memory,
        CPU and GPU of the kernel and its children and records how the kernel died.""",
    ).tag(config=True)

    provenance = Bool(
        True,
        help="""Record where each session ran (platform, CPU, RAM, GPUs, git of the notebook's
        folder) and what each run ran with (installed versions of the imported packages, an
        allow-list of environment variables), gathered in a helper process off the cells' path.""",
    ).tag(config=True)

    autolog = Bool(
        True,
        help="""Record every outermost scikit-learn fit (estimator, non-default params, data
        fingerprint, time, exact peak memory, model size, top features, search results) and add
        the model and its params to the open run's params. Nothing happens until scikit-learn is
        imported; mlt.autolog(False) pauses it.""",
    ).tag(config=True)

    markdown_notes = Bool(
        True,
        help="""Record the notebook's Markdown cells tagged 'mlt: note' as notes when the notebook
        is saved: a thread looks at the notebook's file once a second and reads it when it changed
        (the frontend tells the kernel where the file is).""",
    ).tag(config=True)

    busy_interval = Float(
        protocol.BUSY_INTERVAL_S, help="Seconds between the watcher's samples while a cell runs."
    ).tag(config=True)

    idle_interval = Float(
        protocol.IDLE_INTERVAL_S, help="Seconds between the watcher's samples while the kernel is idle."
    ).tag(config=True)

    memory_limit = Unicode(
        "",
        help="""The memory the kernel and its children may use, in bytes or as text such as
        12GiB or 800MB (MLT_MEMORY_LIMIT overrides it). Empty: the memory cgroup's limit, else
        the machine's memory; less when the machine has less available.""",
    ).tag(config=True)

    memory_guard = Float(
        guard.DEFAULT_FRACTION,
        help="""Stop a running cell with MemoryGuardInterrupt when the kernel and its children
        reach this share of the memory limit, before the out-of-memory killer ends the kernel
        (MLT_MEMORY_GUARD overrides it). 0 turns the guard off.""",
    ).tag(config=True)

    def recording_options(self) -> dict[str, Any]:
        """The options' values, by name."""
        return {name: getattr(self, name) for name in RecordingOptions.class_trait_names(config=True)}


def options_table(section: str = "MLTrackKernel") -> str:
    """README's table of the options: name, default, and the help's first sentence."""
    rows = ["| Option | Default | Meaning |", "|---|---|---|"]
    for name, trait in sorted(RecordingOptions.class_traits(config=True).items()):
        text = " ".join((trait.help or "").split())
        rows.append(f"| `{section}.{name}` | `{trait.default_value!r}` | {text} |")
    return "\n".join(rows) + "\n"


__all__ = ["RecordingOptions", "options_table"]
