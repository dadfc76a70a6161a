"""The resource watcher (issue 3): /proc reading, NVML (faked), and the watcher process itself.

The watcher tests drive the real thing: a real ``python -m mlt_kernel.watcher``
started by :class:`WatcherHandle`, watching a real "kernel" process that
allocates memory on command and has a child process of its own. NVML is faked
wherever a test depends on it, so the tests read the same on a machine with an
NVIDIA GPU: a fake with a GPU is put into ``sys.modules`` for the watcher's loop
run in this process, and a test that expects no GPU readings asks for the
``no_gpu`` fixture, which also reaches the watcher subprocess.

Time is asserted loosely (never faster than asked, busy faster than idle, a
few samples at least): the machine running the tests may be busy. The tight
figures — the sampling cadence, how close to a kill the last sample is, how
fast a stop is — are measured in ``benchmarks/sampler.py``.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlt_kernel.core.schema import TABLES, code_sha1
from mlt_kernel.store.journal import JournalWriter, encode, journal_name, now_us, read_lines
from mlt_kernel.watcher import procfs
from mlt_kernel.watcher.handle import WatcherHandle
from mlt_kernel.watcher.loop import SAMPLE_BATCH, Watcher
from mlt_kernel.watcher.nvml import Gpu
from mlt_kernel.watcher.sampler import Sampler

MiB = 1 << 20
CHILD_MIB = 64

# A stand-in for the kernel: starts a child that holds CHILD_MIB and lives as
# long as the kernel does (it exits when its stdin, a pipe from the kernel,
# closes), then allocates or frees memory on command.
KERNEL_SCRIPT = f"""
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import sys; b = b'x' * ({CHILD_MIB} << 20); sys.stdin.read()"],
    stdin=subprocess.PIPE,
)
print("child", child.pid, flush=True)
held = []
for line in sys.stdin:
    cmd, _, arg = line.partition(" ")
    if cmd == "alloc":
        held.append(b"y" * (int(arg) << 20))
    elif cmd == "free":
        held.clear()
    print("ok", flush=True)
"""


class FakeKernel:
    """A kernel-like process tree that the test owns and kills."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", KERNEL_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        word, pid = self.proc.stdout.readline().split()
        assert word == "child"
        self.child_pid = int(pid)
        self._wait_for_child_memory()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_for_child_memory(self) -> None:
        deadline = time.monotonic() + 10
        while (procfs.rss_bytes(self.child_pid) or 0) < (CHILD_MIB - 4) * MiB:
            assert time.monotonic() < deadline, "the kernel's child did not allocate"
            time.sleep(0.02)

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        _wait_gone(self.child_pid)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _pid_running(pid: int) -> bool:
    stat = procfs.read_stat(pid)
    return stat is not None and not stat.zombie


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _pid_running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # only a pid this test started
            return
        time.sleep(0.02)


def _wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def kernel() -> Iterator[FakeKernel]:
    k = FakeKernel()
    yield k
    k.close()


@pytest.fixture
def start_watcher() -> Iterator[Callable[..., WatcherHandle]]:
    handles: list[WatcherHandle] = []

    def start(pid: int, session: str = "20261127T100000Z-0000test", **kw: Any) -> WatcherHandle:
        handle = WatcherHandle.start(pid, session, **kw)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop(timeout=5)  # also closes the pipe of a watcher that exited on its own
        assert not handle.alive


def _watcher_records(exp: Path, session: str, table: str | None = None) -> list[dict[str, Any]]:
    """What the watcher wrote, in the order it wrote it: samples go to a journal of their own."""
    records: list[dict[str, Any]] = []
    for role in ("samples", "watcher"):
        path = exp / "journals" / journal_name(session, role)
        if path.exists():
            found, _, bad = read_lines(path)
            assert bad == 0
            assert all((r["table"] == "samples") == (role == "samples") for r in found)
            records += found
    records.sort(key=lambda r: r["recorded_at"])  # stable: a sample before what the same µs wrote
    return [r for r in records if table is None or r["table"] == table]


def _parquet_latest(exp: Path, table: str) -> list[dict[str, Any]]:
    """Rows of *table* from its Parquet files, latest version per key."""
    rows: list[dict[str, Any]] = []
    for path in sorted((exp / "tables" / table).glob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    key = TABLES[table].key
    if not key:
        return rows
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["recorded_at"]):
        latest[tuple(row[k] for k in key)] = row
    return list(latest.values())


# ---------------------------------------------------------------------------
# procfs


