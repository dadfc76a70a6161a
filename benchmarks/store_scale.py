"""The store at scale: 5,000 runs and 10 million samples, written by the real writer.

Builds an experiment the way kernels do — each session appends its records to
its journal with ``JournalWriter`` (one ``os.write`` per record), and is
compacted when it ends — then merges (``mlt-kernel compact``) and measures what
a reader pays, in a fresh process each time:

- opening ``Experiment(path)`` (target ≤ 0.5 s),
- the compare-all-runs query ``Experiment.runs()`` (target ≤ 300 ms),
- one run's timeline ``Experiment.samples(run=…)`` (target ≤ 15 ms),
- the reader's peak memory (target ≤ 500 MB),

and, for comparison in the same run, the same queries before merging (one
Parquet file per session and table).

    python benchmarks/store_scale.py [--runs 5000] [--samples 10000000] [--sessions 50]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlt_kernel.core import layout
from mlt_kernel.store import parquet as store
from mlt_kernel.store.compaction import compact_experiment
from mlt_kernel.store.journal import JournalWriter, journal_name

READER = r"""
import json, statistics, sys, time
def peak_mb():
    # VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss.
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
t0 = time.perf_counter()
import mlt_kernel as mlt
import mlt_kernel.read.experiment  # duckdb, pyarrow, pandas
imported = time.perf_counter() - t0
t0 = time.perf_counter()
e = mlt.Experiment(sys.argv[1])
opened = time.perf_counter() - t0
def timed(fn, n=7):
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out)
runs = e.runs()
run_id = runs["run_id"].iloc[len(runs) // 2]
compare = timed(e.runs)
timeline = timed(lambda: e.samples(run=run_id), 21)
n = len(e.samples(run=run_id))
print(json.dumps({"import_s": imported, "open_s": opened, "runs": len(runs), "compare_s": compare, "timeline_s": timeline,
                  "timeline_rows": n, "peak_rss_mb": peak_mb()}))
"""


def build(exp: Path, runs: int, samples: int, sessions: int) -> float:
    """Write the experiment through journals, compacting each session as it ends."""
    layout.ensure_layout(exp)
    per_run = samples // runs
    runs_per_session = runs // sessions
    rng = random.Random(0)
    t = 1_700_000_000_000_000  # µs
    start = time.perf_counter()
    for s in range(sessions):
        sid = f"2026{s:06d}-bench"
        j = JournalWriter(exp / layout.JOURNALS / journal_name(sid))
        j.write("sessions", {"session_id": sid, "started_at": t, "status": "running"})
        for r in range(runs_per_session):
            run_id = f"{sid}-r{r:04d}"
            params = {
                "n_estimators": rng.choice([100, 200, 300]),
                "max_depth": rng.randint(2, 12),
                "lr": rng.choice([0.1, 0.01]),
                "model": rng.choice(["rf", "gb", "lr"]),
                "seed": r,
            }
            base = {"run_id": run_id, "name": f"model_{r % 40}", "session_id": sid, "started_at": t, "params": params}
            j.write("runs", {**base, "status": "running"})
            rss = 500_000_000 + rng.randint(0, 10**9)
            for i in range(per_run):
                t += 50_000
                j.write(
                    "samples",
                    {
                        "session_id": sid,
                        "t": t,
                        "rss_bytes": rss + i * 1000,
                        "children_rss_bytes": 0,
                        "cpu_percent": 99.0,
                        "gpu_bytes": 2_000_000_000,
                        "gpu_util": 80.0,
                        "cell_seq": r + 1,
                        "run_id": run_id,
                    },
                )
            j.write(
                "cells",
                {
                    "session_id": sid,
                    "cell_seq": r + 1,
                    "execution_count": r + 1,
                    "run_id": run_id,
                    "run_name": base["name"],
                    "started_at": base["started_at"],
                    "wall_s": per_run * 0.05,
                    "peak_rss_bytes": rss + per_run * 1000,
                    "status": "ok",
                },
            )
            for name in ("accuracy", "precision", "recall", "f1"):
                j.write(
                    "metrics",
                    {"run_id": run_id, "session_id": sid, "name": name, "value": rng.random(), "split": "test"},
                )
            j.write(
                "runs",
                {
                    **base,
                    "status": "finished",
                    "ended_at": t,
                    "wall_s": per_run * 0.05,
                    "peak_rss_bytes": rss + per_run * 1000,
                    "peak_gpu_bytes": 2_000_000_000,
                },
            )
        j.write("sessions", {"session_id": sid, "started_at": t, "status": "ended", "ended_at": t})
        j.close()
        store.compact_writer(exp, sid)  # what happens when a session ends
        print(f"\rwrote session {s + 1}/{sessions}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return time.perf_counter() - start


def read(exp: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", READER, str(exp)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="build the experiment here and keep it (must not exist)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlt-scale-") as tmp:
        exp = args.keep or Path(tmp) / "exp"
        written = build(exp, args.runs, args.samples, args.sessions)
        files = sum(1 for _ in (exp / layout.TABLES).rglob("*.parquet"))
        per_session = read(exp)
        t0 = time.perf_counter()
        compact_experiment(exp)
        merged_s = time.perf_counter() - t0
        merged_files = sum(1 for _ in (exp / layout.TABLES).rglob("*.parquet"))
        merged = read(exp)
        size = sum(p.stat().st_size for p in exp.rglob("*") if p.is_file())
    print(
        f"{args.runs:,} runs, {args.samples:,} samples in {args.sessions} sessions, written by JournalWriter "
        f"and compacted per session in {written:.1f} s; merge: {merged_s:.1f} s; {size / 2**20:.0f} MiB on disk"
    )
    print(f"{'':<28} {'per-session files':>18} {'merged':>10} {'target':>10}")
    print(f"{'Parquet files':<28} {files:>18} {merged_files:>10}")
    rows = [
        ("import the reader (s)", "import_s", None),
        ("open Experiment (s)", "open_s", 0.5),
        ("compare all runs (ms)", "compare_s", 0.3),
        ("one run's timeline (ms)", "timeline_s", 0.015),
        ("reader peak RSS (MB)", "peak_rss_mb", 500),
    ]
    for label, key, target in rows:
        scale = 1000 if label.endswith("(ms)") else 1
        goal = "" if target is None else f"{target * scale:.1f}"
        print(f"{label:<28} {per_session[key] * scale:>18.1f} {merged[key] * scale:>10.1f} {goal:>10}")
    print(f"runs read: {merged['runs']:,}; timeline rows: {merged['timeline_rows']:,}")


if __name__ == "__main__":
    main()
