"""How fast the dashboard answers: server start, first page, summary and run-page queries.

Experiments are written with the real writer (``JournalWriter`` journals, one
per kernel session and one per watcher, then ``compact_writer`` and the table
merge of ``mlt_kernel.store.compaction``, as kernels leave them), at two sizes:

- 200 runs (4 sessions, 80,000 samples);
- 5,000 runs with 10 million samples (100 sessions).

They are cached under ``--data`` (default: a folder in the temp dir) and reused.
Baselines measured in the same run: a plain Panel "hello" server (what serving
costs before any of our code), and the naive way to read a run's timeline
(the whole ``samples`` table through pyarrow, filtered in pandas). Server
start-up and the first page are the medians of ``--starts`` fresh servers.

    python benchmarks/dashboard.py [--data DIR] [--rebuild] [--no-browser] [--starts 3]

Targets (issue 6): server ready <= 3 s; first page showing data <= 3 s after the
request; summary query <= 50 ms at 200 runs and <= 300 ms at 5,000 runs with
10 million samples; a run page's queries <= 15 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlt_kernel.core import layout
from mlt_kernel.store.compaction import compact_experiment
from mlt_kernel.store.journal import JournalWriter, journal_name
from mlt_kernel.store.parquet import compact_writer
from mlt_kernel.tracking.metrics import evaluate

SIZES = {"200 runs": (4, 50, 400), "5,000 runs": (100, 50, 2000)}  # sessions, runs per session, samples per run
SAMPLE_EVERY_US = 50_000  # the watcher's busy interval
GiB = 1024**3
MODELS = ("logistic_regression", "random_forest", "gradient_boosting", "mlp", "svm")


# -- building experiments with the real writer ------------------------------------------------


def _session(args: tuple[Path, int, int, int, int]) -> int:
    """Write one kernel session (its journals), then compact it as the watcher does."""
    exp, index, runs, samples_per_run, seed = args
    rng = np.random.default_rng(seed)
    sid = f"20260101T{index // 60:02d}{index % 60:02d}00Z-{index:08x}"
    kernel = JournalWriter(exp / layout.JOURNALS / journal_name(sid, "kernel"))
    watcher = JournalWriter(exp / layout.JOURNALS / journal_name(sid, "watcher"))
    sampled = JournalWriter(exp / layout.JOURNALS / journal_name(sid, "samples"))
    t = 1_767_225_600_000_000 + index * 10**11  # 2026-01-01, sessions a day apart
    kernel.write("sessions", {"session_id": sid, "started_at": t, "status": "running", "hostname": "bench"})
    y = (rng.random(300) < 0.3).astype(int)
    for r in range(runs):
        name = f"{MODELS[r % len(MODELS)]}_{index}_{r}"
        run_id = f"{sid}-r{r:04d}"
        params = {
            "n_estimators": int(rng.integers(50, 500)),
            "max_depth": int(rng.integers(2, 12)),
            "lr": float(10 ** rng.uniform(-4, -1)),
        }
        start = t + 1_000_000
        kernel.write(
            "runs",
            {
                "run_id": run_id,
                "name": name,
                "session_id": sid,
                "status": "running",
                "started_at": start,
                "params": params,
            },
        )
        seq = r + 1
        kernel.write(
            "cells",
            {
                "session_id": sid,
                "cell_seq": seq,
                "execution_count": seq,
                "run_id": run_id,
                "run_name": name,
                "started_at": start,
                "status": "running",
                "code": f"# mlt: record name={name}\nmodel.fit(X, y)",
            },
        )
        base = int(rng.uniform(0.5, 2.0) * GiB)
        peak = 0
        for i in range(samples_per_run):
            rss = int(base * (1 + 0.8 * math.sin(math.pi * i / samples_per_run)))
            peak = max(peak, rss)
            sampled.write(
                "samples",
                {
                    "session_id": sid,
                    "t": start + i * SAMPLE_EVERY_US,
                    "rss_bytes": rss,
                    "children_rss_bytes": rss // 10,
                    "cpu_percent": 100.0 + (i % 7),
                    "gpu_bytes": None,
                    "gpu_util": None,
                    "cell_seq": seq,
                    "run_id": run_id,
                },
            )
        end = start + samples_per_run * SAMPLE_EVERY_US
        wall = (end - start) / 1e6
        for epoch in range(1, 11):
            kernel.write(
                "metrics",
                {
                    "run_id": run_id,
                    "session_id": sid,
                    "name": "loss",
                    "step": epoch,
                    "value": 0.7 * math.exp(-epoch / 4) + 0.2,
                },
            )
        proba = 1 / (1 + np.exp(-(rng.normal(0, 1, len(y)) + rng.uniform(0.5, 2.5) * (2 * y - 1))))
        ev = evaluate(y, y_proba=np.column_stack([1 - proba, proba]), labels=[0, 1])
        for metric, value in ev.metrics.items():
            kernel.write(
                "metrics", {"run_id": run_id, "session_id": sid, "name": metric, "value": value, "split": "test"}
            )
        kernel.write("confusion", {"run_id": run_id, "split": "test", "labels": ["0", "1"], "matrix": ev.confusion})
        for c in ev.curves:
            kernel.write(
                "curves",
                {"run_id": run_id, "split": "test", "kind": c.kind, "label": c.label, "x": c.x, "y": c.y, "auc": c.auc},
            )
        kernel.write(
            "cells",
            {
                "session_id": sid,
                "cell_seq": seq,
                "execution_count": seq,
                "run_id": run_id,
                "run_name": name,
                "started_at": start,
                "ended_at": end,
                "wall_s": wall,
                "cpu_s": wall * 1.1,
                "rss_before_bytes": base,
                "rss_after_bytes": base,
                "peak_rss_bytes": peak,
                "status": "ok",
                "code": f"# mlt: record name={name}\nmodel.fit(X, y)",
            },
        )
        kernel.write(
            "runs",
            {
                "run_id": run_id,
                "name": name,
                "session_id": sid,
                "status": "finished",
                "started_at": start,
                "ended_at": end,
                "wall_s": wall,
                "cpu_s": wall * 1.1,
                "peak_rss_bytes": peak,
                "params": params,
                "first_cell_seq": seq,
                "last_cell_seq": seq,
            },
        )
        t = end + 2_000_000
    kernel.write(
        "sessions",
        {
            "session_id": sid,
            "started_at": 1_767_225_600_000_000 + index * 10**11,
            "ended_at": t,
            "status": "ended",
            "hostname": "bench",
        },
    )
    kernel.close()
    watcher.close()
    sampled.close()
    return compact_writer(exp, sid)


def build(exp: Path, sessions: int, runs: int, samples: int) -> float:
    """Write the experiment with the real writer and compact it; returns seconds spent."""
    started = time.perf_counter()
    if exp.exists():
        shutil.rmtree(exp)
    layout.ensure_layout(exp)
    jobs = [(exp, i, runs, samples, i) for i in range(sessions)]
    with multiprocessing.Pool(max(1, min(os.cpu_count() or 1, 4))) as pool:
        for _ in pool.imap_unordered(_session, jobs):
            pass
    compact_experiment(exp)  # merge the per-session files, as `mlt-kernel compact` does
    (exp / "bench.json").write_text(json.dumps({"sessions": sessions, "runs": runs, "samples": samples}))
    return time.perf_counter() - started


def ensure(data: Path, label: str, rebuild: bool) -> Path:
    sessions, runs, samples = SIZES[label]
    exp = data / label.replace(",", "").replace(" ", "-")
    marker = exp / "bench.json"
    wanted = {"sessions": sessions, "runs": runs, "samples": samples}
    if rebuild or not marker.exists() or json.loads(marker.read_text()) != wanted:
        print(
            f"writing the {label} experiment ({sessions * runs:,} runs, {sessions * runs * samples:,} samples)…",
            flush=True,
        )
        print(f"  done in {build(exp, sessions, runs, samples):.0f} s", flush=True)
    return exp


# -- measurements ------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 15) -> float:
    """Median seconds of *fn* after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def query_times(exp: Path) -> dict[str, float]:
    from mlt_dashboard.queries import Source

    source = Source(exp)
    try:
        runs = source.runs()
        run_id = runs["run_id"].iloc[len(runs) // 2]
        run = source.run(run_id)
        out = {
            # Cold: cached results are dropped first, as when a kernel has written something.
            "summary query": timed(lambda: (source.invalidate(), source.counts(), source.runs())),
            "summary refresh + query": timed(
                lambda: (source.refresh(), source.invalidate(), source.counts(), source.runs())
            ),
            "run page queries": _timed_run_page(source, run_id),
            "run timeline query": timed(lambda: source.run_timeline(run)),
            "naive timeline (whole table, pandas)": timed(lambda: _naive_timeline(exp, run_id), repeat=3),
            "samples": float(source._df("SELECT count(*) AS n FROM samples")["n"].iloc[0]),
        }
    finally:
        source.close()
    return out


def _timed_run_page(source: Any, run_id: str, repeat: int = 15) -> float:
    """RunData after the run list is loaded (the page lists the runs first), other results cold."""
    from mlt_dashboard.fragments import RunData

    times = []
    for _ in range(repeat + 1):
        source.invalidate()
        source.runs()
        t0 = time.perf_counter()
        RunData(source, run_id)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _naive_timeline(exp: Path, run_id: str) -> Any:
    import pyarrow.parquet as pq

    files = sorted((exp / layout.TABLES / "samples").glob("*.parquet"))
    df = pq.read_table(files).to_pandas()
    return df[df["run_id"] == run_id]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[str], started: float) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)


