"""The kernelspec: shipped in the wheel, installable like ipykernel's."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from mlt_kernel import kernelspec

ROOT = Path(__file__).resolve().parent.parent


def test_repository_kernelspec_is_the_contract():
    spec = json.loads((ROOT / "kernelspec" / "kernel.json").read_text())
    assert spec["argv"] == ["python", "-m", "mlt_kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "Python (MLTrack)"
    assert spec["language"] == "python"


def test_installed_environment_has_the_kernelspec():
    spec = KernelSpecManager().get_kernel_spec("mltrack")
    assert spec.display_name == "Python (MLTrack)"
    assert spec.argv[1:4] == ["-m", "mlt_kernel", "-f"]


def test_get_kernel_dict_uses_an_absolute_interpreter():
    spec = kernelspec.get_kernel_dict(["--MLTrackKernel.exp_path=/x"])
    assert Path(spec["argv"][0]).is_absolute()
    assert spec["argv"][-1] == "--MLTrackKernel.exp_path=/x"


@pytest.mark.parametrize(
    ("args", "where"),
    [(["--user"], "home"), (["--prefix", "{tmp}/prefix"], "prefix")],
)
def test_install_cli(args, where, tmp_path, isolated_jupyter):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = subprocess.run(
        [sys.executable, "-m", "mlt_kernel.cli", "install", *args, "--name", "mlt-test", "--display-name", "MLT test"],
        capture_output=True,
        text=True,
        check=True,
    )
    base = isolated_jupyter / ".local/share/jupyter" if where == "home" else tmp_path / "prefix/share/jupyter"
    spec = json.loads((base / "kernels" / "mlt-test" / "kernel.json").read_text())
    assert spec["display_name"] == "MLT test"
    assert spec["argv"][0] == sys.executable
    assert "Installed kernelspec mlt-test" in out.stdout


def test_install_cli_error_is_one_line(tmp_path):
    prefix = tmp_path / "ro"
    (prefix / "share").mkdir(parents=True)
    (prefix / "share" / "jupyter").write_text("a file where a folder must be")
    proc = subprocess.run(
        [sys.executable, "-m", "mlt_kernel.cli", "install", "--prefix", str(prefix)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mlt-kernel install: ") and proc.stderr.count("\n") == 1


def test_wheel_ships_the_kernelspec(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mlt_kernel-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        spec_name = next(n for n in names if n.endswith("share/jupyter/kernels/mltrack/kernel.json"))
        spec = json.loads(zf.read(spec_name))
    assert spec["display_name"] == "Python (MLTrack)"
    assert "mlt_kernel/recording/kernel.py" in names and "mlt_dashboard/__init__.py" in names
    assert {"mlt_kernel/py.typed", "mlt_dashboard/py.typed"} <= set(names)  # typed packages (PEP 561)
    layers = {"core", "store", "read", "watcher", "tracking", "hooks", "recording"}
    assert {n.split("/")[1] for n in names if n.startswith("mlt_kernel/") and n.count("/") == 2} == layers
    assert not any(n.startswith("dashboard/") for n in names)  # no top-level package named "dashboard"
