"""``%mlt dashboard``: one ``mlt-dashboard`` process per experiment folder, started from a notebook.

The kernel starts the dashboard as a process of its own (a session of its own,
so an interrupt of the kernel never reaches it; the watcher does not count it
as the kernel's memory) and does not wait for it: the cell shows the link at
once, and the page answers a moment later. The process outlives the kernel.

A state file per experiment folder in Jupyter's runtime folder (0600: it holds
the access token) keeps its pid, start time, port and token, so the next
``%mlt dashboard`` for that folder — from this kernel, a restarted one or
another notebook — finds the process and reuses it while it lives, and starts
a new one when it is gone. The token reaches the process through
``MLT_DASHBOARD_TOKEN``, never its command line.

The link works where the user is: behind JupyterHub (``JUPYTERHUB_SERVICE_PREFIX``)
or any Jupyter server with jupyter-server-proxy, it is the proxy's path under
the user's server (``{base_url}proxy/{port}/summary?token=…``), which the
browser reaches wherever it runs; otherwise the plain local URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mlt_kernel.core.children import DASHBOARD_TOKEN_ENV, python_command

#: The module the dashboard process runs (``python -P -m …``).
DASHBOARD_MODULE = "mlt_dashboard.cli"
#: A state file larger than this is not ours.
MAX_STATE_BYTES = 16 * 1024
#: Seconds ``stop`` waits for the dashboard to end before it kills it.
STOP_TIMEOUT_S = 5.0

#: The dashboards this process started, by pid: reaped when they end.
_started: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Dashboard:
    """A running dashboard of one experiment folder, and how to open it."""

    folder: str
    pid: int
    port: int
    token: str
    started_at: float  #: the process's start time (``psutil``), which tells it from a later one with its pid
    log: str
    #: False when an earlier call (this kernel's, or another's) started it.
    new: bool = True

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/summary?{urllib.parse.urlencode({'token': self.token})}"

    @property
    def url(self) -> str:
        """The link to show: the proxy's path under the Jupyter server when there is one, else the local URL."""
        base = proxy_base()
        if base is None:
            return self.local_url
        return f"{base}proxy/{self.port}/summary?{urllib.parse.urlencode({'token': self.token})}"

    def _repr_html_(self) -> str:
        from html import escape

        how = "started" if self.new else "already running"
        url = escape(self.url, quote=True)
        return (
            f'<div class="mlt-dashboard-link">MLTrack dashboard of <b>{escape(Path(self.folder).name)}</b> '
            f"({how}, pid {self.pid}): "
            f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(url)}</a></div>'
        )

    def __repr__(self) -> str:
        how = "started" if self.new else "already running"
        return f"MLTrack dashboard of {self.folder} ({how}, pid {self.pid}): {self.url}"


def proxy_base() -> str | None:
    """The Jupyter server's base URL when jupyter-server-proxy can carry the dashboard, else None.

    ``JUPYTERHUB_SERVICE_PREFIX`` (``/user/NAME/``) on JupyterHub; otherwise the
    base URL in the info file of the Jupyter server that started this kernel,
    when jupyter-server-proxy is installed beside it.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
    if prefix:
        return prefix.rstrip("/") + "/"
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    info = _server_info()
    base = info.get("base_url") if info else None
    if not isinstance(base, str) or not base.startswith("/"):
        return None
    return base.rstrip("/") + "/"


def _server_info() -> dict[str, Any] | None:
    """The info file of the Jupyter server that started this kernel (``jpserver-PID.json``), if any."""
    try:
        parent = int(os.environ.get("JPY_PARENT_PID") or os.getppid())
    except ValueError:
        return None
    data = _read_small(Path(_runtime_dir()) / f"jpserver-{parent}.json")
    return data if isinstance(data, dict) else None


def _runtime_dir() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    return str(jupyter_runtime_dir())


def state_path(folder: str | os.PathLike[str]) -> Path:
    """Where the state of *folder*'s dashboard is kept: one file per folder in Jupyter's runtime folder."""
    key = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:20]
    return Path(_runtime_dir()) / f"mlt-dashboard-{key}.json"


def _read_small(path: Path) -> Any:
    """JSON from *path*, opened without following a link and read bounded; None when absent or not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_STATE_BYTES:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _write_state(path: Path, dashboard: Dashboard) -> None:
    """Write the state file: a new 0600 file renamed into place (it holds the token)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mlt-dashboard-", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in dashboard.__dict__.items() if k != "new"}, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _alive(state: Any) -> Dashboard | None:
    """The dashboard a state file describes, when its process still runs; None otherwise."""
    if not isinstance(state, dict):
        return None
    try:
        found = Dashboard(
            folder=str(state["folder"]),
            pid=int(state["pid"]),
            port=int(state["port"]),
            token=str(state["token"]),
            started_at=float(state["started_at"]),
            log=str(state["log"]),
            new=False,
        )
    except (KeyError, TypeError, ValueError):
        return None
    child = _started.get(found.pid)
    if child is not None and child.poll() is not None:  # ours, and ended: reaped now
        del _started[found.pid]
        return None
    try:
        proc = psutil.Process(found.pid)
        same = abs(proc.create_time() - found.started_at) < 0.05 and DASHBOARD_MODULE in proc.cmdline()
        if not same or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return found


def running(folder: str | os.PathLike[str]) -> Dashboard | None:
    """The live dashboard of *folder*, or None."""
    return _alive(_read_small(state_path(folder)))


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the lock of *path*'s state: two kernels asking at once start one dashboard."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def start(folder: str | os.PathLike[str]) -> Dashboard:
    """The dashboard of *folder*: the one already running, else a new process (not waited for)."""
    folder = os.path.abspath(folder)
    path = state_path(folder)
    with _locked(path):
        found = running(folder)
        if found is not None:
            return found
        return _spawn(folder, path)


def _spawn(folder: str, path: Path) -> Dashboard:
    """Start ``mlt-dashboard`` for *folder* on a free port with a new token; its output goes to a 0600 log."""
    token = secrets.token_urlsafe(24)
    port = _free_port()
    log = path.with_suffix(".log")
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        child = subprocess.Popen(
            python_command(DASHBOARD_MODULE, folder, "--port", str(port), "--no-browser"),
            env={**os.environ, DASHBOARD_TOKEN_ENV: token},
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    _started[child.pid] = child
    try:
        started_at = psutil.Process(child.pid).create_time()
    except psutil.Error:
        started_at = time.time()
    dashboard = Dashboard(folder, child.pid, port, token, started_at, str(log))
    _write_state(path, dashboard)
    return dashboard


def stop(folder: str | os.PathLike[str]) -> Dashboard | None:
    """End the dashboard of *folder*; returns the one ended, or None when none was running."""
    folder = os.path.abspath(folder)
    path = state_path(folder)
    with _locked(path):
        found = running(folder)
        if found is not None:
            _end(found)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return found


def _end(found: Dashboard) -> None:
    """Interrupt the dashboard (it stops cleanly on Ctrl-C), kill it after ``STOP_TIMEOUT_S``, reap it if ours."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(found.pid)
        proc.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs([proc], timeout=STOP_TIMEOUT_S)
        for p in alive:
            p.kill()
    child = _started.pop(found.pid, None)
    if child is not None:
        child.wait(timeout=STOP_TIMEOUT_S)


__all__ = ["Dashboard", "proxy_base", "running", "start", "state_path", "stop"]
