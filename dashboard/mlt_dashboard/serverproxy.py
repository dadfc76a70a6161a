"""JupyterLab's launcher tile "MLTrack": the dashboard behind the Jupyter server, through jupyter-server-proxy.

``pip install "mlt-kernel[hub]"`` installs jupyter-server-proxy, which finds
:func:`setup_mltrack` through the ``jupyter_serverproxy_servers`` entry point.
The tile opens ``{base_url}mltrack/``: jupyter-server-proxy starts
``mlt-dashboard --jupyter-server-proxy`` on a Unix socket in a private folder of
its own, and passes it only requests that carry the Jupyter server's login. So
on a shared JupyterHub node no other account can reach the dashboard, and
MLTrack's own token is off in this mode (the dashboard's log says so).

The dashboard serves ``$MLT_EXP_PATH`` (an experiment, or a folder of them: then
with its picker) as the Jupyter server sees it, else ``./mlt-experiments``
beside the server, where notebooks record by default. Pages and websockets use
paths relative to the page, so the proxy's prefix needs no setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlt_kernel.core.children import python_command

#: The tile's icon.
ICON = Path(__file__).with_name("mltrack.svg")
#: What the launcher serves without ``MLT_EXP_PATH``: the folder the kernels record into by default.
DEFAULT_ROOT = "mlt-experiments"


def setup_mltrack() -> dict[str, Any]:
    """jupyter-server-proxy's settings for the MLTrack dashboard (its launcher entry too)."""
    root = os.path.abspath(os.path.expanduser(os.environ.get("MLT_EXP_PATH", "").strip() or DEFAULT_ROOT))
    return {
        "command": python_command(
            "mlt_dashboard.cli", root, "--unix-socket", "{unix_socket}", "--jupyter-server-proxy"
        ),
        "unix_socket": True,
        "timeout": 60,
        "absolute_url": False,
        "new_browser_tab": True,
        "launcher_entry": {"enabled": True, "title": "MLTrack", "icon_path": str(ICON)},
    }


__all__ = ["DEFAULT_ROOT", "ICON", "setup_mltrack"]
