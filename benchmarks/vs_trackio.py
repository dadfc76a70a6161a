"""MLTrack against Trackio (Hugging Face's local-first tracker) on the same workload, in one run.

The workload is ``benchmarks/store_vs_mlflow.py``'s (imported, not copied): by
default 200 runs, each with 5 params, 4 final test metrics, 600 samples of RAM
and GPU memory and a 2x2 confusion matrix, one kernel session per run. Both
sides log the same values; every compare query is checked to return the same
runs with the same params, final metrics and peaks that were logged.

Each side is driven only through its public entry points:

- MLTrack: ``store_vs_mlflow.log_mltrack`` (the kernel's ``JournalWriter``
  journals, then, per session end, what the kernel's end-of-session process runs),
  ``mlt_kernel.Experiment(path).runs()``, and ``mlt-dashboard`` as a process.
- Trackio (``pip install -e '.[bench]'``): ``trackio.init(project, name,
  config=params)``, ``trackio.log_system`` per sample (``ram_bytes``,
  ``gpu_bytes``: its call for a machine-metrics timeline), one ``trackio.log``
  of the final metrics with the peaks (``peak_ram_bytes``, ``peak_gpu_bytes``:
  Trackio keeps no peak of its own) and the confusion matrix, ``trackio.finish()``;
  read back with ``SQLiteStorage.query_project`` (what ``trackio query project
  --sql`` runs), served with ``trackio.show(open_browser=False)``. Its CPU and
  GPU monitors are off (the samples are the workload's), and it never reaches
  the network: ``TRACKIO_DIR`` and ``HF_HOME`` in the temp dir,
  ``HF_HUB_OFFLINE=1``, telemetry and analytics off, no Space, server, dataset
  or bucket variables; Chromium resolves no host but 127.0.0.1.

Rows (each the median of ``--repeats``; every "cold" figure is a new process
that imports first and then times the first call):

1. log N runs, what the notebook waits for: MLTrack the journals; Trackio
   ``init`` … ``finish`` (``finish`` waits for its writer thread);
2. … plus, for MLTrack, compaction and the merge at each session end
   (``compact_experiment(exp, writer=…)`` in-process, as the kernel's
   end-of-session process runs it); the CPU time per session of both is shown;
3. compare all runs, first call in a fresh process, on a merged store (MLTrack
   merged once more at the end, as ``mlt-kernel compact``; Trackio's SQLite
   database), and again with Trackio taking each run's peaks from its samples
   in SQL, as it must when only the timeline was logged;
4. the same on the folder as the sessions' own ends left it (each compacted,
   merged whenever 16 files piled up), on live journals (sessions ended,
   nothing compacted), and on N
   unmerged per-session Parquet files (what a shared folder holds where each
   person's files stay under the merge threshold). On a local disk Trackio has
   no such state (every ``finish`` leaves its database up to date), so its
   figure is row 3's. On a shared folder it has: its JSONL mode
   (``TRACKIO_STORAGE_MODE=jsonl``, which it picks itself on a network file
   system) leaves fragments a reader must import before it can query them, as
   its dashboard does at start and every 15 s (``fragments.import_inbox_dir``);
   that is compared with MLTrack's unmerged files on a row of its own;
5. compare all runs, warm (the same reader again, after one call);
6. dashboard, launched as a process: → first HTTP response (any status);
   → first 200 on the URL the user opens (MLTrack's printed URL with its
   access token; Trackio's printed ``/?project=`` URL); → first page with data in
   Chromium (MLTrack's summary, Trackio's runs page, showing a known run name),
   Chromium already running;
7. storage: the experiment folder merged; Trackio's folder (SQLite database).

    pip install -e '.[bench]'
    python benchmarks/vs_trackio.py [--runs 200] [--repeats 3] [--json FILE]

About 4 minutes on a 2-core machine at the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import queue
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

PROJECT = "bench"
CHROMIUM = "/usr/bin/chromium"
#: Environment variables that would point Trackio or the Hugging Face Hub at a remote.
REMOTE_VARIABLES = ("SPACE_ID", "SPACE_HOST", "SPACE_REPO_NAME", "SPACE_AUTHOR_NAME", "SYSTEM", "HF_TOKEN")


def _sibling(name: str) -> Any:
    """``benchmarks/{name}.py``, loaded once (a module name of its own, so nothing else is shadowed)."""
    key = f"mlt_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def trackio_env(trackio_dir: Path, storage_mode: str = "sqlite") -> dict[str, str]:
    """The environment of a Trackio process: its folder in *trackio_dir*, offline, nothing remote."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKIO_", "HF_", "GRADIO_", "HUGGING")) and k not in REMOTE_VARIABLES
    }
    env.update(
        TRACKIO_DIR=str(trackio_dir),
        TRACKIO_STORAGE_MODE=storage_mode,
        TRACKIO_LOGBOOK_AUTONOTE="0",
        HF_HOME=str(trackio_dir.with_name(trackio_dir.name + "-hf-home")),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        GRADIO_ANALYTICS_ENABLED="False",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _last_json_line(out: str) -> Any:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the child printed no result:\n{out[-2000:]}")
    return json.loads(lines[-1])


def _child(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    """Run *code* in a fresh interpreter that can import this module; its last JSON line."""
    prelude = f"import sys; sys.path.insert(0, {str(BENCH)!r}); sys.path.insert(0, {str(ROOT)!r}); "
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return _last_json_line(proc.stdout)


# -- logging -------------------------------------------------------------------------------


def child_log_trackio(runs: int, samples: int) -> None:
    """In a Trackio process: log the workload, print ``{"wall_s", "cpu_s"}``."""
    import trackio

    workload = _sibling("store_vs_mlflow").make_workload(runs, samples, 1)
    sink = io.StringIO()  # Trackio prints a few lines per run; the notebook would show them
    cpu, start = time.process_time(), time.perf_counter()
    with contextlib.redirect_stdout(sink):
        for run in workload:
            trackio.init(
                project=PROJECT, name=run.name, config=run.params, auto_log_cpu=False, auto_log_gpu=False, embed=False
            )
            for rss, gpu in zip(run.rss, run.gpu, strict=True):
                trackio.log_system({"ram_bytes": rss, "gpu_bytes": gpu})
            finals = {**run.finals, "peak_ram_bytes": max(run.rss), "peak_gpu_bytes": max(run.gpu)}
            trackio.log({**finals, "confusion_matrix": run.confusion})
            trackio.finish()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"wall_s": wall, "cpu_s": cpu}))


