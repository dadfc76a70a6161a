"""``MLTrackKernel``: ipykernel's IPython kernel that records every cell."""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel

from mlt_kernel.core.version import __version__
from mlt_kernel.recording.extension import attach
from mlt_kernel.recording.options import RecordingOptions
from mlt_kernel.recording.status import StatusHook


class MLTrackKernel(StatusHook, IPythonKernel, RecordingOptions):
    """The Python (MLTrack) kernel; its options are ``RecordingOptions``'."""

    implementation = "mlt_kernel"
    implementation_version = __version__

    @property
    def banner(self) -> str:  # type: ignore[override]
        return str(super().banner) + f"MLTrack {__version__}: every cell is recorded.\n"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.recorder = attach(self.shell, parent=self, **self.recording_options())

    def start(self) -> None:
        super().start()  # type: ignore[no-untyped-call]
        # Each record is written once IOPub has sent its reply's idle status
        # (see recording.status), when this ipykernel still says when that is.
        self.recorder.tells_reply_sent = self.watch_replies(self.recorder.reply_sent)

    def do_shutdown(self, restart: bool) -> Any:
        self.recorder.close()
        return super().do_shutdown(restart)  # type: ignore[no-untyped-call]


__all__ = ["MLTrackKernel"]
