"""Per-cell overhead and start-up time of the MLTrack kernel against plain ipykernel.

Both kernels run in this one process's lifetime, in alternating blocks, so that
machine noise hits both alike. Printed: round-trip medians and p90 of a
trivial cell, the overhead, the recorder's own kernel-side cost per cell
(measured inside the kernel), and start-up time to the first reply.

    python benchmarks/kernel_overhead.py [--cells 300] [--blocks 6] [--starts 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from jupyter_client.manager import start_new_kernel

KERNELS = ("python3", "mltrack")

_INSIDE = """
import time as _t, mlt_kernel.api as _api
_r = _api._recorder
class _I:
    raw_cell = "pass"; silent = False; store_history = True; cell_id = None
class _R:
    error_in_exec = None; error_before_exec = None; execution_count = 1
_n = {n}
_t0 = _t.perf_counter()
for _ in range(_n):
    _r.pre_run_cell(_I()); _r.post_run_cell(_R())
print((_t.perf_counter() - _t0) / _n * 1e6)
"""


def round_trips(kc, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        kc.execute_interactive("pass", timeout=30)
        out.append(time.perf_counter() - t0)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def start_time(name: str, cwd: str) -> float:
    t0 = time.perf_counter()
    km, kc = start_new_kernel(kernel_name=name, cwd=cwd)
    kc.execute_interactive("pass", timeout=30)
    elapsed = time.perf_counter() - t0
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=300, help="cells per block")
    parser.add_argument("--blocks", type=int, default=6, help="alternating blocks per kernel")
    parser.add_argument("--starts", type=int, default=5, help="start-ups per kernel")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLT_EXP_PATH"] = os.path.join(tmp, "exp")
        clients = {name: start_new_kernel(kernel_name=name, cwd=tmp) for name in KERNELS}
        times: dict[str, list[float]] = {name: [] for name in KERNELS}
        for _, kc in clients.values():
            round_trips(kc, 50)  # warm up
        for _ in range(args.blocks):
            for name, (_, kc) in clients.items():
                times[name] += round_trips(kc, args.cells)

        outputs: list[str] = []
        clients["mltrack"][1].execute_interactive(
            _INSIDE.format(n=5000), timeout=60,
            output_hook=lambda m: outputs.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
        )  # fmt: skip
        inside_us = float("".join(outputs).strip().splitlines()[-1])
        for km, kc in clients.values():
            kc.stop_channels()
            km.shutdown_kernel(now=True)

        starts: dict[str, list[float]] = {name: [] for name in KERNELS}
        for _ in range(args.starts):
            for name in KERNELS:
                starts[name].append(start_time(name, tmp))

    base, ours = times["python3"], times["mltrack"]
    print(f"round trip of a 'pass' cell, {len(base)} cells per kernel in {args.blocks} alternating blocks")
    print(f"{'kernel':<10} {'median ms':>10} {'p90 ms':>10}")
    for name in KERNELS:
        print(f"{name:<10} {statistics.median(times[name]) * 1e3:>10.3f} {p90(times[name]) * 1e3:>10.3f}")
    overhead = (statistics.median(ours) - statistics.median(base)) * 1e3
    print(f"median overhead: {overhead:+.3f} ms per cell (target <= 0.2 ms)")
    print(f"p90 overhead:    {(p90(ours) - p90(base)) * 1e3:+.3f} ms per cell")
    print(f"kernel-side recorder work: {inside_us:.1f} us per cell (target <= 60 us)")
    print()
    print(f"start-up to first reply, median of {args.starts}")
    for name in KERNELS:
        print(f"{name:<10} {statistics.median(starts[name]):.3f} s")
    delta = statistics.median(starts["mltrack"]) - statistics.median(starts["python3"])
    print(f"start-up overhead: {delta:+.3f} s (target <= 0.1 s)")


if __name__ == "__main__":
    main()