def log_trackio(trackio_dir: Path, runs: int, samples: int, storage_mode: str = "sqlite") -> dict[str, float]:
    code = f"import vs_trackio; vs_trackio.child_log_trackio({runs}, {samples})"
    result: dict[str, float] = _child(code, trackio_env(trackio_dir, storage_mode))
    return result


def log_ours(exp: Path, workload: list[Any], compact: str | None) -> dict[str, float]:
    """``store_vs_mlflow.log_mltrack`` with the process's CPU time around it."""
    cpu = time.process_time()
    wall, compact_s = _sibling("store_vs_mlflow").log_mltrack(exp, workload, compact)
    return {"wall_s": wall, "compact_s": compact_s, "cpu_s": time.process_time() - cpu}


def session_end_process(exp: Path, samples: int) -> dict[str, float]:
    """One more session in *exp*, then the kernel's own end-of-session process on it: wall and CPU."""
    svm = _sibling("store_vs_mlflow")
    (run,) = svm.make_workload(1, samples, 1, seed=1)
    run.name = "session_end_probe"
    svm.log_mltrack(exp, [run], None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlt_kernel.store.compaction", "--writer", run.session, str(exp)], check=True, cwd=ROOT
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


# -- compare all runs ------------------------------------------------------------------------

#: Each run's last logged row of metrics, with its config: Trackio's compare-all-runs table in one query.
TRACKIO_COMPARE_SQL = """
SELECT m.run_id, m.run_name, c.config, m.metrics
FROM metrics AS m JOIN configs AS c ON c.run_id = m.run_id
WHERE m.id IN (SELECT max(id) FROM metrics GROUP BY run_id)
"""
#: The same, with each run's peaks taken from its samples (Trackio keeps no peak): what it costs
#: when only the timeline was logged.
TRACKIO_COMPARE_PEAKS_SQL = """
SELECT m.run_id, m.run_name, c.config, m.metrics, s.peak_ram_bytes, s.peak_gpu_bytes
FROM metrics AS m JOIN configs AS c ON c.run_id = m.run_id
JOIN (
    SELECT run_id, max(json_extract(metrics, '$.ram_bytes')) AS peak_ram_bytes,
        max(json_extract(metrics, '$.gpu_bytes')) AS peak_gpu_bytes
    FROM system_metrics GROUP BY run_id
) AS s ON s.run_id = m.run_id
WHERE m.id IN (SELECT max(id) FROM metrics GROUP BY run_id)
"""


def _table_ours(df: Any) -> dict[str, Any]:
    """Name → [params, final metrics…, peak RAM, peak GPU]: what both sides must agree on."""
    metrics = _sibling("store_vs_mlflow").FINAL_METRICS
    return {
        row["name"]: [row["params"], *(row[m] for m in metrics), int(row["peak_rss_bytes"]), int(row["peak_gpu_bytes"])]
        for row in df.to_dict("records")
    }


def _table_trackio(df: Any) -> dict[str, Any]:
    metrics = _sibling("store_vs_mlflow").FINAL_METRICS
    return {
        row["name"]: [row["params"], *(row[m] for m in metrics), int(row["peak_ram_bytes"]), int(row["peak_gpu_bytes"])]
        for row in df.to_dict("records")
    }


def child_compare(tool: str, path: str, variant: str, warm_repeat: int) -> None:
    """In a fresh process: import, then time the first compare-all-runs call, then the warm median.

    *variant* (Trackio): ``logged`` (the peaks logged as final metrics), ``samples`` (the peaks
    from the samples), ``inbox`` (JSONL fragments imported first, then ``logged``).
    """
    import pandas as pd

    if tool == "mltrack":
        from mlt_kernel import Experiment

        holder: list[Any] = []

        def first() -> Any:
            holder.append(Experiment(path))
            return holder[0].runs()

        def again() -> Any:
            return holder[0].runs()

        to_table = _table_ours
    else:
        import trackio  # noqa: F401 - what a user imports; the storage module comes with it
        from trackio import fragments
        from trackio.sqlite_storage import SQLiteStorage

        def again() -> Any:
            sql = TRACKIO_COMPARE_PEAKS_SQL if variant == "samples" else TRACKIO_COMPARE_SQL
            table = []
            for row in SQLiteStorage.query_project(path, sql)["rows"]:
                config = json.loads(row.pop("config"))
                params = {k: v for k, v in config.items() if not k.startswith("_")}  # _Created, _Username, _Group
                finals = json.loads(row.pop("metrics"))
                if variant == "samples":
                    finals.pop("peak_ram_bytes"), finals.pop("peak_gpu_bytes")
                table.append({"name": row.pop("run_name"), "params": params, **finals, **row})
            return pd.DataFrame(table)

        def first() -> Any:
            if variant == "inbox":
                fragments.import_inbox_dir()  # what its dashboard server does at start, then every 15 s
            return again()

        to_table = _table_trackio

    start = time.perf_counter()
    df = first()
    cold = time.perf_counter() - start
    warm = _sibling("dashboard").timed(again, warm_repeat)  # loaded after the cold call: it imports the store
    print(json.dumps({"cold_s": cold, "warm_s": warm, "table": to_table(df)}))


def compare(tool: str, path: str, env: dict[str, str] | None, variant: str = "logged") -> dict[str, Any]:
    code = f"import vs_trackio; vs_trackio.child_compare({tool!r}, {path!r}, {variant!r}, 15)"
    result: dict[str, Any] = _child(code, env)
    return result


def expected_table(workload: list[Any]) -> dict[str, Any]:
    metrics = _sibling("store_vs_mlflow").FINAL_METRICS
    return {run.name: [run.params, *(run.finals[m] for m in metrics), max(run.rss), max(run.gpu)] for run in workload}


def check_table(label: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    if got == want:
        return
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    differ = sorted(name for name in set(want) & set(got) if got[name] != want[name])
    first = differ[0] if differ else None
    detail = f"; {first}: got {got[first]} want {want[first]}" if first else ""
    raise SystemExit(
        f"{label}: the compare table differs from what was logged "
        f"({len(missing)} runs missing, {len(extra)} extra, {len(differ)} differ{detail})"
    )


# -- dashboards ------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def launched(
    cmd: list[str], env: dict[str, str] | None
) -> Iterator[tuple[float, queue.Queue[str], subprocess.Popen[str]]]:
    """Its start time, a queue of its output lines and a server process, stopped on exit."""
    lines: queue.Queue[str] = queue.Queue()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield started, lines, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _url_from(lines: queue.Queue[str], pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = ANSI.sub("", lines.get(timeout=0.05))
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match.group(1)
    raise RuntimeError(f"no URL matching {pattern!r} in {''.join(seen)[-2000:]}")


def _first_response(url: str, want_200: bool, timeout: float = 60) -> None:
    """Poll *url* until it answers (any status), or answers 200 when *want_200*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200 or not want_200:
                    return
        except urllib.error.HTTPError:
            if not want_200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer{' 200' if want_200 else ''} within {timeout:.0f} s")


class Dashboard:
    """How to start one tool's dashboard and find the URL it prints."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None, port: int, url_pattern: str, data_path: str = ""):
        self.cmd, self.env, self.port, self.url_pattern, self.data_path = cmd, env, port, url_pattern, data_path

    def http_times(self) -> tuple[float, float]:
        """(launch → first HTTP response, launch → first 200 on the printed URL)."""
        with launched(self.cmd, self.env) as (started, lines, _):
            _first_response(f"http://127.0.0.1:{self.port}/", want_200=False)
            first = time.perf_counter() - started
            _first_response(_url_from(lines, self.url_pattern), want_200=True)
            return first, time.perf_counter() - started

    def page_time(self, browser: Any, run_name: str) -> float:
        """Launch → *run_name* visible in Chromium (a fresh context: no cookie from an earlier visit)."""
        dash = _sibling("dashboard")
        context = browser.new_context()
        try:
            page = context.new_page()
            with launched(self.cmd, self.env) as (started, lines, proc):
                url = _url_from(lines, self.url_pattern)
                if self.data_path:
                    url = re.sub(r"^(https?://[^/]+)/?", r"\1" + self.data_path, url)
                dash._wait_listening(self.port, proc, started)
                page.goto(url)
                page.get_by_text(run_name, exact=True).first.wait_for(state="visible", timeout=60_000)
                return time.perf_counter() - started
        finally:
            context.close()


def mltrack_dashboard(exp: Path, port: int) -> Dashboard:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLT_DASHBOARD_TOKEN", None)
    cmd = [sys.executable, "-m", "mlt_dashboard.cli", str(exp), "--port", str(port), "--no-browser"]
    return Dashboard(cmd, env, port, r"MLTrack dashboard: (\S+)")


def trackio_dashboard(trackio_dir: Path, port: int) -> Dashboard:
    code = (
        f"import trackio; trackio.show(project={PROJECT!r}, open_browser=False, block_thread=True, server_port={port})"
    )
    return Dashboard([sys.executable, "-c", code], trackio_env(trackio_dir), port, r"launched at: (\S+)", "/runs")


def dashboard_times(dashboards: dict[str, Dashboard], repeats: int, run_name: str, browser: bool) -> dict[str, Any]:
    """Per tool: lists of launch → first response, → first 200, → page with data, alternating tools."""
    out: dict[str, dict[str, list[float]]] = {tool: {"response": [], "ok": [], "page": []} for tool in dashboards}
    pw = chromium = None
    if browser:
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        # No host resolves but this one: neither page can reach the network.
        rules = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", rules])
    try:
        for _ in range(repeats):
            for tool, dash in dashboards.items():
                response, ok = dash.http_times()
                out[tool]["response"].append(response)
                out[tool]["ok"].append(ok)
                if chromium is not None:
                    out[tool]["page"].append(dash.page_time(chromium, run_name))
    finally:
        if chromium is not None:
            chromium.close()
        if pw is not None:
            pw.stop()
    return out


# -- report ----------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB"
    if value < 1:
        return f"{value * 1e3:.0f} ms" if value >= 0.1 else f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def verdict(ratio: float) -> str:
    return f"{ratio:.0f}× ahead" if ratio >= 10 else f"{ratio:.2f}× ahead" if ratio >= 1 else f"{ratio:.2f}× behind"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200, help="runs to log (default 200)")
    parser.add_argument("--samples", type=int, default=600, help="RAM and GPU samples per run (default 600)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every row; medians are printed (default 3)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write every figure to FILE")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium rows")
    parser.add_argument("--keep", metavar="DIR", help="write into DIR and keep it (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.samples < 1 or args.repeats < 1:
        parser.error("--runs, --samples and --repeats must be >= 1")
    if importlib.util.find_spec("trackio") is None:
        print(
            "Trackio is not installed: pip install -e '.[bench]'  (or pip install 'trackio>=0.43,<0.44')",
            file=sys.stderr,
        )
        return 2
    browser = not args.no_browser and Path(CHROMIUM).exists()
    svm = _sibling("store_vs_mlflow")
    dash = _sibling("dashboard")
    k = args.repeats

    with tempfile.TemporaryDirectory(prefix="mlt-vs-trackio-") as tmpdir:
        tmp = Path(args.keep).absolute() if args.keep else Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        workload = svm.make_workload(args.runs, args.samples, 1)
        want = expected_table(workload)
        n = args.runs
        print(
            f"workload: {n} runs x (5 params, {len(svm.FINAL_METRICS)} final metrics, {args.samples} RAM + "
            f"{args.samples} GPU samples, confusion matrix), one session per run; medians of {k}",
            flush=True,
        )

        # 1-2. Logging, alternating the tools.
        ours_journal: list[dict[str, float]] = []
        ours_ended: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for r in range(k):
            theirs.append(log_trackio(tmp / f"trackio-{r}", n, args.samples))
            ours_journal.append(log_ours(tmp / f"mlt-live-{r}", workload, None))
            ours_ended.append(log_ours(tmp / f"mlt-ended-{r}", workload, "experiment"))
            print(
                f"  logged: Trackio {theirs[-1]['wall_s']:.2f} s · MLTrack journals {ours_journal[-1]['wall_s']:.2f} s"
                f", with session ends {ours_ended[-1]['wall_s']:.2f} s",
                flush=True,
            )
        jsonl = log_trackio(tmp / "trackio-jsonl", n, args.samples, storage_mode="jsonl")
        unmerged = tmp / "mlt-unmerged"
        log_ours(unmerged, workload, "writer")
        merged = tmp / "mlt-ended-0"
        ended = tmp / "mlt-ended-as-left"  # as the sessions' own ends leave it: merged at 16 files
        shutil.copytree(merged, ended)
        svm.merge_mltrack(merged)  # everything merged, as `mlt-kernel compact` leaves it
        ours_bytes = {
            "merged": folder_bytes(merged),
            "journals": folder_bytes(tmp / "mlt-live-0"),
            "unmerged": folder_bytes(unmerged),
        }
        theirs_bytes = folder_bytes(tmp / "trackio-0")
        probe = session_end_process(tmp / "mlt-ended-1", args.samples)  # after its figures: it adds a session
        print("  compare queries…", flush=True)

        # 3-5. Compare all runs, each cold call in a fresh process.
        inbox = tmp / "trackio-jsonl" / "inbox"
        cold: dict[str, list[dict[str, Any]]] = {
            key: []
            for key in (
                "ours merged",
                "ours ended",
                "ours live",
                "ours unmerged",
                "theirs",
                "theirs peaks",
                "theirs jsonl",
            )
        }
        for r in range(k):
            cold["theirs"].append(compare("trackio", PROJECT, trackio_env(tmp / "trackio-0")))
            cold["theirs peaks"].append(compare("trackio", PROJECT, trackio_env(tmp / "trackio-0"), "samples"))
            cold["ours merged"].append(compare("mltrack", str(merged), None))
            cold["ours ended"].append(compare("mltrack", str(ended), None))
            cold["ours live"].append(compare("mltrack", str(tmp / "mlt-live-0"), None))
            cold["ours unmerged"].append(compare("mltrack", str(unmerged), None))
            fresh = tmp / f"trackio-jsonl-read-{r}"  # a copy of the fragments nobody has imported yet
            shutil.copytree(inbox, fresh / "inbox")
            cold["theirs jsonl"].append(compare("trackio", PROJECT, trackio_env(fresh, "jsonl"), "inbox"))
        for key, results in cold.items():
            for result in results:
                check_table(key, result["table"], want)
        print(
            f"  cross-checked: every compare returned the {n} runs logged, same params, metrics and peaks", flush=True
        )

        # 6. Dashboards.
        print("  dashboards…", flush=True)
        dashboards = {
            "trackio": trackio_dashboard(tmp / "trackio-0", dash._free_port()),
            "mltrack": mltrack_dashboard(merged, dash._free_port()),
        }
        run_name = workload[0].name
        served = dashboard_times(dashboards, k, run_name, browser)

        rows: list[tuple[str, float, float, str]] = []

        def add(label: str, their: float, our: float, unit: str = "s") -> None:
            rows.append((label, their, our, unit))

        their_log = median([t["wall_s"] for t in theirs])
        add(
            f"log {n} runs, what the notebook waits for (MLTrack: journals)",
            their_log,
            median([o["wall_s"] for o in ours_journal]),
        )
        add("… plus compaction and the merge at each session end", their_log, median([o["wall_s"] for o in ours_ended]))
        add(
            "CPU time per session (log + session end)",
            median([t["cpu_s"] for t in theirs]) / n,
            median([o["cpu_s"] for o in ours_ended]) / n,
        )

        def cold_of(key: str) -> float:
            return median([c["cold_s"] for c in cold[key]])

        add("compare all runs, first call in a fresh process, merged store", cold_of("theirs"), cold_of("ours merged"))
        add(
            "same, Trackio's peaks from its samples (it keeps none)",
            cold_of("theirs peaks"),
            cold_of("ours merged"),
        )
        add(
            "same, as the sessions' ends left it (merged at 16 files; Trackio: its database)",
            cold_of("theirs"),
            cold_of("ours ended"),
        )
        add("same, live journals (Trackio: its database)", cold_of("theirs"), cold_of("ours live"))
        add(
            f"same, {n} unmerged per-session files (Trackio: its database)", cold_of("theirs"), cold_of("ours unmerged")
        )
        add(
            f"same, shared folder: Trackio's JSONL fragments against {n} unmerged files",
            cold_of("theirs jsonl"),
            cold_of("ours unmerged"),
        )
        add(
            "compare all runs, warm",
            median([c["warm_s"] for c in cold["theirs"]]),
            median([c["warm_s"] for c in cold["ours merged"]]),
        )
        add(
            "dashboard: launch → first HTTP response",
            median(served["trackio"]["response"]),
            median(served["mltrack"]["response"]),
        )
        add(
            "dashboard: launch → first 200 on the URL the user opens",
            median(served["trackio"]["ok"]),
            median(served["mltrack"]["ok"]),
        )
        if browser:
            add(
                "dashboard: launch → first page with data (Chromium)",
                median(served["trackio"]["page"]),
                median(served["mltrack"]["page"]),
            )
        add("storage (MLTrack merged)", theirs_bytes, ours_bytes["merged"], "bytes")

        print()
        print("| measure | Trackio | MLTrack | ratio (Trackio ÷ MLTrack) | MLTrack |")
        print("|---|---|---|---|---|")
        for label, their, our, unit in rows:
            ratio = their / our
            print(f"| {label} | {fmt(their, unit)} | {fmt(our, unit)} | {ratio:.2f} | {verdict(ratio)} |")
        print()
        ended_compact = [o["compact_s"] for o in ours_ended]
        print(
            f"MLTrack's session ends, in-process: {median(ended_compact):.2f} s for {n} sessions "
            f"({median(ended_compact) / n * 1e3:.1f} ms each); the kernel runs them in a process of its own: "
            f"{probe['wall_s'] * 1e3:.0f} ms wall, {probe['cpu_s'] * 1e3:.0f} ms CPU for one session "
            f"(Python start-up and imports included)"
        )
        print(
            f"storage: MLTrack journals {fmt(ours_bytes['journals'], 'bytes')}, {n} per-session files "
            f"{fmt(ours_bytes['unmerged'], 'bytes')}, merged {fmt(ours_bytes['merged'], 'bytes')}; "
            f"Trackio {fmt(theirs_bytes, 'bytes')} (SQLite)"
        )
        print(
            f"Trackio JSONL mode logged in {jsonl['wall_s']:.2f} s; its cold read imports the fragments into SQLite "
            "first (its dashboard does the same at start and every 15 s)"
        )
        load = os.getloadavg()
        machine = f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at the end, Python {sys.version.split()[0]}"
        print(f"machine: {machine}")
        if args.json:
            record = {
                "runs": n,
                "samples": args.samples,
                "repeats": k,
                "machine": machine,
                "rows": [
                    {"measure": label, "unit": unit, "trackio": their, "mltrack": our, "ratio": their / our}
                    for label, their, our, unit in rows
                ],
                "raw": {
                    "trackio_logging": theirs,
                    "trackio_jsonl_logging": jsonl,
                    "mltrack_journals": ours_journal,
                    "mltrack_session_ends": ours_ended,
                    "mltrack_session_end_process": probe,
                    "cold": {
                        key: [{k2: v for k2, v in c.items() if k2 != "table"} for c in cs] for key, cs in cold.items()
                    },
                    "dashboards": served,
                    "bytes": {"mltrack": ours_bytes, "trackio": theirs_bytes},
                },
            }
            args.json.write_text(json.dumps(record, indent=2) + "\n")
            print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
