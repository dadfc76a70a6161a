"""The Python (MLTrack) kernel records every cell: a real kernel subprocess per test."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import stat
import time

import pytest

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.store.journal import read_lines

MiB = 2**20


def test_every_cell_is_recorded_with_time_memory_and_status(start_kernel, exp):
    k = start_kernel()
    assert k.run(f"EXP_PATH = {str(exp)!r}").status == "ok"
    assert k.run("import time; time.sleep(0.2)").status == "ok"
    assert k.run("1/0").status == "error"
    assert k.run("").status == "ok"  # blank: post_run_cell without pre_run_cell
    assert k.run("x = 1", silent=True).status == "ok"  # silent: not recorded
    cells = mlt.Experiment(exp).cells()  # the live journal, while the kernel runs
    assert list(cells["execution_count"]) == [1, 2, 3]
    assert list(cells["cell_seq"]) == [1, 2, 3]
    assert list(cells["status"]) == ["ok", "ok", "error"]
    assert cells["error_name"].iloc[2] == "ZeroDivisionError"
    sleep = cells.iloc[1]
    # Generous above: the machine may be busy; a sleeping cell is mostly off the CPU.
    assert 0.2 <= sleep["wall_s"] < 10
    assert sleep["cpu_s"] < sleep["wall_s"] / 2
    assert sleep["peak_exact"]
    assert len(set(cells["session_id"])) == 1
    assert cells["code_sha1"].iloc[1] == hashlib.sha1(b"import time; time.sleep(0.2)").hexdigest()
    for col in ("rss_before_bytes", "rss_after_bytes", "peak_rss_bytes"):
        assert (cells[col] > 10 * MiB).all()
    # A long cell: its record keeps the start of the code and the hash of all of it, the whole
    # source is stored beside it, and readers show the whole.
    long = "x = 1\n" * 500
    assert k.run(long).status == "ok"
    k.settle()
    cell = mlt.Experiment(exp).cells().iloc[-1]
    assert cell["code"] == long and cell["code_sha1"] == hashlib.sha1(long.encode()).hexdigest()


def test_a_cell_is_written_after_its_reply_and_before_the_next_cell(start_kernel, exp):
    k = start_kernel()
    # Without the kernel's word that a reply has gone, nothing writes the record
    # before the next cell.
    k.run(f"EXP_PATH = {str(exp)!r}\nrec = get_ipython().kernel.recorder; rec.reply_sent = lambda schedule: None")
    # The next cell writes what the last one left before it starts.
    k.kc.execute("a = 1")
    k.kc.execute("import mlt_kernel as m; seen = m.Experiment(EXP_PATH).cells()['status'].tolist()")
    seen = k.run("print(seen)").stdout.strip()
    # The reading cell itself shows as running once the watcher has written its start.
    assert seen in ("['ok', 'ok']", "['ok', 'ok', 'running']"), seen
    k.run("del rec.reply_sent")
    # Nothing follows: written once the reply has gone (the reply may arrive before its record,
    # and before the watcher's start record of the cell: wait for the sixth cell).
    k.kc.execute_interactive("b = 2", timeout=60)
    deadline = time.monotonic() + 10
    while len(statuses := mlt.Experiment(exp).cells()["status"].tolist()) < 6 or statuses[-1] != "ok":
        assert time.monotonic() < deadline, statuses
        time.sleep(0.01)
    assert statuses == ["ok"] * 6


@pytest.mark.parametrize("watcher", [True, False], ids=["watcher", "no-watcher"])
def test_a_long_cell_shows_as_running_and_a_quick_one_is_written_once(start_kernel, exp, watcher):
    k = start_kernel(extra_arguments=[] if watcher else ["--MLTrackKernel.watcher=False"])
    k.run(f"EXP_PATH = {str(exp)!r}")
    if watcher:  # it starts beside the kernel; until then the kernel writes each start itself
        deadline = time.monotonic() + 30
        while k.run("print(get_ipython().kernel.recorder._watcher is not None)").stdout.strip() != "True":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    first = len(mlt.Experiment(exp).cells()) + 1
    for i in range(3):
        k.run(f"quick_{i} = {i}")
    # A long cell: it runs until the test has seen it running, however slow the machine.
    release = exp.parent / "release-the-cell"
    long_cell = f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.01)"
    k.kc.execute(long_cell)
    try:
        deadline = time.monotonic() + 30
        while "running" not in (cells := mlt.Experiment(exp).cells())["status"].tolist():
            assert time.monotonic() < deadline, cells["status"].tolist()
            time.sleep(0.05)
        assert cells["code"].iloc[-1] == long_cell
    finally:
        release.touch()
    k.settle()
    cells = mlt.Experiment(exp).cells()
    assert cells["status"].tolist()[-4:] == ["ok"] * 4
    # The kernel's own journal: with a watcher, a quick cell's one row is its
    # final one; without, its start was written ahead.
    journal = next((exp / "journals").glob("*.kernel.v1.jsonl"))
    rows = [r for r in read_lines(journal)[0] if r["table"] == "cells" and first <= r["cell_seq"] < first + 3]
    assert [r["status"] for r in rows] == (["ok"] * 3 if watcher else ["running", "ok"] * 3)


def test_peak_is_exact_for_a_short_600_mib_spike(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    assert k.run('x = b"\\x01" * (600 * 2**20)\ndel x').status == "ok"
    cell = mlt.Experiment(exp).cells().iloc[-1]
    # VmHWM is exact up to Linux's per-CPU RSS counter batching (tens of KiB).
    assert cell["peak_rss_bytes"] - cell["rss_before_bytes"] >= 600 * MiB - 512 * 1024
    assert cell["rss_after_bytes"] - cell["rss_before_bytes"] < 100 * MiB


def test_peak_through_getrusage_and_through_proc_status():
    from mlt_kernel.hooks.memory import ProcSelf

    proc = ProcSelf()
    try:
        # Below any RSS: ru_maxrss is the mark itself. Above: VmHWM is read instead.
        for inherited in (0, 1 << 50):
            proc.inherited_max = inherited
            assert proc.reset_peak()
            before = proc.rss_at_reset()
            assert abs(before - proc.rss()) < 4 * MiB
            x = b"\x01" * (64 * MiB)
            del x
            assert proc.peak() - before >= 64 * MiB - 512 * 1024
    finally:
        proc.close()


def test_the_whole_source_of_a_long_cell_is_kept_once(start_kernel, exp):
    k = start_kernel(extra_arguments=["--MLTrackKernel.watcher=False"])
    k.run(f"EXP_PATH = {str(exp)!r}")
    long_cell = "".join(f"x{i} = {i}  # a long cell, line {i}\n" for i in range(400))  # ~12,000 characters
    huge_cell = "y = 1\n" + "#" * (1 << 20) + "\n"  # over the 1 MiB kept whole
    for code in (long_cell, long_cell, huge_cell):
        assert k.run(code).status == "ok"
    k.settle()
    e = mlt.Experiment(exp)
    cells = e.cells()
    assert cells["code"].tolist()[1:] == [long_cell, long_cell, huge_cell[:2000]]  # as the kernel ran it
    assert cells["code_sha1"].iloc[1] == hashlib.sha1(long_cell.encode()).hexdigest()
    assert e.sql("SELECT count(*) AS n FROM sources")["n"].iloc[0] == 1  # one row per distinct source
    assert k.run("print(x399)").stdout.strip() == "399"


def test_cell_id_from_the_frontend_is_kept(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    request = k.kc.session.msg(
        "execute_request",
        {
            "code": "z = 3",
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        metadata={"cellId": "cell-abc-123"},
    )
    k.kc.shell_channel.send(request)
    reply = k.kc.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok"
    k.settle()  # the record is written just after the reply
    assert mlt.Experiment(exp).cells().iloc[-1]["cell_id"] == "cell-abc-123"


def test_interrupted_cell(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.kc.execute("import time; time.sleep(30)")
    # Interrupted inside the cell, once it shows as running (not before it starts).
    deadline = time.monotonic() + 30
    while "running" not in mlt.Experiment(exp).cells()["status"].tolist():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    k.km.interrupt_kernel()
    deadline = time.time() + 20
    while time.time() < deadline:
        msg = k.kc.get_shell_msg(timeout=20)
        if msg["msg_type"] == "execute_reply" and msg["content"]["execution_count"] == 2:
            break
    k.settle()  # the record is finished just after the reply
    cells = mlt.Experiment(exp).cells()
    assert cells.iloc[-1]["status"] == "interrupted"
    assert cells.iloc[-1]["error_name"] == "KeyboardInterrupt"


def test_malformed_directive_is_one_line_and_the_cell_does_not_run(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    reply = k.run("# mlt: record n_estimators=3\nran = True")
    assert reply.status == "error"
    assert reply.content["ename"] == "DirectiveError"
    (err,) = reply.of_type("error")
    assert len(err["traceback"]) == 1 and "name=NAME" in err["traceback"][0]
    assert k.run("print('ran' in globals())").stdout.strip() == "False"
    assert mlt.Experiment(exp).runs().empty  # nothing half-recorded


def test_skip_directive_is_not_recorded(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    assert k.run("# mlt: skip\nskipped = 1").status == "ok"
    assert k.run("print(skipped)").stdout.strip() == "1"
    cells = mlt.Experiment(exp).cells()
    assert len(cells) == 2
    assert not cells["code"].str.contains("skipped = 1").any()


def test_exp_path_in_first_cell_never_touches_the_default(start_kernel, tmp_path, exp):
    k = start_kernel(cwd=tmp_path)
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("a = 1")
    k.shutdown()
    assert not (tmp_path / "mlt-experiments").exists()
    assert (exp / layout.MARKER).is_file() and (exp / "plots").is_dir()
    cells = mlt.Experiment(exp).cells()
    assert list(cells["execution_count"]) == [1, 2]  # the assigning cell is in the new folder
    # Shutdown compacted the journal into Parquet.
    assert not list((exp / "journals").iterdir())
    assert list((exp / "tables" / "cells").glob("s-*.parquet"))
    assert mlt.Experiment(exp).sessions()["status"].tolist() == ["ended"]


def test_default_folder_then_env_then_trait(start_kernel, tmp_path):
    start_kernel(cwd=tmp_path).run("a = 1")
    assert layout.is_experiment(tmp_path / "mlt-experiments" / "default")

    env_exp = tmp_path / "from-env"
    start_kernel(cwd=tmp_path, env={"MLT_EXP_PATH": str(env_exp)}).run("a = 1")
    assert len(mlt.Experiment(env_exp).cells()) == 1

    trait_exp = tmp_path / "from-trait"
    start_kernel(cwd=tmp_path, extra_arguments=[f"--MLTrackKernel.exp_path={trait_exp}"]).run("a = 1")
    assert len(mlt.Experiment(trait_exp).cells()) == 1


def test_switching_exp_path_mid_session(start_kernel, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    k = start_kernel()
    k.run(f"EXP_PATH = {str(first)!r}")
    k.run("a = 1")
    k.run(f"EXP_PATH = {str(second)!r}")
    k.run("b = 2")
    assert list(mlt.Experiment(second).cells()["execution_count"]) == [3, 4]
    assert list(mlt.Experiment(first).cells()["status"]) == ["ok", "ok", "ok"]


def test_unwritable_folder_warns_once_and_falls_back(start_kernel, tmp_path, isolated_jupyter):
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "exp"
    # As root, permissions do not stop writes: a file where the folder should be does.
    (locked / "exp").write_text("not a folder")
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        k = start_kernel()
        first = k.run(f"EXP_PATH = {str(target)!r}")
        second = k.run("a = 1")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert first.status == "ok" and second.status == "ok"
    assert "cannot write the experiment folder" in first.stderr
    assert str(target) in first.stderr
    assert second.stderr == ""  # once
    fallback = next((isolated_jupyter / ".local/share/mlt-kernel/fallback").iterdir())
    assert str(fallback) in first.stderr
    assert len(mlt.Experiment(fallback).cells()) == 2


def test_sigkill_loses_nothing_written(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    for i in range(5):
        k.run(f"v{i} = {i}")
    os.kill(k.pid, signal.SIGKILL)
    k.km.provisioner.process.wait(10)  # type: ignore[union-attr]
    cells = mlt.Experiment(exp).cells()
    assert list(cells["execution_count"]) == [1, 2, 3, 4, 5, 6]


def test_working_directory_does_not_shadow_our_imports(start_kernel, tmp_path, exp):
    (tmp_path / "duckdb.py").write_text("raise ImportError('the user module shadowed duckdb')\n")
    (tmp_path / "pyarrow.py").write_text("raise ImportError('the user module shadowed pyarrow')\n")
    k = start_kernel(cwd=tmp_path)
    assert k.run(f"EXP_PATH = {str(exp)!r}").status == "ok"
    k.shutdown()
    assert list((exp / "tables" / "cells").glob("s-*.parquet"))


def test_load_ext_in_a_plain_ipython_kernel(start_kernel, exp):
    k = start_kernel("python3")
    reply = k.run("import mlt_kernel as mlt\nmlt.log_metric('x', 1)")
    assert reply.content["ename"] == "NotRecordingError"
    k.run("%load_ext mlt_kernel")
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("# mlt: record name=plain\nz = 1")
    bad = k.run("# mlt: frobnicate")
    assert bad.content["ename"] == "DirectiveError"
    cells = mlt.Experiment(exp).cells()
    assert len(cells) >= 3
    assert mlt.Experiment(exp).runs()["name"].tolist() == ["plain"]
    shown = k.run("%mlt runs")  # the magics come with the extension…
    assert shown.status == "ok" and ">plain</b>" in shown.of_type("display_data")[0]["data"]["text/html"]
    k.run("%unload_ext mlt_kernel")
    gone = k.run("%mlt runs")  # …and go with it
    assert gone.content["ename"] == "UsageError" and "not found" in gone.content["evalue"]


def test_a_failing_hook_is_logged_and_the_others_still_run(tmp_path, caplog):
    # In-process IPython shell, so the hook can be one of this test's.
    from IPython.core.interactiveshell import InteractiveShell

    from mlt_kernel.hooks import Hook, default_hooks
    from mlt_kernel.recording import extension

    class Broken(Hook):
        name = "broken"

        def pre_cell(self, cell):
            raise RuntimeError("boom before")

        def post_cell(self, cell):
            raise RuntimeError("boom after")

    shell = InteractiveShell()
    extension.attach(shell, exp_path=str(tmp_path / "exp"), watcher=False, hooks=[Broken(), *default_hooks()])
    try:
        with caplog.at_level(logging.ERROR, logger="mlt_kernel"):
            result = shell.run_cell("x = 41 + 1")
        assert result.success and shell.user_ns["x"] == 42
        failures = [r for r in caplog.records if "hook 'broken' failed" in r.getMessage()]
        assert len(failures) == 2  # before and after the cell, each logged
        shell.run_cell("pass")  # the next cell writes the last one's record first
        (cell, _) = mlt.Experiment(tmp_path / "exp").cells().to_dict("records")
        # The hooks after the broken one measured the cell all the same.
        assert cell["status"] == "ok" and cell["wall_s"] >= 0 and cell["peak_rss_bytes"] > 0
    finally:
        extension.detach(shell)
        InteractiveShell.clear_instance()