def test_read_stat_and_rss_of_this_process() -> None:
    stat = procfs.read_stat(os.getpid())
    assert stat is not None and stat.pid == os.getpid() and stat.ppid == os.getppid()
    rss = procfs.rss_bytes(os.getpid())
    assert rss is not None and abs(stat.rss_bytes - rss) < 16 * MiB
    ticks = procfs.cpu_ticks(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn CPU: the counter must move
    assert ticks is not None and procfs.cpu_ticks(os.getpid()) > ticks
    assert procfs.read_stat(2**22 + 12345) is None  # above pid_max: never a process


def test_parse_stat_with_odd_command_name() -> None:
    line = b"42 (a) b (c)) S 7 42 42 0 -1 0 0 0 0 0 11 5 0 0 20 0 1 0 100 1000 25 0 0\n"
    stat = procfs.parse_stat(42, line)
    assert stat is not None
    assert (stat.ppid, stat.state, stat.cpu_ticks, stat.rss_bytes) == (7, "S", 16, 25 * procfs.PAGE_SIZE)
    assert procfs.parse_stat(1, b"garbage") is None


@pytest.mark.parametrize("walk", [False, True], ids=["task-children-files", "walk-proc"])
def test_children_of_finds_all_descendants(kernel: FakeKernel, walk: bool) -> None:
    assert kernel.child_pid in procfs.children_of(kernel.pid, walk=walk)
    assert kernel.pid in procfs.children_of(os.getpid(), walk=walk)
    assert kernel.child_pid in procfs.children_of(os.getpid(), walk=walk)  # grandchild
    assert procfs.children_of(kernel.child_pid, walk=walk) == set()


def test_stat_reader_forgets_a_dead_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    reader = procfs.StatReader()
    try:
        assert reader.read(proc.pid) is not None
        proc.kill()
        proc.wait()
        assert reader.read(proc.pid) is None
    finally:
        reader.close()


def test_cgroup_v2_files(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n")
    assert procfs.read_cgroup_memory(tmp_path) == procfs.CgroupMemory(1 << 30, 2)
    (tmp_path / "memory.max").write_text("max\n")
    assert procfs.read_cgroup_memory(tmp_path) == procfs.CgroupMemory(None, 2)


def test_cgroup_v1_files(tmp_path: Path) -> None:
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert procfs.read_cgroup_memory(tmp_path) == procfs.CgroupMemory(None, 0)
    (tmp_path / "memory.limit_in_bytes").write_text("536870912\n")
    assert procfs.read_cgroup_memory(tmp_path) == procfs.CgroupMemory(512 * MiB, 0)


def test_cgroup_memory_of_this_process_matches_its_cgroup_files() -> None:
    folder = procfs.cgroup_memory_dir(os.getpid())
    found = procfs.cgroup_memory()
    if folder is None:  # no memory controller visible here
        assert found is None
    else:
        assert found == procfs.read_cgroup_memory(folder)


# ---------------------------------------------------------------------------
# NVML, faked


class _NVMLError(Exception):
    pass


def _fake_pynvml(
    processes: dict[str, list[tuple[int, int | None]]], *, init_fails: bool = False, util: int = 37
) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    mod.NVMLError = _NVMLError  # type: ignore[attr-defined]
    calls: list[str] = []

    def nvmlInit() -> None:
        calls.append("init")
        if init_fails:
            raise _NVMLError("Driver Not Loaded")

    def nvmlShutdown() -> None:
        calls.append("shutdown")

    def _procs(kind: str) -> Callable[[Any], list[Any]]:
        def lister(handle: Any) -> list[Any]:
            return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in processes.get(kind, [])]

        return lister

    mod.nvmlInit = nvmlInit  # type: ignore[attr-defined]
    mod.nvmlShutdown = nvmlShutdown  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetComputeRunningProcesses = _procs("compute")  # type: ignore[attr-defined]
    mod.nvmlDeviceGetGraphicsRunningProcesses = _procs("graphics")  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=util, memory=5)  # type: ignore[attr-defined]
    mod.calls = calls  # type: ignore[attr-defined]
    return mod


# What nvidia-ml-py's nvmlInit() does on a machine without an NVIDIA driver.
NO_GPU_PYNVML = '''"""pynvml as on a machine without an NVIDIA GPU (a test's stand-in for nvidia-ml-py)."""


class NVMLError(Exception):
    pass


def nvmlInit() -> None:
    raise NVMLError("NVML Shared Library Not Found")
'''


