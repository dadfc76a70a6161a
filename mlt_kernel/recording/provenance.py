"""Provenance: where a session ran, and what a run ran with.

Per session: Python and platform, CPU model and cores, total RAM, the GPUs
(NVML), and git of the notebook's folder (commit, branch, whether tracked files
differ from it, the remote URL without credentials). Gathering it costs a few
hundred milliseconds (git, NVML, reading every installed distribution's
metadata), so it runs once, in a helper process started when the session
starts (``python -m mlt_kernel.recording.provenance FOLDER`` prints it as JSON),
never on a cell's path; the session's row is written again when it is known.

Per run, when it ends: ``packages``, the installed distributions behind every
top-level module imported so far (a dictionary lookup per module in the map
the helper made), and ``env``, the variables of :data:`ENV_ALLOW` that are set:
variables that change results. Nothing else from the environment is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mlt_kernel.core.children import python_command

#: Environment variables that change what a run computes or how fast: kept with each run.
ENV_ALLOW: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "XLA_FLAGS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "PYTHONHASHSEED",
)
#: Longest the helper may take (git on a slow network file system, NVML).
GATHER_TIMEOUT_S = 60.0
#: Longest one git command may take.
GIT_TIMEOUT_S = 10.0

log = logging.getLogger("mlt_kernel.recording.provenance")


# -- gathered in the helper process -------------------------------------------


def clean_remote(url: str) -> str | None:
    """*url* without credentials; None when it cannot be read safely.

    ``https://user:ghp_x@github.com/o/r.git`` -> ``https://github.com/o/r.git``:
    no user or password for any scheme but ``ssh`` (whose user name, ``git@``,
    is not a secret; its password is dropped), no query or fragment. The
    ``transport::address`` form (``persistent-https::https://…``) is cleaned
    after its ``::``; ``git@host:o/r`` keeps its user, ``user:password@host:o/r``
    loses both; a local path is kept as it is. A value with control characters
    (several URLs on escaped lines) is not kept at all.
    """
    url = url.strip()
    if not url or any(ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    transport, sep, rest = url.partition("::")
    if sep and transport and not any(c in transport for c in "/:@"):
        cleaned = clean_remote(rest)
        return None if cleaned is None else f"{transport}::{cleaned}"
    if "://" not in url:
        scp = _SCP_LIKE.match(url)  # [user[:password]@]host:path; the last '@' before the host is the end
        if scp is not None and ":" in scp.group("userinfo"):
            return scp.group("rest")
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host += f":{port}"
    keep_user = parts.scheme.lower() in _SSH and parts.username and parts.password is None
    netloc = f"{parts.username}@{host}" if keep_user else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_SSH = ("ssh", "git+ssh", "ssh+git")
_SCP_LIKE = re.compile(r"^(?P<userinfo>.*)@(?P<rest>[^@/:]+:.*)$", re.S)


def _git(folder: Path, *args: str, config: Sequence[str] = ()) -> str | None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        out = subprocess.run(
            # No fsmonitor: a repository's configuration must not run a program of its choosing here.
            ["git", "-c", "core.fsmonitor=false", *config, "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _no_filters(folder: Path) -> list[str]:
    """``-c`` options that switch off every content filter the repository configures.

    ``git status`` runs a file's ``clean`` filter (or its ``process``) to compare
    it: a program named in the folder's ``.git/config``, which a copied folder
    brings along. Empty drivers run nothing.
    """
    listed = _git(folder, "config", "--name-only", "--get-regexp", r"^filter\.") or ""
    names = {line.rsplit(".", 1)[0] for line in listed.splitlines() if line.startswith("filter.")}
    out: list[str] = []
    for name in sorted(names):
        for key in ("clean", "smudge", "process"):
            out += ["-c", f"{name}.{key}="]
    return out


def git(folder: Path) -> dict[str, Any]:
    """``git_commit``, ``git_branch``, ``git_dirty``, ``git_remote`` of *folder*; empty outside a repository."""
    if _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return {}
    status = _git(folder, "status", "--porcelain", "--untracked-files=no", config=_no_filters(folder))
    remote = _git(folder, "config", "--get", "remote.origin.url")
    if remote is None:
        first = (_git(folder, "remote") or "").split()
        remote = _git(folder, "config", "--get", f"remote.{first[0]}.url") if first else None
    return {
        "git_commit": _git(folder, "rev-parse", "--verify", "-q", "HEAD"),
        "git_branch": _git(folder, "symbolic-ref", "--short", "-q", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "git_remote": clean_remote(remote) if remote else None,
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or None


def machine() -> dict[str, Any]:
    """Platform, CPU, RAM and GPUs of this machine."""
    import psutil

    from mlt_kernel.watcher.nvml import Gpu

    gpu = Gpu()
    try:
        gpus = gpu.devices()
    finally:
        gpu.close()
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_bytes": int(psutil.virtual_memory().total),
        "gpus": gpus,
    }


def module_distributions() -> dict[str, dict[str, str]]:
    """Top-level module -> {distribution: version} for everything installed."""
    import importlib.metadata as md

    versions: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name and name not in versions:  # the first on sys.path is the one imported
            versions[name] = dist.version
    return {
        module: {d: versions[d] for d in dists if d in versions}
        for module, dists in md.packages_distributions().items()
    }


def gather(folder: Path) -> dict[str, Any]:
    """What the helper prints: the session's provenance and the module map."""
    return {"session": {**machine(), **git(folder)}, "modules": module_distributions()}


# -- the kernel's side --------------------------------------------------------


def notebook_folder(notebook: str | None) -> Path:
    """The folder whose git describes the session: the notebook's, else the working directory.

    Jupyter starts a kernel in its notebook's folder and may tell a path relative
    to its own root, so only an absolute notebook path says more than the
    working directory.
    """
    if notebook and os.path.isabs(notebook) and os.path.isdir(os.path.dirname(notebook)):
        return Path(os.path.dirname(notebook))
    return Path(os.getcwd())


def environment() -> dict[str, str]:
    """The variables of :data:`ENV_ALLOW` that are set, and nothing else."""
    return {name: os.environ[name] for name in ENV_ALLOW if name in os.environ}


def imported_modules() -> set[str]:
    """Top-level names of the modules imported so far."""
    return {name.partition(".")[0] for name in list(sys.modules) if not name.startswith("_")}


class Provenance:
    """The session's provenance, gathered once in a helper process; the runs' packages from it."""

    def __init__(self, folder: Path, logger: logging.Logger | None = None) -> None:
        self.folder = folder
        self.log = logger or log
        self.session: dict[str, Any] = {}  #: columns of the session row, once known
        self._modules: dict[str, dict[str, str]] | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._waiting: list[Callable[[], None]] = []

    def start(self) -> None:
        threading.Thread(target=self._gather, name="mlt-provenance", daemon=True).start()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def _gather(self) -> None:
        try:
            proc = subprocess.run(
                python_command(__name__, str(self.folder)),
                capture_output=True,
                text=True,
                timeout=GATHER_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # an interrupt of the kernel's group is not for it
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode)
            data = json.loads(proc.stdout)
            self.session = dict(data["session"])
            self._modules = data["modules"]
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            self.log.warning("MLTrack: provenance not recorded (%s)", exc)
        finally:
            # Ready only once every waiting call has run (and those added meanwhile):
            # whoever waits for it then sees what they wrote.
            while True:
                with self._lock:
                    waiting, self._waiting = self._waiting, []
                    if not waiting:
                        self._ready.set()
                        break
                for call in waiting:
                    try:
                        call()
                    except Exception:
                        self.log.exception("MLTrack: writing provenance failed")

    def when_ready(self, call: Callable[[], None]) -> None:
        """Call *call* once the helper has answered: now (in this thread) if it has, else in its thread."""
        with self._lock:
            if not self._ready.is_set():
                self._waiting.append(call)
                return
        call()

    def packages(self, modules: Iterable[str]) -> dict[str, str] | None:
        """{distribution: version} behind *modules*; None until known (or when it could not be)."""
        known = self._modules
        if known is None:
            return None
        out: dict[str, str] = {}
        for module in modules:
            out.update(known.get(module, ()))
        return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlt_kernel.recording.provenance FOLDER", file=sys.stderr)
        return 2
    json.dump(gather(Path(args[0])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ENV_ALLOW", "Provenance", "clean_remote", "environment", "gather", "git", "imported_modules", "machine"]
