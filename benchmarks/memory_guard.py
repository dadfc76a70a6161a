"""The memory guard against fast-growing cells, and what it costs the watcher.

A real MLTrack kernel with ``--MLTrackKernel.memory_limit=2GiB`` (guard at the
default 0.9) runs a cell that allocates NumPy arrays of 8 or 64 MiB at a steady
0.25 to 4 GiB/s, towards 4 GiB. Printed for each: whether the guard stopped it,
the cell's exact peak (the kernel's VmHWM, which is what the OOM killer would
have counted) as a share of the limit, the overshoot past the guard's
threshold, and whether the limit was ever crossed. A fresh kernel per case.

Then the guard's cost: the watcher's CPU (its own process, from /proc) while
the kernel is idle, while a cell sleeps far below the limit, and while a cell
sleeps at 60 % of the limit (where the guard reads every 5 ms), with the guard
on and with ``memory_guard=0`` in the same run.

    python benchmarks/memory_guard.py [--limit 2GiB] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import psutil
from jupyter_client.manager import start_new_kernel

import mlt_kernel as mlt
from mlt_kernel.core.units import format_bytes, parse_bytes

RATES_GIB_S = (0.25, 0.5, 1.0, 2.0, 4.0)
CHUNKS_MIB = (8, 64)
GUARD = 0.9

GROW = """
import time, numpy as np
parts = []
t0 = time.perf_counter()
for i in range({n}):
    parts.append(np.ones({chunk} // 8))
    wait = t0 + (i + 1) * {chunk} / {rate} - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
"""


def kernel(exp: str, *options: str):
    km, kc = start_new_kernel(kernel_name="mltrack", cwd=exp, extra_arguments=list(options))
    kc.execute_interactive(f"EXP_PATH = {exp!r}\nimport numpy as np", timeout=60)
    time.sleep(1.5)  # the watcher is up
    return km, kc


def stop(km, kc) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def watcher_of(km) -> psutil.Process:
    kernel = psutil.Process(km.provisioner.process.pid)
    for child in kernel.children():
        if "mlt_kernel.watcher" in child.cmdline():
            return child
    raise RuntimeError("no watcher")


def growth_case(tmp: str, limit: int, rate: float, chunk: int) -> dict:
    exp = tempfile.mkdtemp(dir=tmp)
    km, kc = kernel(exp, f"--MLTrackKernel.memory_limit={limit}")
    try:
        code = GROW.format(n=2 * limit // chunk, chunk=chunk, rate=rate)
        reply = kc.execute_interactive(code, timeout=120)["content"]
        kc.execute_interactive("pass", silent=True, timeout=30)
    finally:
        stop(km, kc)
    cell = mlt.Experiment(exp).cells().iloc[-1]
    peak = int(cell["peak_rss_bytes"])
    return {
        "stopped": reply.get("ename") == "MemoryGuardInterrupt",
        "peak": peak,
        "overshoot": peak - GUARD * limit,
        "crossed": peak > limit,
    }


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def cpu_case(tmp: str, limit: int, seconds: float, guard: float) -> dict[str, float]:
    exp = tempfile.mkdtemp(dir=tmp)
    km, kc = kernel(exp, f"--MLTrackKernel.memory_limit={limit}", f"--MLTrackKernel.memory_guard={guard}")
    out = {}
    try:
        watcher = watcher_of(km)
        for name, code in (
            ("idle", None),
            ("cell, far below the limit", f"time.sleep({seconds})"),
            (
                "cell at 60 % of the limit",
                f"held = np.ones({int(0.6 * limit)} // 8)\nimport time\ntime.sleep({seconds})",
            ),
        ):
            before, t0 = cpu_seconds(watcher), time.perf_counter()
            if code is None:
                time.sleep(seconds)
            else:
                kc.execute_interactive("import time\n" + code, timeout=seconds + 60)
            out[name] = 100 * (cpu_seconds(watcher) - before) / (time.perf_counter() - t0)
    finally:
        stop(km, kc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", default="2GiB", help="the guard's memory limit (default 2GiB)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each CPU measurement")
    args = parser.parse_args()
    limit = parse_bytes(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("MLT_EXP_PATH", None)
        print(f"limit {format_bytes(limit)}, guard at {GUARD:.0%} ({format_bytes(GUARD * limit)})")
        print(f"{'rate':>9} {'chunk':>7} {'stopped':>8} {'peak':>10} {'of limit':>9} {'overshoot':>10} {'crossed':>8}")
        for chunk_mib in CHUNKS_MIB:
            for rate in RATES_GIB_S:
                r = growth_case(tmp, limit, rate * (1 << 30), chunk_mib << 20)
                print(
                    f"{rate:>5} GiB/s {chunk_mib:>3} MiB {'yes' if r['stopped'] else 'NO':>8} "
                    f"{format_bytes(r['peak']):>10} {100 * r['peak'] / limit:>8.1f}% "
                    f"{format_bytes(max(r['overshoot'], 0)):>10} {'YES' if r['crossed'] else 'no':>8}"
                )
        print()
        print(f"watcher CPU (% of one core, {args.seconds:.0f} s each): guard on · guard off (same run)")
        on = cpu_case(tmp, limit, args.seconds, GUARD)
        off = cpu_case(tmp, limit, args.seconds, 0.0)
        for name in on:
            print(f"  {name:<28} {on[name]:5.2f} % · {off[name]:5.2f} %")


if __name__ == "__main__":
    main()