@pytest.fixture
def no_gpu(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NVML as on a machine without a GPU, in this process and in every process the test starts.

    On a machine with an NVIDIA GPU the real ``pynvml`` answers (memory 0 for
    processes that use none, some utilisation), so a test that expects no GPU
    readings says so. A module ``pynvml`` whose ``nvmlInit()`` raises
    ``NVMLError`` goes into ``sys.modules`` here and first on ``PYTHONPATH``
    for subprocesses: the watcher runs as ``python -P -m``, and ``-P`` drops
    only the script's folder from the path, not ``PYTHONPATH``. Returns the
    folder holding the module.
    """
    folder = tmp_path_factory.mktemp("no-gpu")
    shim = folder / "pynvml.py"
    shim.write_text(NO_GPU_PYNVML)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(folder), os.environ.get("PYTHONPATH")))))
    spec = importlib.util.spec_from_file_location("pynvml", shim)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)  # undone after the test, like the environment
    return folder


def test_no_gpu_reaches_the_watcher_subprocess(no_gpu: Path) -> None:
    # The fixture's promise, checked on any machine: a process started the way
    # the watcher is (python -P) imports the stand-in, and NVML shows no GPU
    # there or here.
    probe = "import pynvml; from mlt_kernel.watcher.nvml import Gpu; print(pynvml.__file__, Gpu().available)"
    out = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == [str(no_gpu / "pynvml.py"), "False"]
    assert not Gpu().available


def test_nvml_reads_memory_of_the_given_pids(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(
        {
            "compute": [(101, 300 * MiB), (102, 200 * MiB), (999, 5000 * MiB)],
            "graphics": [(101, 300 * MiB)],  # the same process in both lists: counted once
        }
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpu = Gpu()
    assert gpu.available and gpu.device_count == 1
    assert gpu.process_memory({101, 102}) == 500 * MiB
    assert gpu.process_memory({555}) == 0  # uses no GPU
    assert gpu.utilization({101}) == 37.0
    assert gpu.utilization() == 37.0  # all devices when the pids use none
    gpu.close()
    assert fake.calls == ["init", "shutdown"]
    assert gpu.process_memory({101}) is None


def test_nvml_unknown_process_memory_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml({"compute": [(101, None)]}))
    assert Gpu().process_memory({101}) is None


def test_nvml_without_driver_degrades_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml({}, init_fails=True))
    caplog.set_level(logging.DEBUG, logger="mlt_kernel.watcher.nvml")
    gpu = Gpu()
    assert not gpu.available
    for _ in range(3):
        assert gpu.process_memory({os.getpid()}) is None
        assert gpu.utilization() is None
    lines = [r for r in caplog.records if r.name == "mlt_kernel.watcher.nvml"]
    assert len(lines) == 1 and "Driver Not Loaded" in lines[0].getMessage()


def test_nvml_without_package_degrades_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    caplog.set_level(logging.DEBUG, logger="mlt_kernel.watcher.nvml")
    assert Gpu().read({1}).memory_bytes is None
    assert len([r for r in caplog.records if r.name == "mlt_kernel.watcher.nvml"]) == 1


def test_watcher_records_gpu_peak_of_the_cell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kernel: FakeKernel
) -> None:
    # The watcher's loop in this process, on a pipe, with a fake GPU that sees
    # the kernel's child using 700 MiB.
    monkeypatch.setitem(
        sys.modules, "pynvml", _fake_pynvml({"compute": [(kernel.child_pid, 700 * MiB), (4242, 1 << 30)]})
    )
    read_end, write_end = os.pipe()
    watcher = Watcher(kernel.pid, "s-gpu", busy_interval=0.02, idle_interval=0.5, control_fd=read_end, gpu=Gpu())
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        os.write(write_end, f"exp {json.dumps(str(tmp_path))}\nstart 1 null\n".encode())
        time.sleep(0.2)
        os.write(write_end, b"end 1\nstop\n")
        thread.join(10)
        assert not thread.is_alive()
    finally:
        os.close(write_end)
        os.close(read_end)
    samples = _watcher_records(tmp_path, "s-gpu", "samples")
    assert {s["gpu_bytes"] for s in samples} == {700 * MiB}
    assert {s["gpu_util"] for s in samples} == {37.0}
    (usage,) = _watcher_records(tmp_path, "s-gpu", "cell_usage")
    assert usage["peak_gpu_bytes"] == 700 * MiB


def test_a_cell_start_is_written_at_the_reading_after_the_one_that_brought_it(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    # Driven step by step, as the watcher's loop reads its messages.
    session = "s-fresh"
    r, w = os.pipe()
    os.set_blocking(r, False)
    watcher = Watcher(kernel.pid, session, busy_interval=10.0, idle_interval=10.0, control_fd=r)
    try:
        watcher.set_experiment(tmp_path)

        def reading(*messages: bytes) -> list[int]:
            os.write(w, b"".join(messages))
            watcher._read_control()
            watcher._write_start()
            return [row["cell_seq"] for row in _watcher_records(tmp_path, session, "cells")]

        start = [b"start %d null " % seq + encode("cells", _start_row(session, seq, "fit()")) for seq in range(3)]
        assert reading(start[1]) == []  # it may end within the millisecond
        assert reading() == [1]  # still running a reading later
        assert reading(b"end 1\n", start[2], b"end 2\n") == [1]  # started and ended between readings
        assert reading() == [1]
    finally:
        watcher._close()
        os.close(r)
        os.close(w)


def test_samples_are_written_in_batches_while_a_cell_runs(tmp_path: Path, kernel: FakeKernel) -> None:
    # Driven step by step: a batch of SAMPLE_BATCH samples is one write during
    # a cell; the cell's end writes what is pending before its cell_usage.
    watcher = Watcher(kernel.pid, "s-batch", busy_interval=10.0, idle_interval=10.0, control_fd=-1)
    watcher.set_experiment(tmp_path)
    watcher._take_sample()  # between cells: written at once
    assert len(_watcher_records(tmp_path, "s-batch", "samples")) == 1
    watcher.cell_started(1, "run-1")
    for _ in range(SAMPLE_BATCH - 1):
        watcher._take_sample()
    assert len(_watcher_records(tmp_path, "s-batch", "samples")) == 1
    watcher._take_sample()
    assert len(_watcher_records(tmp_path, "s-batch", "samples")) == 1 + SAMPLE_BATCH
    watcher._take_sample()
    watcher.cell_finished(1)
    records = _watcher_records(tmp_path, "s-batch")
    assert [r["table"] for r in records] == ["samples"] * (SAMPLE_BATCH + 2) + ["cell_usage"]
    assert [r["cell_seq"] for r in records[1:-1]] == [1] * (SAMPLE_BATCH + 1)
    assert records[-1]["samples"] == SAMPLE_BATCH + 1
    watcher.cell_started(2, None)
    watcher._take_sample()
    watcher._close()  # the session's end writes the pending sample
    assert _watcher_records(tmp_path, "s-batch", "samples")[-1]["cell_seq"] == 2


def test_write_many_is_one_write_of_whole_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlt_kernel.core import gilio

    writes: list[bytes] = []
    real = gilio.write
    monkeypatch.setattr(gilio, "write", lambda fd, data: writes.append(data) or real(fd, data))
    writer = JournalWriter(tmp_path / "j.jsonl")
    writer.write_many("samples", [{"session_id": "s", "t": i, "rss_bytes": i} for i in range(3)])
    writer.write_many("samples", [])
    writer.close()
    assert len(writes) == 1 and writes[0].count(b"\n") == 3
    records, _, bad = read_lines(tmp_path / "j.jsonl")
    assert bad == 0 and [r["t"] for r in records] == [0, 1, 2]


# ---------------------------------------------------------------------------
# The watcher process


def test_samples_children_and_cell_usage(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path, no_gpu: Path
) -> None:
    session = "s-busy"
    handle = start_watcher(kernel.pid, session, busy_interval=0.05, idle_interval=0.5)
    handle.set_experiment(tmp_path)
    handle.cell_started(1, "run-1")
    kernel.command("alloc 80")
    time.sleep(0.8)
    handle.cell_finished(1)
    time.sleep(2.2)
    handle.stop()
    assert not handle.alive

    samples = _watcher_records(tmp_path, session, "samples")
    busy = [s for s in samples if s["cell_seq"] == 1]
    idle = [s for s in samples if s["cell_seq"] is None]
    assert all(s["run_id"] == "run-1" for s in busy)
    assert all(s["children_rss_bytes"] >= (CHILD_MIB - 4) * MiB for s in samples)
    assert max(s["rss_bytes"] - s["children_rss_bytes"] for s in busy) >= 80 * MiB
    assert all(s["gpu_bytes"] is None and s["gpu_util"] is None for s in samples)  # no_gpu

    def gaps(rows: list[dict[str, Any]]) -> list[float]:
        ts = sorted(r["t"] for r in rows)
        return [(b - a) / 1e6 for a, b in itertools.pairwise(ts)]

    # The last sample is the stop's own, taken whenever the stop came: not a gap.
    idle_after = sorted((s for s in idle if s["t"] > max(r["t"] for r in busy)), key=lambda s: s["t"])[:-1]
    assert len(idle_after) >= 2
    busy_gap, idle_gap = statistics.median(gaps(busy)), statistics.median(gaps(idle_after))
    # Never faster than asked (the next sample is due an interval after the
    # last one began); a busy machine only makes gaps longer, so above that
    # only the order is asserted. The cadence itself: benchmarks/sampler.py.
    assert 0.04 <= busy_gap < idle_gap
    assert 0.4 <= idle_gap < 2.0

    (usage,) = _watcher_records(tmp_path, session, "cell_usage")
    assert usage["cell_seq"] == 1 and usage["samples"] == len(busy) >= 2
    assert usage["children_peak_rss_bytes"] >= (CHILD_MIB - 4) * MiB
    assert usage["peak_gpu_bytes"] is None


SELF_WATCHED = """
import os, sys, time
from mlt_kernel.watcher.handle import WatcherHandle
handle = WatcherHandle.start(os.getpid(), "s-self", busy_interval=0.05)
handle.set_experiment(sys.argv[1])
handle.cell_started(1, None)
time.sleep(0.5)
handle.cell_finished(1)
handle.stop()
"""


def test_watcher_does_not_count_itself_among_the_kernels_children(tmp_path: Path) -> None:
    # As in the kernel: the watched process is the watcher's parent, with no other child.
    subprocess.run([sys.executable, "-c", SELF_WATCHED, str(tmp_path)], check=True, timeout=60)
    samples = _watcher_records(tmp_path, "s-self", "samples")
    assert samples and all(s["children_rss_bytes"] == 0 for s in samples)


HELPER_PARENT = """
import subprocess, sys
hold = "import sys; b = b'h' * (int(sys.argv[1]) << 20); sys.stdin.read()"
user = subprocess.Popen([sys.executable, "-c", hold, "8"], stdin=subprocess.PIPE)
# Looks like MLTrack's helpers (python -P -m mlt_kernel.store.recovery …) to the watcher.
helper = subprocess.Popen([sys.executable, "-c", hold, "96", "-m", "mlt_kernel.store.recovery"], stdin=subprocess.PIPE)
print(user.pid, helper.pid, flush=True)
sys.stdin.read()
"""


def test_mltrack_helpers_are_not_counted_as_children() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", HELPER_PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    sampler = Sampler(parent.pid)
    try:
        assert parent.stdout is not None
        user, helper = (int(p) for p in parent.stdout.readline().split())
        _wait_for(lambda: (procfs.rss_bytes(helper) or 0) > 90 * MiB, what="the helper's memory")
        sampler.rescan()
        assert sampler.children == {user}
        reading = sampler.sample()
        assert reading is not None and reading.children_rss_bytes < 60 * MiB
    finally:
        sampler.close()
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.close()  # its children exit with it (their stdin closes)
        parent.wait(10)
        parent.stdout.close()
        for pid in (user, helper):
            _wait_gone(pid)


def _short_cell(handle: WatcherHandle, exp: Path, session: str, cell_seq: int) -> None:
    """A cell that starts and ends between two samples; returns once the watcher wrote the sample after it and stopped."""
    handle.set_experiment(exp)
    _wait_for(lambda: _watcher_records(exp, session, "samples"), what="the first sample")
    handle.cell_started(cell_seq, None)
    handle.cell_finished(cell_seq)
    # Nothing on the reply path: the next sample comes a moment after the cell.
    _wait_for(lambda: len(_watcher_records(exp, session, "samples")) >= 2, what="the after-cell sample")
    handle.stop()


def test_a_cell_too_short_to_sample_takes_the_latest_reading(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    handle = start_watcher(kernel.pid, "s-short", busy_interval=10.0, idle_interval=10.0)
    _short_cell(handle, tmp_path, "s-short", 7)
    (usage,) = _watcher_records(tmp_path, "s-short", "cell_usage")
    assert usage["samples"] == 1 and usage["children_peak_rss_bytes"] > 0


def test_a_short_cell_with_nothing_beside_the_kernel_gets_no_usage_record(
    start_watcher: Callable[..., WatcherHandle], tmp_path: Path, no_gpu: Path
) -> None:
    # Nothing beside the kernel: no child process and no GPU memory to report.
    lone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        handle = start_watcher(lone.pid, "s-lone", busy_interval=10.0, idle_interval=10.0)
        _short_cell(handle, tmp_path, "s-lone", 1)
        assert _watcher_records(tmp_path, "s-lone", "cell_usage") == []
    finally:
        lone.kill()
        lone.wait()


def test_nothing_written_before_the_experiment_folder_and_folder_switch(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    handle = start_watcher(kernel.pid, "s-switch", busy_interval=0.05, idle_interval=0.2)
    handle.cell_started(1, None)
    time.sleep(0.5)
    assert not tmp_path.joinpath("first").exists() and list(tmp_path.iterdir()) == []
    handle.set_experiment(first)
    handle.cell_finished(1)
    time.sleep(0.3)
    handle.set_experiment(second)
    time.sleep(0.5)
    handle.stop()
    early = _watcher_records(first, "s-switch", "samples")
    # Samples taken before the folder was known are kept and written to it.
    assert len([s for s in early if s["cell_seq"] == 1]) >= 2
    assert _watcher_records(first, "s-switch", "cell_usage")
    later = _watcher_records(second, "s-switch", "samples")
    assert later and min(s["t"] for s in later) > max(s["t"] for s in early)


def test_stop_leaves_no_process_and_ignores_sigint(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    handle = start_watcher(kernel.pid, "s-stop", idle_interval=0.1)
    handle.set_experiment(tmp_path)
    _wait_for(lambda: _watcher_records(tmp_path, "s-stop", "samples"), what="a first sample")
    os.kill(handle.pid, signal.SIGINT)  # what a Jupyter interrupt does to the process group
    time.sleep(0.3)
    assert handle.alive
    # Status 0: it wrote its last records and exited when told, rather than
    # being killed at the timeout (how fast: benchmarks/sampler.py).
    handle.stop(timeout=10)
    assert not handle.alive and handle._process.returncode == 0
    assert not _pid_running(handle.pid)
    # The kernel compacts its session after a clean stop; the watcher left its journal of samples.
    assert (tmp_path / "journals" / journal_name("s-stop", "samples")).exists()


def test_watcher_exits_when_stdin_closes(kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle]) -> None:
    handle = start_watcher(kernel.pid, "s-eof")
    assert handle._process.stdin is not None
    handle._process.stdin.close()
    _wait_for(lambda: not handle.alive, timeout=5, what="the watcher to exit")
    assert kernel.proc.poll() is None  # the kernel lives on


def test_watcher_exits_when_kernel_exits_without_experiment(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    handle = start_watcher(kernel.pid, "s-orphan")
    time.sleep(0.3)
    kernel.kill()
    _wait_for(lambda: not handle.alive, timeout=5, what="the watcher to exit")
    assert list(tmp_path.iterdir()) == []


def test_handle_never_raises_once_the_watcher_is_gone(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], caplog: pytest.LogCaptureFixture
) -> None:
    handle = start_watcher(kernel.pid, "s-gone")
    handle._process.kill()
    handle._process.wait()
    caplog.set_level(logging.WARNING, logger="mlt_kernel.watcher")
    for seq in range(200):
        handle.cell_started(seq, "r")
        handle.cell_finished(seq)
    handle.set_experiment("/nonexistent/x")
    handle.cell_started("not a number", None)  # type: ignore[arg-type]
    handle.stop(timeout=0.5)
    assert len([r for r in caplog.records if r.name == "mlt_kernel.watcher"]) == 1


def test_a_burst_of_cells_reaches_the_watcher(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    # Far more than a default 64 KiB pipe holds between two readings of it.
    session = "s-burst"
    handle = start_watcher(kernel.pid, session, busy_interval=0.05)
    handle.set_experiment(tmp_path)
    n = 300
    rows = [encode("cells", _start_row(session, seq, f"step({seq})  # " + "x" * 500)) for seq in range(n)]
    for seq in range(n):
        assert handle.cell_started(seq, "run-x", rows[seq])
        handle.cell_finished(seq)
    handle.stop()
    usage = _watcher_records(tmp_path, session, "cell_usage")
    assert [u["cell_seq"] for u in usage] == list(range(n))


def _write_kernel_journal(exp: Path, session: str, kernel_pid: int, *, status: str = "running") -> dict[str, int]:
    """Journal rows the MLTrack kernel writes ahead: the session, an open run and an open cell."""
    t0 = now_us() - 2_000_000
    writer = JournalWriter(exp / "journals" / journal_name(session, "kernel"))
    writer.write(
        "sessions",
        {
            "session_id": session,
            "started_at": t0,
            "status": "running",
            "kernel_pid": kernel_pid,
            "hostname": "h",
            "python": sys.version.split()[0],
            "exp_path": str(exp),
        },
    )
    writer.write(
        "cells",
        {
            "session_id": session,
            "cell_seq": 1,
            "execution_count": 1,
            "code": "x = 1",
            "started_at": t0 + 1000,
            "ended_at": t0 + 2000,
            "wall_s": 0.001,
            "status": "ok",
        },
    )
    writer.write(
        "runs",
        {
            "run_id": "run-k",
            "name": "mlp",
            "session_id": session,
            "status": "running",
            "started_at": t0 + 5000,
            "params": {"lr": 0.001},
            "first_cell_seq": 2,
        },
    )
    writer.write(
        "cells",
        {
            "session_id": session,
            "cell_seq": 2,
            "execution_count": 2,
            "code": "train()",
            "run_id": "run-k",
            "run_name": "mlp",
            "started_at": t0 + 5000,
            "rss_before_bytes": 10 * MiB,
            "status": "running",
        },
    )
    if status != "running":
        writer.write("cells", {"session_id": session, "cell_seq": 2, "status": "ok", "started_at": t0 + 5000})
        writer.write("runs", {"run_id": "run-k", "session_id": session, "status": "finished", "started_at": t0 + 5000})
        writer.write("sessions", {"session_id": session, "started_at": t0, "status": status, "kernel_pid": kernel_pid})
    writer.close()
    return {"t0": t0}


def test_killed_kernel_gets_killed_rows_and_a_compacted_session(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    session = "20261127T100000Z-deadbeef"
    _write_kernel_journal(tmp_path, session, kernel.pid)
    handle = start_watcher(kernel.pid, session, busy_interval=0.05, idle_interval=1.0)
    handle.set_experiment(tmp_path)
    handle.cell_started(2, "run-k")
    kernel.command("alloc 120")
    allocated_us = now_us()
    time.sleep(0.6)
    kill_us = now_us()
    kernel.proc.send_signal(signal.SIGKILL)
    _wait_for(lambda: not handle.alive, timeout=20, what="the watcher to record the death and exit")
    assert handle._process.returncode == 0

    assert list((tmp_path / "journals").iterdir()) == []  # compacted
    samples = _parquet_latest(tmp_path, "samples")
    last = max(s["t"] for s in samples)
    # Sampled on up to the kill: a reading after the allocation, 0.6 s before
    # it (how close to the kill the last one is: benchmarks/sampler.py).
    assert last.timestamp() >= allocated_us / 1e6

    cells = {c["cell_seq"]: c for c in _parquet_latest(tmp_path, "cells")}
    assert cells[1]["status"] == "ok"
    dead = cells[2]
    assert dead["status"] == "killed" and dead["code"] == "train()" and dead["run_id"] == "run-k"
    assert abs(dead["ended_at"].timestamp() - kill_us / 1e6) < 1.0
    assert dead["wall_s"] == pytest.approx((dead["ended_at"] - dead["started_at"]).total_seconds(), abs=1e-3)
    assert dead["peak_rss_bytes"] >= 120 * MiB
    assert dead["children_peak_rss_bytes"] >= (CHILD_MIB - 4) * MiB

    (run,) = _parquet_latest(tmp_path, "runs")
    assert run["status"] == "killed" and run["params"] == '{"lr":0.001}' and run["wall_s"] > 0
    (sess,) = _parquet_latest(tmp_path, "sessions")
    assert sess["status"] == "killed" and sess["hostname"] == "h"
    assert sess["death_cause"] in ("unknown", "oom")
    assert sess["last_rss_bytes"] >= (120 + CHILD_MIB - 8) * MiB
    (usage,) = _parquet_latest(tmp_path, "cell_usage")
    assert usage["cell_seq"] == 2 and usage["samples"] >= 2

    # The public read path shows the same.
    from mlt_kernel.read import query as query_mod

    q = query_mod.Query(tmp_path)
    try:
        df = q.df("SELECT cell_seq, status FROM cells ORDER BY cell_seq")
        assert list(df["status"]) == ["ok", "killed"]
        assert q.rows("SELECT status FROM runs") == [("killed",)]
    finally:
        q.close()


def _start_row(session: str, cell_seq: int, code: str) -> dict[str, Any]:
    """The start of a cell as the kernel hands it to the watcher."""
    return {
        "session_id": session,
        "cell_seq": cell_seq,
        "execution_count": cell_seq,
        "code": code,
        "started_at": now_us(),
        "rss_before_bytes": 10 * MiB,
        "status": "running",
    }


def test_the_watcher_writes_a_cell_start_only_once_the_cell_runs_on(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    session = "s-starts"
    handle = start_watcher(kernel.pid, session)
    handle.set_experiment(tmp_path)
    # A quick cell: its start is never written (its final row is the kernel's).
    assert handle.cell_started(1, None, encode("cells", _start_row(session, 1, "quick()")))
    handle.cell_finished(1)
    line = encode("cells", _start_row(session, 2, "train()"))
    assert handle.cell_started(2, "run-x", line)
    rows = _wait_for(lambda: _watcher_records(tmp_path, session, "cells"), what="the long cell's start")
    # As the kernel stamped it (its final row is later), hashed by the watcher.
    assert rows == [{**json.loads(line), "code_sha1": code_sha1("train()")}]
    handle.cell_finished(2)
    # Too long for one message: the start is told, the row left to the kernel.
    assert not handle.cell_started(3, None, encode("cells", _start_row(session, 3, "é" * 2000)))
    handle.cell_finished(3)
    handle.stop()
    assert [r["cell_seq"] for r in _watcher_records(tmp_path, session, "cells")] == [2]
    # Every start was told (with a child beside the kernel, even a quick cell has its usage).
    assert [u["cell_seq"] for u in _watcher_records(tmp_path, session, "cell_usage")] == [1, 2, 3]


def test_a_cell_start_the_watcher_holds_is_marked_killed(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    session = "s-held"
    _write_kernel_journal(tmp_path, session, kernel.pid)
    handle = start_watcher(kernel.pid, session)
    handle.set_experiment(tmp_path)
    assert handle.cell_started(3, "run-k", encode("cells", {**_start_row(session, 3, "fit()"), "run_id": "run-k"}))
    kernel.proc.send_signal(signal.SIGKILL)  # before the watcher has read it
    _wait_for(lambda: not handle.alive, timeout=20, what="the watcher to record the death and exit")
    cells = {c["cell_seq"]: c for c in _parquet_latest(tmp_path, "cells")}
    assert (cells[2]["status"], cells[3]["status"]) == ("killed", "killed")
    assert cells[3]["code"] == "fit()" and cells[3]["run_id"] == "run-k"
    assert cells[3]["code_sha1"] == code_sha1("fit()")


def test_kernel_that_ended_cleanly_is_not_marked_killed(
    kernel: FakeKernel, start_watcher: Callable[..., WatcherHandle], tmp_path: Path
) -> None:
    session = "s-ended"
    _write_kernel_journal(tmp_path, session, kernel.pid, status="ended")
    handle = start_watcher(kernel.pid, session)
    handle.set_experiment(tmp_path)
    time.sleep(0.3)
    kernel.kill()
    _wait_for(lambda: not handle.alive, timeout=20, what="the watcher to exit")
    assert {r["status"] for r in _parquet_latest(tmp_path, "sessions")} == {"ended"}
    assert {r["status"] for r in _parquet_latest(tmp_path, "cells")} == {"ok"}
    assert {r["status"] for r in _parquet_latest(tmp_path, "runs")} == {"finished"}


def test_oom_kill_is_recorded_from_the_cgroup(kernel: FakeKernel, tmp_path: Path) -> None:
    # A cgroup we control: the limit, and the OOM-kill counter rising before the death.
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{2 << 30}\n")
    (cgroup / "memory.events").write_text("oom 0\noom_kill 0\n")
    exp = tmp_path / "exp"
    session = "s-oom"
    _write_kernel_journal(exp, session, kernel.pid)
    read_end, write_end = os.pipe()
    watcher = Watcher(kernel.pid, session, busy_interval=0.05, control_fd=read_end)
    watcher._cgroup, watcher._oom_kills_at_start = cgroup, 0
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        os.write(write_end, f'exp {json.dumps(str(exp))}\nstart 2 "run-k"\n'.encode())
        time.sleep(0.3)
        (cgroup / "memory.events").write_text("oom 1\noom_kill 1\n")
        kernel.kill()
        thread.join(20)
        assert not thread.is_alive()
    finally:
        os.close(write_end)
        os.close(read_end)
    (sess,) = _parquet_latest(exp, "sessions")
    assert (sess["status"], sess["death_cause"], sess["oom_kill"], sess["memory_limit_bytes"]) == (
        "killed",
        "oom",
        True,
        2 << 30,
    )


def test_a_forked_child_of_the_kernel_sends_the_watcher_nothing() -> None:
    # `cat` stands in for the watcher: it echoes what the handle sends.
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    handle = WatcherHandle(proc)
    pid = os.fork()
    if pid == 0:  # the child: a forked worker running the kernel's code
        try:
            handle.cell_started(1, "from-the-child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    handle.cell_started(2, None)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    assert proc.stdout.read() == b"start 2 null\n"
    proc.wait(5)
