"""What a session tracks besides cells: predictions and metrics, notes, documents.

Everything here writes through a narrow ``Session`` (``tracking.session``),
never through the recorder itself. Uses ``read``, ``store`` and ``core``.
"""
