"""The memory guard: a cell about to run out of memory is stopped, and the kernel lives on.

Real kernels with a memory limit set for the guard (``--MLTrackKernel.memory_limit``),
and, where this machine lets a test make a memory cgroup, a kernel inside one:
there, without the guard, the out-of-memory killer ends the kernel; with it,
the kernel survives.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

import mlt_kernel as mlt
from mlt_kernel.core.errors import DirectiveError
from mlt_kernel.core.units import parse_bytes
from mlt_kernel.recording import guard as kernel_guard
from mlt_kernel.recording.directives import parse_cell
from mlt_kernel.watcher import protocol
from mlt_kernel.watcher.guard import FAST_INTERVAL_S, Guard, resolve_limit
from mlt_kernel.watcher.procfs import MemInfo

GiB = 1 << 30
MiB = 1 << 20


def grow(to_bytes: int, step_mib: int = 32, pause_s: float = 0.02) -> str:
    """A cell that appends *step_mib* MiB arrays every *pause_s* seconds up to *to_bytes*."""
    return (
        "import time\n"
        "parts = []\n"
        f"for i in range({to_bytes // (step_mib * MiB)}):\n"
        f"    parts.append(np.ones({step_mib * MiB // 8})); time.sleep({pause_s})\n"
    )


# -- decisions, without a kernel ----------------------------------------------------


def test_the_limit_is_the_option_else_the_cgroup_else_the_machine() -> None:
    machine = MemInfo(total_bytes=64 * GiB, available_bytes=60 * GiB)
    assert resolve_limit(12 * GiB, 8 * GiB, machine) == (12 * GiB, "option")
    assert resolve_limit(None, 8 * GiB, machine) == (8 * GiB, "cgroup")
    assert resolve_limit(None, None, machine) == (64 * GiB, "machine")
    assert resolve_limit(None, None, None) == (None, "none")


def test_the_guard_fires_at_its_share_of_the_limit_and_ahead_of_fast_growth() -> None:
    g = Guard(10 * GiB, 0.9)
    assert not g.check(0.0, 5 * GiB, None, 0.05)
    assert not g.check(1.0, 5 * GiB, None, 0.05)  # not growing
    assert g.check(2.0, 9 * GiB, None, 0.05)  # at 90 %
    g.fired = True  # the watcher stopped the cell
    assert not g.check(3.0, 10 * GiB, None, 0.05)  # once per cell
    g.reset()
    # 8.8 GiB, growing at 4 GiB/s: past 9 GiB before the next reading and the reaction (55 ms).
    assert not g.check(0.0, int(8.4 * GiB), None, FAST_INTERVAL_S)
    assert g.check(0.1, int(8.8 * GiB), None, FAST_INTERVAL_S)
    g.reset()
    # The same growth far from the threshold is left alone.
    assert not g.check(0.0, 1 * GiB, None, 0.05)
    assert not g.check(0.1, int(1.4 * GiB), None, 0.05)


def test_a_cell_that_starts_above_the_threshold_is_stopped_only_if_it_grows() -> None:
    g = Guard(10 * GiB, 0.9)
    assert not g.check(0.0, int(9.5 * GiB), None, 0.05)  # the last cell left memory full
    assert not g.check(5.0, int(9.5 * GiB) + 8 * MiB, None, 0.05)  # a cell that does not grow is let be
    assert g.check(5.05, int(9.5 * GiB) + 64 * MiB, None, 0.05)  # one that grows is stopped
    g.reset()
    # Growth counts from the cell's lowest reading: it freed memory, then filled it again.
    assert not g.check(0.0, int(9.9 * GiB), None, 0.05)
    assert not g.check(1.0, 5 * GiB, None, 0.05)
    assert g.check(2.0, int(9.9 * GiB), None, 0.05)


def test_the_machines_free_memory_lowers_the_limit() -> None:
    g = Guard(10 * GiB, 0.9)
    assert g.limit(4 * GiB, 2 * GiB) == 6 * GiB  # other work has eaten the rest
    assert not g.check(0.0, 4 * GiB, 2 * GiB, 0.05)
    assert g.check(1.0, int(5.5 * GiB), int(0.5 * GiB), 0.05)  # 5.5 of 6: past 90 %
    assert Guard(10 * GiB, 0.0).armed is False and Guard(None, 0.9).armed is False


def test_the_guard_reads_faster_near_its_threshold() -> None:
    g = Guard(10 * GiB, 0.9)  # threshold 9 GiB
    assert g.interval(5 * GiB, None, 0.05) == 0.05  # 4 GiB away: a second even at 4 GiB/s
    assert g.interval(int(8.6 * GiB), None, 0.05) == pytest.approx(0.4 / 4 - 0.05)
    assert g.interval(int(8.9 * GiB), None, 0.05) == FAST_INTERVAL_S
    assert g.interval(10 * GiB, None, 0.05) == FAST_INTERVAL_S
    g.rate = 16 * GiB  # seen growing faster than planned for: read sooner
    assert g.interval(int(8.0 * GiB), None, 0.05) == pytest.approx(1 / 16 - 0.05)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12GiB", 12 * GiB), ("12G", 12 * GiB), ("800MB", 800_000_000), ("1.5 GiB", int(1.5 * GiB)), ("1024", 1024)],
)
def test_sizes_are_read_as_people_write_them(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "twelve", "-1", "12XB", "GiB", "1e9", "9" * 400, "99999999999 PiB"])
def test_a_bad_size_is_one_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bytes(text)
    assert repr(text[:40]) in str(info.value) and "\n" not in str(info.value)


def test_guard_lines_read_back() -> None:
    line = protocol.guard_fired(7, 926_900_224, GiB).decode()
    assert protocol.parse_guard_fired(line) == protocol.GuardFired(7, 926_900_224, GiB)
    assert protocol.parse(protocol.GUARD_OFF.decode()) == protocol.GuardOff()
    for bad in ("guard", "guard 1 2", "guard x 2 3", "guard 1 2 3 4", "guard ١ 2 3", "start 1 null"):
        assert protocol.parse_guard_fired(bad) is None


def test_guard_off_is_a_directive() -> None:
    assert parse_cell("# mlt: guard off\nx = 1").first("guard") is not None
    for bad in ("# mlt: guard", "# mlt: guard on", "# mlt: guard off now"):
        with pytest.raises(DirectiveError, match="'guard' takes one word"):
            parse_cell(bad + "\nx = 1")
    with pytest.raises(DirectiveError, match="note cell"):
        parse_cell("# mlt: note\n# mlt: guard off\ntext")


def test_the_message_names_the_largest_variables() -> None:
    import numpy as np
    import pandas as pd

    namespace = {
        "df": pd.DataFrame({"a": np.zeros(3 * MiB // 8)}),
        "X": np.zeros(2 * MiB // 8),
        "cache": [np.zeros(MiB // 8) for _ in range(5)],
        "small": list(range(10)),
        "_hidden": np.zeros(8 * MiB // 8),
        "np": np,
    }
    largest = kernel_guard.largest_variables(namespace)
    assert [(name, kind) for name, _, kind in largest] == [("cache", "list"), ("df", "DataFrame"), ("X", "ndarray")]
    exc = kernel_guard.interrupt(protocol.GuardFired(4, int(0.9 * GiB), GiB), 0.9, namespace)
    text = str(exc)
    assert isinstance(exc, KeyboardInterrupt) and "\n" not in text
    assert text.startswith("MLTrack stopped this cell at 921.6 MiB of a 1.0 GiB memory limit (90 %)")
    assert "Largest: cache 5.0 MiB (list), df 3.0 MiB (DataFrame), X 2.0 MiB (ndarray)." in text
    assert text.endswith("--MLTrackKernel.memory_guard=0.95")


# -- a real kernel -------------------------------------------------------------------


def test_the_message_survives_a_hostile_namespace() -> None:
    import numpy as np

    class Proxy:  # like a web framework's request proxy: every attribute raises
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("working outside of request context")

    class Huge:
        def __sizeof__(self) -> int:
            raise MemoryError

    namespace = {1: 2, "request": Proxy(), "huge": Huge(), "X": np.zeros(2 * MiB // 8)}  # type: ignore[dict-item]
    exc = kernel_guard.interrupt(protocol.GuardFired(3, GiB, 2 * GiB), 0.9, namespace)
    assert isinstance(exc, kernel_guard.MemoryGuardInterrupt) and "Largest: X 2.0 MiB (ndarray)." in str(exc)


def test_a_cell_running_out_of_memory_is_stopped_and_the_kernel_lives_on(start_kernel, exp) -> None:
    k = start_kernel(extra_arguments=["--MLTrackKernel.memory_limit=1GiB"])
    assert k.run(f"EXP_PATH = {str(exp)!r}\nimport numpy as np\nbefore = np.arange(10)").status == "ok"
    time.sleep(1.5)  # the watcher is up
    # Under the limit: never touched.
    assert k.run("# mlt: record name=small\n" + grow(512 * MiB)).status == "ok"
    assert k.run("del parts").status == "ok"
    # 32 MiB every 20 ms up to 4 GiB: stopped before the 1 GiB limit.
    reply = k.run("# mlt: record name=grow\n" + grow(4 * GiB))
    assert reply.content["ename"] == "MemoryGuardInterrupt"
    (error,) = reply.of_type("error")
    assert (
        len(error["traceback"]) == 1 and "to keep the kernel alive; your variables are intact" in error["traceback"][0]
    )
    assert "Largest: parts " in error["traceback"][0]
    after = k.run("print(before.sum(), len(parts), sum(p.nbytes for p in parts) < 1 << 30)")
    assert after.stdout.split()[0] == "45" and int(after.stdout.split()[1]) > 0 and after.stdout.split()[2] == "True"
    # Ctrl-C is still a plain interrupt.
    k.kc.execute("import time; time.sleep(30)")
    time.sleep(1.0)
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=30)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    k.settle()
    cells = guarded_cells(exp).set_index("cell_seq")
    grown = cells.loc[4]
    assert (grown["status"], grown["error_name"]) == ("interrupted", "MemoryGuardInterrupt")
    assert grown["peak_rss_bytes"] < GiB  # exact (VmHWM): never reached the limit
    assert grown["memory_limit_bytes"] == GiB and 0.5 * GiB < grown["guard_rss_bytes"] < GiB
    assert grown["guard_at"] is not None
    assert cells.loc[2, "status"] == "ok" and cells.loc[2, "memory_limit_bytes"] == GiB
    assert pd_isna(cells.loc[2, "guard_rss_bytes"])
    interrupted = cells.loc[6]
    assert (interrupted["status"], interrupted["error_name"]) == ("interrupted", "KeyboardInterrupt")
    assert pd_isna(interrupted["guard_rss_bytes"])
    runs = mlt.Experiment(exp).runs().set_index("name")
    assert runs.loc["grow", "status"] == "interrupted" and runs.loc["small", "status"] == "finished"


def guarded_cells(exp: Path, timeout: float = 15.0):
    """``cells()`` once the watcher has written what its guard saw (its row of the cell's end)."""
    deadline = time.monotonic() + timeout
    while True:
        cells = mlt.Experiment(exp).cells()
        if cells["guard_rss_bytes"].notna().any() or time.monotonic() > deadline:
            return cells
        time.sleep(0.2)


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_guard_off_and_a_guard_of_zero_leave_cells_alone(start_kernel, exp) -> None:
    on = start_kernel(extra_arguments=["--MLTrackKernel.memory_limit=1GiB"])
    on.run(f"EXP_PATH = {str(exp)!r}\nimport numpy as np")
    time.sleep(1.5)
    assert on.run("# mlt: guard off\n" + grow(1536 * MiB)).status == "ok"  # past the limit, as asked
    on.run("del parts")
    assert on.run(grow(1536 * MiB)).content.get("ename") == "MemoryGuardInterrupt"  # the next cell is guarded
    on.shutdown()
    off = start_kernel(
        extra_arguments=["--MLTrackKernel.memory_limit=1GiB"], env={"MLT_MEMORY_GUARD": "0", "MLT_EXP_PATH": str(exp)}
    )
    off.run("import numpy as np")
    time.sleep(1.5)
    assert off.run(grow(1536 * MiB)).status == "ok"


def test_what_the_guard_must_not_stop(start_kernel, exp) -> None:
    k = start_kernel(extra_arguments=["--MLTrackKernel.memory_limit=1GiB"])
    k.run(f"EXP_PATH = {str(exp)!r}\nimport numpy as np, os, signal, asyncio")
    time.sleep(1.5)
    # The guard's signal from anything but the watcher, with no reading for this cell: nothing happens.
    assert k.run("os.kill(os.getpid(), signal.SIGRTMIN + 5)\nimport time; time.sleep(0.2)\nok = 1").status == "ok"
    # Children forked from the kernel share its pages: counted once, not once per child (RSS would say 1.2 GiB).
    shared = (
        "import multiprocessing as mp\n"
        f"a = np.ones({300 * MiB // 8})\n"
        "def touch(_):\n    import time; time.sleep(1.5); return float(a[::4096].sum())\n"
        "with mp.get_context('fork').Pool(3) as pool:\n    sums = pool.map(touch, range(3))\n"
    )
    assert k.run(shared).status == "ok"
    k.run("del a")
    # A cell awaiting work in a thread: the main thread waits in the event loop, where an
    # exception would end the kernel. The guard lets it be; the kernel lives.
    waiting = (
        "def load():\n    out = []\n"
        f"    for i in range({1536 // 32}):\n        out.append(np.ones({32 * MiB // 8})); __import__('time').sleep(0.02)\n"
        "    return out\n"
        "parts = await asyncio.to_thread(load)\n"
    )
    assert k.run(waiting).status == "ok" and k.km.is_alive()
    k.run("del parts")
    # A cell that takes the guard's signal for itself: later cells run unguarded, and the kernel is never
    # sent a signal it does not handle (its default action would end it).
    assert k.run("signal.signal(signal.SIGRTMIN + 5, signal.SIG_DFL)").status == "ok"
    assert k.run(grow(1536 * MiB)).status == "ok" and k.km.is_alive()


def test_bad_settings_are_one_log_line_and_the_kernel_records(tmp_path, exp) -> None:
    import logging

    log = logging.getLogger("test-guard")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log.addHandler(Keep())
    os.environ["MLT_MEMORY_LIMIT"] = "lots"
    os.environ["MLT_MEMORY_GUARD"] = "1.5"
    try:
        got = kernel_guard.settings("2GiB", 0.9, log)
    finally:
        del os.environ["MLT_MEMORY_LIMIT"], os.environ["MLT_MEMORY_GUARD"]
    assert got == kernel_guard.GuardSettings(None, 0.9)
    assert len(records) == 2 and "'lots' is not a size" in records[0] and "0 to 1" in records[1]
    assert kernel_guard.settings("2GiB", 0.8, log) == kernel_guard.GuardSettings(2 * GiB, 0.8)
    assert kernel_guard.settings("12", float("nan"), log) == kernel_guard.GuardSettings(None, 0.9)  # 12 bytes: a typo
    assert "below" in records[2] and "0 to 1" in records[3]


# -- in a real memory cgroup ----------------------------------------------------------


def _cgroup_parent() -> tuple[Path, str, str] | None:
    """A folder to make a memory cgroup in, its limit file and its process file; None when none is writable."""
    for base, limit, procs in (
        (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "cgroup.procs"),  # v1
        (Path("/sys/fs/cgroup"), "memory.max", "cgroup.procs"),  # v2, with the memory controller delegated
    ):
        if (base / limit).exists() or (base / "cgroup.controllers").exists():
            probe = base / f"mlt-probe-{uuid.uuid4().hex[:8]}"
            try:
                probe.mkdir()
            except OSError:
                continue
            ok = (probe / limit).exists()
            probe.rmdir()
            if ok:
                return base, limit, procs
    return None


@pytest.fixture
def memory_cgroup():
    found = _cgroup_parent()
    if found is None:
        reason = "no memory cgroup can be made here (neither cgroup v1 nor a delegated v2 memory controller)"
        print(f"SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    base, limit_file, procs = found
    made: list[Path] = []

    def make(limit: int) -> Path:
        folder = base / f"mlt-test-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        made.append(folder)
        (folder / limit_file).write_text(str(limit))
        swap = folder / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit))
        return folder

    yield make, procs
    for folder in made:
        for pid in (folder / procs).read_text().split():
            with _suppress():
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        with _suppress():
            folder.rmdir()


