"""Shared fixtures: an isolated Jupyter environment, real kernels, a real browser."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def isolated_env(home: Path) -> dict[str, str]:
    """The variables that keep a process's HOME, Jupyter and IPython configuration in *home*."""
    return {
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "MPLBACKEND": "Agg",
    }


@pytest.fixture(autouse=True)
def isolated_jupyter(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME, Jupyter and IPython configuration for every test."""
    home = tmp_path_factory.mktemp("home")
    for name, value in isolated_env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLT_EXP_PATH", raising=False)
    monkeypatch.delenv("MLT_DASHBOARD_TOKEN", raising=False)
    return home


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    content: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "".join(
            o["content"]["text"] for o in self.outputs if o["msg_type"] == "stream" and o["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            o["content"]["text"] for o in self.outputs if o["msg_type"] == "stream" and o["content"]["name"] == "stderr"
        )

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [o["content"] for o in self.outputs if o["msg_type"] == msg_type]


class Kernel:
    """A real kernel subprocess driven through jupyter_client."""

    def __init__(
        self, name: str, cwd: Path, extra_arguments: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=name)
        self.km.start_kernel(cwd=str(cwd), extra_arguments=extra_arguments or [], env={**os.environ, **(env or {})})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def run(self, code: str, timeout: float = 60, **kwargs: Any) -> Reply:
        outputs: list[dict[str, Any]] = []
        msg = self.kc.execute_interactive(code, timeout=timeout, output_hook=outputs.append, **kwargs)
        outputs = [o for o in outputs if o["msg_type"] not in ("status", "execute_input")]
        self.settle(timeout)
        return Reply(msg["content"]["status"], msg["content"], outputs)

    def settle(self, timeout: float = 60) -> None:
        """Wait until the last cell's record is written (just after its reply).

        A silent execution is not recorded, and the recorder writes what the
        last cell left before it starts.
        """
        if self.km.is_alive():
            self.kc.execute_interactive("pass", silent=True, store_history=False, timeout=timeout)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=False)


@pytest.fixture
def start_kernel(tmp_path: Path) -> Iterator[Callable[..., Kernel]]:
    """Factory: ``start_kernel(name="mltrack", cwd=tmp_path, ...)``; every kernel is shut down after the test."""
    kernels: list[Kernel] = []

    def start(name: str = "mltrack", cwd: Path | None = None, **kwargs: Any) -> Kernel:
        k = Kernel(name, cwd or tmp_path, **kwargs)
        kernels.append(k)
        return k

    yield start
    for k in kernels:
        try:
            k.shutdown()
        except Exception:
            k.km.kill_kernel() if k.km.has_kernel else None


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    return tmp_path / "exp"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (never downloads a browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run .ci/run (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlt-browser-home-{os.getpid()}"
    home.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)})
        yield b
        b.close()
    shutil.rmtree(home, ignore_errors=True)


def python() -> str:
    return sys.executable
