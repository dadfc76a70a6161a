"""The one place that relies on a private ipykernel method: ``Kernel._publish_status``.

A cell's record is written once the reply and its ``idle`` status have gone:
the IOPub thread that sends them needs the GIL, which writing the record would
hold. ipykernel says when that is only through its private
``_publish_status(status, channel, parent)``, which it calls with
``("starting", "shell")`` as the kernel starts and ``("idle", "shell")`` after
each reply. :class:`StatusHook` overrides it and checks at start-up that
ipykernel still calls it. When it does not (a future ipykernel renamed it),
the kernel says so in one line of its log and falls back to what a plain
IPython shell with ``%load_ext mlt_kernel`` does: each record is written a
millisecond after its cell, and always before the next cell starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The private method this module overrides.
PRIVATE_METHOD = "_publish_status"


class StatusHook:
    """Mixin for an ipykernel ``Kernel``: ``on_idle(schedule)`` after each reply's idle status.

    *schedule* runs a callable in the IOPub thread once that thread has sent
    what it has to send (the status itself).
    """

    iopub_thread: Any
    log: Any
    _mlt_status_seen = False
    _mlt_on_idle: Callable[[Callable[[Callable[[], None]], None]], None] | None = None

    def _publish_status(self, status: str, channel: str, parent: Any = None) -> None:
        super()._publish_status(status, channel, parent)  # type: ignore[misc]
        self._mlt_status_seen = True
        on_idle = self._mlt_on_idle
        if on_idle is not None and status == "idle" and channel == "shell" and self.iopub_thread is not None:
            on_idle(self.iopub_thread.schedule)

    def watch_replies(self, on_idle: Callable[[Callable[[Callable[[], None]], None]], None]) -> bool:
        """Call *on_idle* after each reply, if ipykernel calls the hook; whether it does.

        Call once the kernel has started (ipykernel has published ``starting``
        through the hook by then). When it has not, *on_idle* is never called
        and one warning goes to the kernel log.
        """
        if self._mlt_status_seen and self.iopub_thread is not None:
            self._mlt_on_idle = on_idle
            return True
        self.log.warning(
            "MLTrack: this ipykernel does not call Kernel.%s; each cell's record is written "
            "just after the cell instead of after its reply",
            PRIVATE_METHOD,
        )
        return False


__all__ = ["PRIVATE_METHOD", "StatusHook"]
