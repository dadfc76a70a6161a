"""``MLTrackKernel``: ipykernel's IPython kernel that records every cell."""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool, Float, Unicode

from . import __version__
from .extension import attach


class MLTrackKernel(IPythonKernel):
    """The Python (MLTrack) kernel."""

    implementation = "mlt_kernel"
    implementation_version = __version__

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

    busy_interval = Float(
        0.05, help="Seconds between the watcher's samples while a cell runs."
    ).tag(config=True)

    idle_interval = Float(
        1.0, help="Seconds between the watcher's samples while the kernel is idle."
    ).tag(config=True)

    @property
    def banner(self) -> str:  # type: ignore[override]
        return super().banner + f"MLTrack {__version__}: every cell is recorded.\n"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = attach(
            self.shell,
            logger=self.log,
            exp_path=self.exp_path,
            watcher=self.watcher,
            busy_interval=self.busy_interval,
            idle_interval=self.idle_interval,
        )
        # Told when each reply's idle status has gone (see _publish_status).
        self.recorder.tells_reply_sent = self.iopub_thread is not None

    def _publish_status(self, status: str, channel: str, parent: Any = None) -> None:
        super()._publish_status(status, channel, parent)
        recorder = getattr(self, "recorder", None)
        if status == "idle" and channel == "shell" and recorder is not None and self.iopub_thread is not None:
            # The last cell's record is written once IOPub has sent this status:
            # that thread needs the GIL, which writing the record would hold.
            recorder.reply_sent(self.iopub_thread.schedule)

    def do_shutdown(self, restart: bool) -> Any:
        self.recorder.close()
        return super().do_shutdown(restart)
