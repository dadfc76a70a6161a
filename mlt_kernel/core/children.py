"""Helper processes of the kernel: the watcher, recovery, compaction.

They run with ``python -P``: the notebook's working directory is not on their
``sys.path``, so a user's ``duckdb.py`` or ``pyarrow.py`` beside the notebook
cannot shadow the libraries they import. Their CPU time and memory also stay
out of the user's cells. Short-lived ones start a session of their own, so
that an interrupt sent to the kernel's process group does not reach them.
"""

from __future__ import annotations

import sys

#: The environment variable that hands ``mlt-dashboard`` its access token (never its command line).
DASHBOARD_TOKEN_ENV = "MLT_DASHBOARD_TOKEN"


def python_command(module: str, *args: str) -> list[str]:
    """``[python, -P, -m, module, *args]`` for this interpreter."""
    return [sys.executable, "-P", "-m", module, *args]
