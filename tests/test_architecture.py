"""The house's rules, checked: layers, the kernel–watcher protocol, options, the private ipykernel hook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlt_kernel as mlt
from mlt_kernel.recording.options import RecordingOptions, options_table
from mlt_kernel.watcher import protocol

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS is not None, "import-linter is a test dependency"
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'dashboard'}"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_layers_hold_and_a_wrong_way_import_breaks_them(tmp_path: Path) -> None:
    kept = lint_imports(ROOT)
    assert kept.returncode == 0, kept.stdout[-3000:]
    assert "3 kept, 0 broken" in kept.stdout

    # The same tree with one import the wrong way: tracking reaching up into recording.
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "mlt_kernel", copy / "mlt_kernel", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "dashboard", copy / "dashboard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "mlt_kernel" / "tracking" / "notes.py", "a") as f:
        f.write("\nfrom mlt_kernel.recording import current  # noqa: E402\n")
    broken = lint_imports(copy)
    assert broken.returncode != 0
    assert "mlt_kernel.tracking is not allowed to import mlt_kernel.recording" in broken.stdout


# -- the kernel–watcher protocol ------------------------------------------------

run_ids = st.none() | st.text(max_size=40)
rows = st.none() | st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=30), max_size=5).map(
    lambda d: json.dumps({"table": "cells", **d}).encode() + b"\n"
)


@given(cell_seq=st.integers(min_value=0, max_value=2**62), run_id=run_ids, row=rows)
def test_a_start_line_reads_back_as_it_was_written(cell_seq: int, run_id: str | None, row: bytes | None) -> None:
    line, with_row = protocol.cell_started(cell_seq, run_id, row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= protocol.PIPE_BUF
    message = protocol.parse(line.decode())
    assert message == protocol.CellStarted(
        cell_seq, run_id, row.decode().rstrip("\n") if with_row and row is not None else None
    )
    assert with_row == (row is not None)  # these rows always fit


@given(cell_seq=st.integers(min_value=0, max_value=2**62))
def test_end_and_stop_lines_read_back(cell_seq: int) -> None:
    assert protocol.parse(protocol.cell_ended(cell_seq).decode()) == protocol.CellEnded(cell_seq)
    assert protocol.parse(protocol.STOP.decode()) == protocol.Stop()


@given(name=st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s and "/" not in s))
def test_an_experiment_line_reads_back_as_the_absolute_folder(name: str) -> None:
    message = protocol.parse(protocol.experiment(Path("/exp") / name).decode())
    assert message == protocol.SetExperiment(Path(os.path.abspath(Path("/exp") / name)))


def test_a_row_too_long_for_one_line_stays_with_the_kernel() -> None:
    row = json.dumps({"table": "cells", "code": "x" * protocol.PIPE_BUF}).encode() + b"\n"
    line, with_row = protocol.cell_started(3, "run-1", row)
    assert not with_row and line == b'start 3 "run-1"\n'


@pytest.mark.parametrize(
    "line", ["start", "start x null", "start 1 {", "end", "end one", "exp", "exp 12", "exp nope", "stop now", "frob 1"]
)
def test_bad_lines_are_one_value_error_naming_them(line: str) -> None:
    with pytest.raises(ValueError) as info:
        protocol.parse(line)
    assert repr(line) in str(info.value) and "\n" not in str(info.value)


def test_watcher_log_lines_read_back() -> None:
    import logging

    record = logging.LogRecord("mlt_kernel.watcher", logging.WARNING, __file__, 1, "x", None, None)
    text = protocol.log_line(record, "two\nlines")
    assert protocol.parse_log_line(text) == (logging.WARNING, "mlt_kernel.watcher", "two | lines")
    assert protocol.parse_log_line("Traceback (most recent call last):") is None


# -- options --------------------------------------------------------------------


def test_the_readme_options_table_is_the_traitlets() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- options:[^\n]*-->\n(.*?)<!-- end options -->", readme, re.S)
    assert match is not None, "README.md has no generated options table"
    assert match.group(1) == options_table()
    assert set(RecordingOptions.class_trait_names(config=True)) == {
        "exp_path",
        "watcher",
        "busy_interval",
        "idle_interval",
        "memory_limit",
        "memory_guard",
        "provenance",
        "autolog",
        "markdown_notes",
    }


def test_load_ext_takes_its_options_from_the_ipython_configuration(tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from mlt_kernel.recording import extension

    config = Config()
    config.RecordingOptions.exp_path = str(tmp_path / "configured")
    config.RecordingOptions.watcher = False
    shell = InteractiveShell(config=config)
    try:
        recorder = extension.attach(shell)
        assert (recorder.exp_path, recorder.watcher) == (str(tmp_path / "configured"), False)
        shell.run_cell("x = 1")
        shell.run_cell("pass")
        assert mlt.Experiment(tmp_path / "configured").cells()["code"].tolist() == ["x = 1", "pass"]
    finally:
        extension.detach(shell)
        InteractiveShell.clear_instance()


# -- the private ipykernel hook -----------------------------------------------------


def test_the_installed_ipykernel_calls_the_status_hook(start_kernel, exp) -> None:
    k = start_kernel(extra_arguments=["--MLTrackKernel.watcher=False"])
    reply = k.run(f"EXP_PATH = {str(exp)!r}\nprint(get_ipython().kernel.recorder.tells_reply_sent)")
    assert reply.stdout.strip() == "True"


BYPASSED = """
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

from mlt_kernel.recording.kernel import MLTrackKernel


class Bypassed(MLTrackKernel):
    # What a future ipykernel that no longer calls _publish_status looks like from MLTrack.
    def _publish_status(self, status, channel, parent=None):
        IPythonKernel._publish_status(self, status, channel, parent)


IPKernelApp.launch_instance(kernel_class=Bypassed)
"""


def test_without_the_hook_the_kernel_says_so_once_and_still_records(tmp_path: Path, exp: Path) -> None:
    from jupyter_client.manager import KernelManager

    spec = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / "mlt-bypassed"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", BYPASSED, "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "bypassed", "language": "python"}))
    log = tmp_path / "kernel.log"
    km = KernelManager(kernel_name="mlt-bypassed")
    with open(log, "wb") as stderr:
        km.start_kernel(cwd=str(tmp_path), extra_arguments=["--MLTrackKernel.watcher=False"], stderr=stderr)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            outputs: list[str] = []

            def keep(msg: dict) -> None:
                if msg["msg_type"] == "stream":
                    outputs.append(msg["content"]["text"])

            kc.execute_interactive(f"EXP_PATH = {str(exp)!r}", timeout=60)
            kc.execute_interactive(
                "print(get_ipython().kernel.recorder.tells_reply_sent)", timeout=60, output_hook=keep
            )
            assert "".join(outputs).strip() == "False"
            kc.execute_interactive("x = 41 + 1", timeout=60)
            time.sleep(0.5)  # written a millisecond after the cell, without waiting for the next one
            cells = mlt.Experiment(exp).cells()
            assert "x = 41 + 1" in cells["code"].tolist()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    warnings = [line for line in log.read_text().splitlines() if "does not call Kernel._publish_status" in line]
    assert len(warnings) == 1