def _suppress():
    import contextlib

    return contextlib.suppress(OSError)


def _kernel_in(folder: Path, procs: str, name: str, extra: list[str]) -> str:
    """A kernelspec *name* whose kernel runs inside the cgroup *folder*."""
    spec = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / name
    spec.mkdir(parents=True)
    inner = " ".join([sys.executable, "-m", "mlt_kernel", "-f", "{connection_file}", *extra])
    argv = ["sh", "-c", f"echo $$ > {folder / procs} && exec {inner}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    return name


def test_in_a_real_cgroup_the_guard_keeps_the_kernel_that_the_oom_killer_would_end(
    memory_cgroup, start_kernel, exp
) -> None:
    make, procs = memory_cgroup
    cell = grow(1536 * MiB)
    # Without the guard the out-of-memory killer ends the kernel…
    unguarded = start_kernel(_kernel_in(make(GiB), procs, "mlt-cg-off", ["--MLTrackKernel.memory_guard=0"]))
    unguarded.run(f"EXP_PATH = {str(exp / 'off')!r}\nimport numpy as np")
    time.sleep(1.5)
    unguarded.kc.execute(cell)
    deadline = time.monotonic() + 60
    while unguarded.km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not unguarded.km.is_alive()
    # The watcher says how: the out-of-memory killer, no guard, how fast memory grew.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sessions = mlt.Experiment(exp / "off").sessions()
        if (sessions["status"] == "killed").any():
            break
        time.sleep(0.2)
    (dead,) = sessions.to_dict("records")
    assert (dead["status"], dead["death_cause"], dead["memory_guard"]) == ("killed", "oom", 0.0)
    assert dead["memory_limit_bytes"] == GiB and dead["growth_bytes_per_s"] > 0
    # …with it, the kernel lives on, under the cgroup's own limit (nothing set for the guard).
    guarded = start_kernel(_kernel_in(make(GiB), procs, "mlt-cg-on", []))
    guarded.run(f"EXP_PATH = {str(exp / 'on')!r}\nimport numpy as np")
    time.sleep(1.5)
    assert guarded.run(cell).content.get("ename") == "MemoryGuardInterrupt"
    assert guarded.km.is_alive() and guarded.run("print(len(parts) > 0)").stdout.strip() == "True"
    cells = guarded_cells(exp / "on")
    assert 0.5 * GiB < cells["memory_limit_bytes"].max() <= GiB  # the cgroup's limit (or less: MemAvailable)
