"""The resource watcher: its own CPU cost, the memory spikes its timeline catches, its timing.

```text
python benchmarks/sampler.py [--seconds 10] [--spikes 40] [--deaths 5]
```

(a) CPU of the watcher process (psutil ``cpu_times`` over ``--seconds`` each):
    idle (1 s sampling) and busy (50 ms sampling, a cell open), against a
    naive psutil sampler at 50 ms (``children(recursive=True)`` + ``memory_info``
    + ``cpu_times`` per sample) running in the same window on the same tree.
    Targets: < 1 % of one core idle, < 3 % busy.
(b) A child of the kernel makes ``--spikes`` 100 MiB spikes held 30 ms at random
    moments. A spike counts as caught when a sample taken during it reads
    >= 90 MiB above the baseline: the watcher's 50 ms timeline against two
    psutil samplers running at the same time as threads of this otherwise idle
    process (``memory_info`` of the child): one every 50 ms, the watcher's own
    interval, and one every 10 s (the interval of MLflow, Aim and Trackio
    system metrics). A thread here is the best case for an in-process sampler:
    in a kernel it would wait for the GIL while the user's code holds it.
(c) The watcher's cadence, which the test suite asserts only loosely (a busy
    machine makes it slower): gaps between samples at 50 ms (the spike run)
    and at 1 s (the idle part of the CPU run), and the fewest samples in any
    0.8 s of the 50 ms timeline.
(d) Its reaction times: ``--deaths`` kernel-like processes killed with SIGKILL
    during a cell (50 ms sampling), each at a random moment — how long before
    the kill its last sample was taken, and how long after it the watcher had
    recorded the death, compacted the session and exited; and how long a clean
    ``stop`` takes (at the end of the CPU run and of the spike run).

About a minute and a half in all. Needs Linux and psutil.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from mlt_kernel import Experiment
from mlt_kernel.store.journal import journal_name, read_lines
from mlt_kernel.watcher import procfs
from mlt_kernel.watcher.handle import WatcherHandle

MiB = 1 << 20
SPIKE_MIB = 100
CATCH_MIB = 90
HOLD_S = 0.030
SLOW_INTERVAL_S = 10.0
FAST_INTERVAL_S = 0.05
BUSY_INTERVAL_S = 0.05
IDLE_INTERVAL_S = 1.0
WINDOW_S = 0.8  # the length of the cell in tests/test_watcher.py's cadence test

# A kernel-like process: two idle children (workers), sleeps until killed.
IDLE_KERNEL = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) for _ in range(2)]
print(" ".join(str(k.pid) for k in kids), flush=True)
sys.stdin.read()
"""

