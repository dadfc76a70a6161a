"""The kernelspec of the Python (MLTrack) kernel, and installing it.

``pip install mlt-kernel`` already registers the kernelspec in that
environment (it is shipped as shared data); ``mlt-kernel install`` is for a
Jupyter that runs from another environment, as ``python -m ipykernel install``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "mltrack"
DISPLAY_NAME = "Python (MLTrack)"


def make_kernel_cmd(executable: str | None = None, extra_arguments: list[str] | None = None) -> list[str]:
    """``[python, -m, mlt_kernel, -f, {connection_file}]`` with an absolute interpreter."""
    return [executable or sys.executable, "-m", "mlt_kernel", "-f", "{connection_file}", *(extra_arguments or [])]


def get_kernel_dict(extra_arguments: list[str] | None = None, display_name: str = DISPLAY_NAME) -> dict[str, Any]:
    return {
        "argv": make_kernel_cmd(extra_arguments=extra_arguments),
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }


def write_kernel_spec(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    extra_arguments: list[str] | None = None,
) -> Path:
    """Write a kernelspec folder (``kernel.json``) and return its path."""
    folder = Path(path) if path is not None else Path(tempfile.mkdtemp(suffix="_kernels")) / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = get_kernel_dict(extra_arguments)
    spec.update(overrides or {})
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder


def install(
    *,
    user: bool = False,
    prefix: str | None = None,
    kernel_name: str = KERNEL_NAME,
    display_name: str | None = None,
) -> str:
    """Install the kernelspec for Jupyter; returns the installed path."""
    from jupyter_client.kernelspec import KernelSpecManager

    overrides = {"display_name": display_name} if display_name else None
    tmp = write_kernel_spec(overrides=overrides)
    try:
        return KernelSpecManager().install_kernel_spec(str(tmp), kernel_name=kernel_name, user=user, prefix=prefix)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
