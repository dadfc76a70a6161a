"""A real kernel that dies: the watcher's post-mortem, and the watcher's own lifecycle.

The kernel is killed once it is seen doing what the test is about (grown, in
the cell), not after a fixed sleep, and time is asserted as order, not
milliseconds: the machine may be busy. How close to a kill the last sample is
measured in ``benchmarks/sampler.py``.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

import mlt_kernel as mlt

GROW = """
# mlt: record start name=growing
import time
blocks = []
for _ in range(400):
    blocks.append(b"\\x01" * (2 * 2**20))
    time.sleep(0.01)
"""


def watchers_of(kernel_pid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlt_kernel.watcher" in cmd and str(kernel_pid) in cmd:
            out.append(proc)
    return out


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_sigkill_during_a_growing_run(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    for i in range(3):
        k.run(f"before_{i} = {i}")
    assert wait_until(lambda: bool(watchers_of(k.pid)))
    kernel = psutil.Process(k.pid)
    start_rss = kernel.memory_info().rss
    k.kc.execute(GROW)
    # Kill it mid-run, once it has grown by 200 MiB (of 800 MiB it would reach).
    assert wait_until(lambda: kernel.memory_info().rss - start_rss > 200 * 2**20, 60)
    grown_at = time.time()
    time.sleep(0.5)
    killed_at = time.time()
    os.kill(k.pid, signal.SIGKILL)
    # The watcher notices, marks what was open, compacts the session and exits.
    assert wait_until(lambda: not list((exp / "journals").iterdir()), 30)

    e = mlt.Experiment(exp)
    cells = e.cells()
    assert list(cells["execution_count"]) == [1, 2, 3, 4, 5]
    assert list(cells["status"]) == ["ok"] * 4 + ["killed"]
    (run,) = e.runs().to_dict("records")
    assert run["name"] == "growing" and run["status"] == "killed"
    (session,) = e.sessions().to_dict("records")
    assert session["status"] == "killed" and session["death_cause"] in ("oom", "unknown")

    samples = e.samples(session=session["session_id"])
    last = samples["t"].iloc[-1].timestamp()
    # Sampled on up to the kill: a reading after the kernel had grown.
    assert last >= grown_at, (killed_at - last, killed_at - grown_at)
    during = e.samples(run="growing")
    assert during["rss_bytes"].iloc[-1] - during["rss_bytes"].iloc[0] > 150 * 2**20
    assert cells["peak_rss_bytes"].iloc[-1] > 150 * 2**20


def test_the_next_session_says_how_the_last_one_died(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("# mlt: record name=doomed\nimport time\nx = b'1' * 2**26")
    k.kc.execute("# mlt: record name=doomed2\nimport time; y = b'2' * 2**26; time.sleep(30)")
    # Killed inside cell [3]: once the watcher has written it as running.
    assert wait_until(lambda: "running" in mlt.Experiment(exp).cells()["status"].tolist(), 30)
    os.kill(k.pid, signal.SIGKILL)
    assert wait_until(lambda: not list((exp / "journals").iterdir()), 30)

    nxt = start_kernel()
    first = nxt.run(f"EXP_PATH = {str(exp)!r}")
    lines = first.stderr
    for _ in range(40):  # printed with the output of the next cell that ends
        if "died" in lines:
            break
        time.sleep(0.25)
        lines += nxt.run("pass").stderr
    assert "MLTrack: the previous session" in lines
    assert "died in cell [3] (run doomed2)" in lines
    assert "MiB of memory" in lines


def test_no_watcher_outlives_shutdown_or_restart(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    assert wait_until(lambda: len(watchers_of(k.pid)) == 1)
    first_pid = k.pid
    first = watchers_of(first_pid)
    k.km.restart_kernel(now=False)
    k.kc.wait_for_ready(timeout=60)
    assert wait_until(lambda: not any(p.is_running() for p in first))
    k.run(f"EXP_PATH = {str(exp)!r}")
    assert wait_until(lambda: len(watchers_of(k.pid)) == 1)
    second = watchers_of(k.pid)
    k.shutdown()
    assert wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in second))
    statuses = mlt.Experiment(exp).sessions()["status"].tolist()
    assert statuses == ["ended", "ended"]
