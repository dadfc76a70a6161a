"""Per-cell overhead and start-up time of the MLTrack kernel against plain ipykernel.

Both kernels run side by side in this one process, taking turns cell by cell
in rounds (each round runs one ``pass`` cell on each kernel, in alternating
order), so that machine noise hits both alike; several instances of each
kernel take part (``--instances``), because two processes of the same kernel
can differ by tenths of a millisecond on a small machine. Printed: round-trip medians and
p90 of each kernel, the overhead as the median of the per-round differences
(paired, the robust figure on a noisy machine) and as the difference of
medians, the recorder's own kernel-side cost per cell (measured inside the
kernel), and start-up time to the first reply.

``--baseline KERNEL`` compares against another kernelspec instead of plain
ipykernel: for two versions of MLTrack, a kernelspec whose ``env`` puts the
other checkout first on ``PYTHONPATH``.

    python benchmarks/kernel_overhead.py [--rounds 3000] [--instances 4] [--starts 5] [--mltrack-option=…] [--baseline KERNEL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from jupyter_client.manager import start_new_kernel

_INSIDE = """
import time as _t
_r = get_ipython().kernel.recorder
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


def round_trip(kc) -> float:
    t0 = time.perf_counter()
    kc.execute_interactive("pass", timeout=30)
    return time.perf_counter() - t0


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def start_time(name: str, cwd: str) -> float:
    t0 = time.perf_counter()
    km, kc = start_new_kernel(kernel_name=name, cwd=cwd)
    kc.execute_interactive("pass", timeout=30)
    elapsed = time.perf_counter() - t0
    kc.stop_channels()
    # A clean shutdown: MLTrack compacts the session before it exits, so no
    # helper process of this kernel competes with the next one's start-up.
    km.shutdown_kernel(now=False)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3000, help="rounds of one cell per kernel")
    parser.add_argument("--instances", type=int, default=4, help="processes of each kernel, used in turn")
    parser.add_argument("--starts", type=int, default=5, help="start-ups per kernel")
    parser.add_argument(
        "--mltrack-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="passed to the MLTrack kernels, e.g. --mltrack-option=--MLTrackKernel.watcher=False",
    )
    parser.add_argument(
        "--baseline",
        default="python3",
        metavar="KERNEL",
        help="the kernelspec to compare against (default: plain ipykernel; another MLTrack build to compare two versions)",
    )
    args = parser.parse_args()
    if args.baseline == "mltrack":
        parser.error("--baseline must name another kernelspec than mltrack")
    kernels = (args.baseline, "mltrack")
    extra = {args.baseline: [], "mltrack": args.mltrack_option}

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLT_EXP_PATH"] = os.path.join(tmp, "exp")
        pool = {
            name: [
                start_new_kernel(kernel_name=name, cwd=tmp, extra_arguments=extra[name]) for _ in range(args.instances)
            ]
            for name in kernels
        }
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for instances in pool.values():
            for _, kc in instances:
                for _ in range(100):  # warm up
                    round_trip(kc)
        time.sleep(2)  # let the first cell's helper processes finish
        for i in range(args.rounds):
            order = kernels if i % 2 else kernels[::-1]
            for name in order:
                times[name].append(round_trip(pool[name][i % args.instances][1]))

        outputs: list[str] = []
        pool["mltrack"][0][1].execute_interactive(
            _INSIDE.format(n=5000),
            timeout=60,
            output_hook=lambda m: outputs.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
        )
        inside_us = float("".join(outputs).strip().splitlines()[-1])
        for km, kc in (client for instances in pool.values() for client in instances):
            kc.stop_channels()
            km.shutdown_kernel(now=True)

        starts: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(args.starts):
            for name in kernels:
                starts[name].append(start_time(name, tmp))

    base, ours = times[args.baseline], times["mltrack"]
    paired = [b - a for a, b in zip(base, ours, strict=True)]
    print(f"round trip of a 'pass' cell, {args.rounds} rounds of one cell per kernel, {args.instances} instances each")
    print(f"{'kernel':<10} {'median ms':>10} {'p90 ms':>10}")
    for name in kernels:
        print(f"{name:<10} {statistics.median(times[name]) * 1e3:>10.3f} {p90(times[name]) * 1e3:>10.3f}")
    for name in kernels:  # how far processes of one kernel differ: the noise floor
        each = [statistics.median(times[name][i :: args.instances]) * 1e3 for i in range(args.instances)]
        print(f"{name:<10} medians of its instances: " + " ".join(f"{m:.3f}" for m in each))
    print(
        f"overhead, median of per-round differences: {statistics.median(paired) * 1e3:+.3f} ms per cell (target <= 0.2 ms)"
    )
    print(
        f"overhead, difference of medians:           {(statistics.median(ours) - statistics.median(base)) * 1e3:+.3f} ms"
    )
    print(f"p90 difference:                            {(p90(ours) - p90(base)) * 1e3:+.3f} ms")
    print(f"kernel-side recorder work: {inside_us:.1f} us per cell (target <= 60 us)")
    print()
    print(f"start-up to first reply, median of {args.starts}")
    for name in kernels:
        print(f"{name:<10} {statistics.median(starts[name]):.3f} s")
    delta = statistics.median(starts["mltrack"]) - statistics.median(starts[args.baseline])
    print(f"start-up overhead: {delta:+.3f} s (target <= 0.1 s)")


if __name__ == "__main__":
    main()
