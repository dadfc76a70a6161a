"""The recorder of this process, if one records (set by ``recording.extension.attach``).

A module of its own, importing nothing, so that ``mlt_kernel.api`` finds the
session without loading the recording machinery on ``import mlt_kernel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlt_kernel.recording.recorder import Recorder

#: The recorder of this process, or None.
recorder: Recorder | None = None
