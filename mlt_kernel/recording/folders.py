"""Which experiment folder a session's records go to.

``EXP_PATH`` in the notebook's namespace, else the environment variable
``MLT_EXP_PATH``, else the ``exp_path`` option, else ``./mlt-experiments/default``
beside the kernel's working directory. Checked after every cell, so resolved
only when one of those inputs changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlt_kernel.core.locations import is_remote, mark_spool, parse_remote, spool_dir

DEFAULT = os.path.join("mlt-experiments", "default")


def as_folder(path: Any) -> Path | None:
    """*path* as an absolute folder, or None when it is not a non-empty path.

    An ``s3://`` URL is its spool: the local folder the kernel records into and
    ``store.sync`` uploads from (``core.locations``); ``ValueError`` for a bad one.
    """
    if is_remote(path):
        remote = parse_remote(str(path))
        folder = spool_dir(remote)
        mark_spool(folder, remote)
        return folder
    if isinstance(path, (str, os.PathLike)) and str(path).strip():
        return Path(os.path.expanduser(os.fspath(path))).absolute()
    return None


class FolderChoice:
    """The folder chosen for a shell's records, from its namespace, the environment and an option."""

    def __init__(self, shell: Any, configured: str, say: Callable[[str], None] = print) -> None:
        self.shell = shell
        self.configured = configured
        self.say = say
        self._wanted: tuple[tuple[Any, ...], Path] | None = None

    def _folder(self, path: Any) -> Path | None:
        try:
            return as_folder(path)
        except (ValueError, OSError) as exc:
            self.say(f"MLTrack: {exc}; recording to the default folder instead.")
            return None

    def _default(self) -> Path:
        env = os.environ.get("MLT_EXP_PATH", "").strip()
        chosen = env or self.configured or DEFAULT
        return self._folder(chosen) or Path(DEFAULT).absolute()

    def wanted(self) -> Path:
        """Where records go now."""
        ns = getattr(self.shell, "user_ns", {}) or {}
        key = (ns.get("EXP_PATH"), os.environ.get("MLT_EXP_PATH"), os.getcwd())
        if self._wanted is None or self._wanted[0] != key:
            self._wanted = (key, self._folder(key[0]) or self._default())
        return self._wanted[1]

    def last(self) -> Path:
        """The folder as the last check left it (no look at the namespace)."""
        return self._wanted[1] if self._wanted is not None else self.wanted()

    def changed(self) -> bool:
        """Whether ``EXP_PATH`` or ``MLT_EXP_PATH`` changed since the folder was last chosen."""
        if self._wanted is None:
            return True
        ns = getattr(self.shell, "user_ns", {}) or {}
        key = self._wanted[0]
        return ns.get("EXP_PATH") is not key[0] or os.environ.get("MLT_EXP_PATH") != key[1]


__all__ = ["DEFAULT", "FolderChoice", "as_folder"]