def server_times(exp: Path, browser: bool) -> dict[str, float]:
    """Ready: the process answers on its port. First page: the browser shows run names."""
    port = _free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlt_dashboard.cli", str(exp), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    out: dict[str, float] = {}
    try:
        out["server ready"] = _wait_listening(port, proc, started)
        assert proc.stdout is not None
        url = ""
        while not url:  # the URL with the access token, as the user sees it
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the dashboard printed no URL")
            match = re.search(r"MLTrack dashboard: (\S+)", line)
            url = match.group(1) if match else ""
        if browser:
            out["first page with data"] = _first_page(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def _first_page(url: str) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page()
        t0 = time.perf_counter()
        page.goto(url)
        page.locator('.tabulator-row .tabulator-cell[tabulator-field="name"]').first.wait_for(timeout=60_000)
        elapsed = time.perf_counter() - t0
        b.close()
    return elapsed


def baseline_panel_ready() -> float:
    """A plain Panel server with one Markdown pane: the floor of what serving costs here."""
    port = _free_port()
    code = (
        "import panel as pn; "
        f"pn.serve({{'hello': lambda: pn.pane.Markdown('hello')}}, port={port}, address='127.0.0.1', show=False)"
    )
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        return _wait_listening(port, proc, started)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- report --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mlt-bench-dashboard",
        help="where the benchmark experiments are written and kept",
    )
    parser.add_argument("--rebuild", action="store_true", help="write the experiments again")
    parser.add_argument("--no-browser", action="store_true", help="skip the first-page timing (needs Chromium)")
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="fresh servers started per experiment (and for the baseline); medians are printed",
    )
    args = parser.parse_args(argv)
    if args.starts < 1:
        parser.error("--starts must be >= 1")
    browser = not args.no_browser and Path("/usr/bin/chromium").exists()
    rows: list[tuple[str, str, str, str]] = []
    baseline = statistics.median(baseline_panel_ready() for _ in range(args.starts))
    for label in SIZES:
        exp = ensure(args.data, label, args.rebuild)
        q = query_times(exp)
        starts = [server_times(exp, browser) for _ in range(args.starts)]
        s = {key: statistics.median(run[key] for run in starts) for key in starts[0]}
        n = f"{label} ({int(q['samples']):,} samples)"
        rows.append(
            (
                n,
                "server ready",
                f"{s['server ready']:.2f} s",
                f"≤ 3 s · plain Panel server {baseline:.2f} s (×{s['server ready'] / baseline:.2f})",
            )
        )
        if "first page with data" in s:
            rows.append((n, "first page with data (Chromium)", f"{s['first page with data']:.2f} s", "≤ 3 s"))
        target = "≤ 50 ms" if label.startswith("200") else "≤ 300 ms"
        rows.append((n, "summary query", f"{q['summary query'] * 1e3:.1f} ms", target))
        rows.append((n, "summary refresh + query", f"{q['summary refresh + query'] * 1e3:.1f} ms", "(every live tick)"))
        rows.append((n, "run page queries (after the run list)", f"{q['run page queries'] * 1e3:.1f} ms", "≤ 15 ms"))
        naive = q["naive timeline (whole table, pandas)"]
        rows.append(
            (
                n,
                "run timeline query",
                f"{q['run timeline query'] * 1e3:.1f} ms",
                f"naive whole-table read {naive * 1e3:.0f} ms (×{naive / q['run timeline query']:.0f} slower)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    heads = ("experiment", "measure", "median", "target / baseline")
    widths = [max(w, len(h)) for w, h in zip(widths, heads, strict=True)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"\nmachine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
