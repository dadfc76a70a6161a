"""``mlt.Experiment``: an experiment folder read as pandas DataFrames, with its documents.

The reading itself is ``mlt_kernel.read.experiment.Experiment``; this class adds
what sits above the read layer, the documents (``mlt_kernel.documents``).
"""

from __future__ import annotations

from mlt_kernel.read import experiment as _read
from mlt_kernel.read.finals import METRIC_ORDER
from mlt_kernel.tracking.documents import Document


class Experiment(_read.Experiment):
    __doc__ = _read.Experiment.__doc__

    def document(self, title: str) -> Document:
        """The document called *title* (see ``mlt_kernel.documents.Document``)."""
        return Document.open(self, title)

    def __enter__(self) -> Experiment:
        return self


__all__ = ["METRIC_ORDER", "Experiment"]
