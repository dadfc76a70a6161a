"""Documents of an experiment: titled, ordered Markdown, note and plot blocks.

The public name of ``mlt_kernel.tracking.documents``; see there.
"""

from __future__ import annotations

from mlt_kernel.tracking import documents as _documents
from mlt_kernel.tracking.documents import *  # noqa: F403 - the public name of that module

__all__ = _documents.__all__