# A kernel-like process whose child makes the spikes and reports them as JSON.
SPIKE_KERNEL = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], stdin=subprocess.PIPE)
print(child.pid, flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""

SPIKER = """
import json, random, sys, time
n, hold, size, out = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
baseline = b"b" * (8 << 20)
time.sleep(1.5)  # let the samplers see the baseline
spikes = []
for _ in range(n):
    time.sleep(random.uniform(0.15, 0.65))
    t0 = time.time()
    block = b"x" * size          # malloc + memset: every page touched
    t1 = time.time()
    time.sleep(hold)
    t2 = time.time()
    del block                    # a large block is unmapped at once
    t3 = time.time()
    spikes.append((t0, t1, t2, t3))
with open(out, "w") as f:
    json.dump(spikes, f)
sys.stdin.read()
"""

NAIVE_SAMPLER = """
import sys, time, psutil
root = psutil.Process(int(sys.argv[1]))
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    procs = [root, *root.children(recursive=True)]
    rss = cpu = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            t = p.cpu_times(); cpu += t.user + t.system
        except psutil.Error:
            pass
    time.sleep(0.05)
"""


def _run_ns(pid: int) -> int:
    """CPU time of every thread of *pid* in ns (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def cpu_percent(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU % of *proc* over *seconds*: from psutil (10 ms ticks) and from schedstat (ns)."""
    t0, c0, n0 = time.monotonic(), sum(proc.cpu_times()[:2]), _run_ns(proc.pid)
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return 100.0 * (sum(proc.cpu_times()[:2]) - c0) / wall, 100.0 * (_run_ns(proc.pid) - n0) / 1e9 / wall


def gaps_s(times: list[float]) -> list[float]:
    """Seconds between consecutive sample times."""
    return [b - a for a, b in itertools.pairwise(sorted(times))]


def fewest_in_window(times: list[float], window: float) -> int:
    """The fewest samples in any *window* seconds of a timeline (windows that start at a sample)."""
    ts = sorted(times)
    counts = [bisect.bisect_left(ts, t + window) - i for i, t in enumerate(ts) if t + window <= ts[-1]]
    return min(counts, default=0)


def timeline(exp: Path, session: str) -> list[dict[str, Any]]:
    """The watcher's samples of *session*, from its journal (read before any compaction)."""
    records, _, _ = read_lines(exp / "journals" / journal_name(session, "watcher"))
    return [r for r in records if r["table"] == "samples"]


def stop_s(handle: WatcherHandle) -> float:
    """Seconds from a clean ``stop`` until the watcher has exited."""
    t0 = time.monotonic()
    handle.stop()
    return time.monotonic() - t0


def measure_cpu(seconds: float, exp: Path) -> dict[str, Any]:
    kernel = subprocess.Popen(
        [sys.executable, "-c", IDLE_KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert kernel.stdout is not None and kernel.stdin is not None
    kernel.stdout.readline()
    session = "bench-cpu"
    handle = WatcherHandle.start(kernel.pid, session, busy_interval=BUSY_INTERVAL_S, idle_interval=IDLE_INTERVAL_S)
    stopped_in: float | None = None
    try:
        handle.set_experiment(exp)
        watcher = psutil.Process(handle.pid)
        time.sleep(1.5)  # start-up (imports) is not steady state
        idle = cpu_percent(watcher, seconds)
        handle.cell_started(1, None)
        naive = subprocess.Popen([sys.executable, "-c", NAIVE_SAMPLER, str(kernel.pid), str(seconds + 1)])
        time.sleep(0.5)
        naive_proc = psutil.Process(naive.pid)
        result: dict[str, tuple[float, float]] = {}
        thread = threading.Thread(target=lambda: result.__setitem__("naive", cpu_percent(naive_proc, seconds)))
        thread.start()
        busy = cpu_percent(watcher, seconds)
        thread.join()
        naive.wait()
        handle.cell_finished(1)
        stopped_in = stop_s(handle)
    finally:
        handle.stop()  # a no-op after a clean stop
        kernel.stdin.close()
        kernel.wait()
    # Idle: the samples before the cell (those after it follow the cell's end, not the interval).
    samples = timeline(exp, session)
    first_busy = min((s["t"] / 1e6 for s in samples if s["cell_seq"] == 1), default=float("inf"))
    idle_gaps = gaps_s([s["t"] / 1e6 for s in samples if s["cell_seq"] is None and s["t"] / 1e6 < first_busy])
    return {"idle": idle, "busy": busy, "naive": result["naive"], "idle_gaps": idle_gaps, "stop_s": stopped_in}


def psutil_sampler(pid: int, interval: float, stop: threading.Event, out: list[tuple[float, int]]) -> None:
    """What a psutil system-metrics thread sees: the RSS of *pid* every *interval* s, from a random phase."""
    proc = psutil.Process(pid)
    if stop.wait(random.uniform(0, interval)):
        return
    while True:
        try:
            out.append((time.time(), proc.memory_info().rss))
        except psutil.Error:
            return
        if stop.wait(interval):
            return


def measure_spikes(n: int, exp: Path) -> dict[str, Any]:
    report = exp / "spikes.json"
    kernel = subprocess.Popen(
        [sys.executable, "-c", SPIKE_KERNEL, SPIKER, str(n), str(HOLD_S), str(SPIKE_MIB * MiB), str(report)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert kernel.stdout is not None and kernel.stdin is not None
    child = int(kernel.stdout.readline())
    session = "bench-spikes"
    handle = WatcherHandle.start(kernel.pid, session, busy_interval=BUSY_INTERVAL_S, idle_interval=IDLE_INTERVAL_S)
    stop = threading.Event()
    readings: dict[str, list[tuple[float, int]]] = {"psutil_fast": [], "psutil_slow": []}
    threads = [
        threading.Thread(target=psutil_sampler, args=(child, FAST_INTERVAL_S, stop, readings["psutil_fast"])),
        threading.Thread(target=psutil_sampler, args=(child, SLOW_INTERVAL_S, stop, readings["psutil_slow"])),
    ]
    stopped_in: float | None = None
    try:
        handle.set_experiment(exp)
        handle.cell_started(1, None)  # a cell runs the whole time: 50 ms sampling
        for thread in threads:
            thread.start()
        while not report.exists():
            time.sleep(0.1)
        time.sleep(0.2)
        handle.cell_finished(1)
        stopped_in = stop_s(handle)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        handle.stop()  # a no-op after a clean stop
        kernel.stdin.close()
        kernel.wait()
    spikes = json.loads(report.read_text())
    samples = timeline(exp, session)
    readings["watcher"] = [(s["t"] / 1e6, s["children_rss_bytes"]) for s in samples]
    before = [rss for t, rss in readings["watcher"] if t < spikes[0][0]]
    threshold = statistics.median(before) + CATCH_MIB * MiB
    first, last = spikes[0][0], spikes[-1][3]
    result: dict[str, Any] = {
        "n": len(spikes),
        "span_s": last - first,
        "alloc_ms": 1000 * statistics.median(t1 - t0 for t0, t1, _, _ in spikes),
        "spike_ms": 1000 * statistics.median(t3 - t0 for t0, _, _, t3 in spikes),
        "full_ms": 1000 * statistics.median(t3 - t1 for _, t1, _, t3 in spikes),
        "busy_times": [s["t"] / 1e6 for s in samples if s["cell_seq"] == 1],
        "stop_s": stopped_in,
    }
    for name, got in readings.items():
        # A psutil sampler's own baseline where it has readings; never below the watcher's threshold.
        own = max(threshold, min(rss for _, rss in got) + CATCH_MIB * MiB) if got and name != "watcher" else threshold
        result[name] = {
            "samples": len([t for t, _ in got if first <= t <= last]),
            "hits": sum(any(t0 <= t <= t3 + 0.005 and rss >= own for t, rss in got) for t0, _, _, t3 in spikes),
        }
    return result


def measure_deaths(n: int, exp: Path) -> dict[str, list[float]]:
    """Kill *n* kernel-like processes during a cell (SIGKILL, 50 ms sampling).

    Returns, per kill, the seconds from the last sample to the kill
    (``before_kill``) and from the kill to the watcher's exit (``to_exit``).
    """
    before_kill: list[float] = []
    to_exit: list[float] = []
    for i in range(n):
        folder = exp / f"death-{i}"
        kernel = subprocess.Popen(
            [sys.executable, "-c", IDLE_KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert kernel.stdout is not None and kernel.stdin is not None
        kernel.stdout.readline()
        handle = WatcherHandle.start(
            kernel.pid, f"bench-death-{i}", busy_interval=BUSY_INTERVAL_S, idle_interval=IDLE_INTERVAL_S
        )
        try:
            handle.set_experiment(folder)
            handle.cell_started(1, None)
            time.sleep(random.uniform(0.5, 1.0))  # a random phase against the 50 ms samples
            killed_at = time.time()
            kernel.kill()
            while handle.alive:  # it records the death, compacts the session and exits
                time.sleep(0.001)
            to_exit.append(time.time() - killed_at)
        finally:
            handle.stop()
            kernel.wait()
            kernel.stdin.close()
            kernel.stdout.close()
        with Experiment(folder) as e:
            last = e.samples()["t"].max().timestamp()
        before_kill.append(killed_at - last)
    return {"before_kill": before_kill, "to_exit": to_exit}


def spread(values: list[float]) -> str:
    """``median / p95 / max`` in ms."""
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:6.1f} / {p95 * 1000:6.1f} / {ordered[-1] * 1000:6.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each CPU measurement (default 10)")
    parser.add_argument("--spikes", type=int, default=40, help="number of memory spikes (default 40)")
    parser.add_argument("--deaths", type=int, default=5, help="kernels killed for the reaction times (default 5)")
    args = parser.parse_args()
    if not procfs.AVAILABLE:
        print("the watcher samples /proc: this benchmark needs Linux")
        return 0
    n_procs = sum(1 for e in os.listdir("/proc") if e.isdigit())
    print(f"machine: {os.cpu_count()} CPUs, {n_procs} processes in /proc, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="mlt-bench-") as tmp:
        cpu = measure_cpu(args.seconds, Path(tmp) / "cpu")
        spikes = measure_spikes(args.spikes, Path(tmp) / "spikes")
        deaths = measure_deaths(args.deaths, Path(tmp) / "deaths")

    print()
    print(f"(a) watcher CPU, % of one core, over {args.seconds:.0f} s each")
    print(f"    {'sampler':<44} {'psutil':>7} {'schedstat':>10}  target")
    rows = [
        ("watcher, idle (1 s sampling)", cpu["idle"], "< 1"),
        ("watcher, busy (50 ms sampling)", cpu["busy"], "< 3"),
        ("naive psutil sampler, 50 ms (same window)", cpu["naive"], ""),
    ]
    for label, (ticks, precise), target in rows:
        print(f"    {label:<44} {ticks:>7.2f} {precise:>10.3f}  {target}")
    print("    (psutil counts 10 ms clock ticks; schedstat counts nanoseconds)")
    if cpu["busy"][1] > 0:
        print(f"    naive / watcher at 50 ms: {cpu['naive'][1] / cpu['busy'][1]:.1f}x")

    n = spikes["n"]
    rate = {name: spikes[name]["hits"] / n for name in ("watcher", "psutil_fast", "psutil_slow")}
    # A sampler every I s reads a spike that stays above the threshold for d s
    # with probability about min(1, d / I): d is between the time the whole
    # block is allocated (allocated -> freed) and the whole spike (the
    # threshold is crossed during the allocation). Each 10 s sample lands
    # inside some spike with probability (time spent in spikes / span).
    spike_s, full_s = spikes["spike_ms"] / 1000, spikes["full_ms"] / 1000
    duty = n * spike_s / spikes["span_s"] if spikes["span_s"] else 0.0
    expected_slow = spikes["psutil_slow"]["samples"] * duty
    print()
    print(
        f"(b) {n} spikes of {SPIKE_MIB} MiB held {HOLD_S * 1000:.0f} ms in a child of the kernel over {spikes['span_s']:.1f} s "
        f"(allocation {spikes['alloc_ms']:.0f} ms, whole spike {spikes['spike_ms']:.0f} ms, median)"
    )
    print(f"    {'sampler (all in the same run)':<36} {'samples':>8} {'caught':>8} {'rate':>7}")
    rows_b = [
        ("watcher timeline, 50 ms (/proc)", "watcher"),
        ("psutil thread, 50 ms", "psutil_fast"),
        ("psutil thread, 10 s", "psutil_slow"),
    ]
    for label, name in rows_b:
        got = spikes[name]
        print(f"    {label:<36} {got['samples']:>8} {got['hits']:>5}/{n:<2} {rate[name]:>7.0%}")
    print(
        f"    expected: a sampler every 50 ms catches {min(1.0, full_s / FAST_INTERVAL_S):.0%} to "
        f"{min(1.0, spike_s / FAST_INTERVAL_S):.0%} of them (fully allocated for {spikes['full_ms']:.0f} ms);"
    )
    print(
        f"    one every 10 s {expected_slow:.2f} of them in all "
        f"(its {spikes['psutil_slow']['samples']} samples x the time spent in spikes)"
    )
    for label, name in (("psutil 50 ms", "psutil_fast"), ("psutil 10 s", "psutil_slow")):
        ratio = f"{rate['watcher'] / rate[name]:.1f}x" if rate[name] else f"inf (the {label} sampler caught none)"
        print(f"    catch-rate ratio watcher / {label}: {ratio}")

    busy = spikes["busy_times"]
    print()
    print("(c) the watcher's cadence: gaps between samples, ms (median / p95 / max)")
    idle_gaps = cpu["idle_gaps"]
    print(f"    busy, {BUSY_INTERVAL_S * 1000:.0f} ms asked ({len(busy)} samples, spike run): {spread(gaps_s(busy))}")
    print(
        f"    idle, {IDLE_INTERVAL_S * 1000:.0f} ms asked ({len(idle_gaps) + 1} samples, CPU run):", spread(idle_gaps)
    )
    print(
        f"    fewest samples in any {WINDOW_S} s of the busy timeline: {fewest_in_window(busy, WINDOW_S)} "
        f"(at most {WINDOW_S / BUSY_INTERVAL_S:.0f} at {BUSY_INTERVAL_S * 1000:.0f} ms)"
    )

    print()
    kills = len(deaths["to_exit"])
    print(f"(d) reaction times, ms (median / p95 / max), {kills} kernels killed with SIGKILL during a cell")
    print(f"    last sample before the kill:                        {spread(deaths['before_kill'])}")
    print(f"    kill -> watcher exited (death recorded, compacted): {spread(deaths['to_exit'])}")
    stops = [s for s in (cpu["stop_s"], spikes["stop_s"]) if s is not None]
    print(f"    clean stop -> watcher exited ({len(stops)} stops):              {spread(stops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
