"""MLTrack's store against MLflow (sqlite backend) on the same workload, in one run.

Workload (defaults): 200 runs, each with 5 params, 4 final test metrics
(accuracy, precision, recall, f1), 600 timeline samples of RAM and GPU memory,
and a 2x2 confusion matrix. The synthetic values are made before any clock
starts; each side's timing includes turning them into its own records.

MLTrack — written the way the kernel writes, one kernel session per run by
default (``--runs-per-session`` groups runs):

- kernel journal ``{session}.kernel.v1.jsonl`` through ``JournalWriter`` (one
  ``os.write`` of a JSON line per record): ``sessions`` running, ``runs``
  running, the run's cell written ahead (``cells`` running), 4 ``metrics`` rows
  (``step`` empty, ``split="test"``), one ``confusion`` row, the cell's final
  ``cells`` row with its peak RSS, ``runs`` finished, ``sessions`` ended;
- the watcher's samples journal ``{session}.samples.v1.jsonl``: 600 ``samples`` rows, each
  carrying ``rss_bytes`` *and* ``gpu_bytes`` (the watcher writes both in one row),
  ``SAMPLE_BATCH`` rows per ``os.write`` as the watcher writes them during a cell;
  then the cell's ``cell_usage`` row with its GPU peak in ``{session}.watcher.v1.jsonl``;
- at session end ``store.compact_writer`` (journals -> one Parquet file per
  table, fsync'ed). Logging is reported without and with that compaction
  (two separate folders, so the journal-only one can be queried live). Two more
  rows: that folder merged once at the end (``compaction.compact_experiment``),
  and a third folder where every session end runs ``compact_experiment(exp,
  writer=…)`` — compact_writer then merge every table, which is what the
  kernel's end-of-session subprocess does (run in-process here, so without
  that subprocess's start-up).

MLflow — its fastest public API on a ``sqlite:///`` tracking store in a temp
dir: ``MlflowClient.create_run``, ``log_batch`` (params, final metrics, the
run's peak RAM and GPU as two more final metrics ``peak_ram_bytes``/
``peak_gpu_bytes`` — what a user who wants peaks in MLflow's run table logs —
and the RAM and GPU samples as two metric histories ``ram_bytes``/``gpu_bytes``
with step and timestamp, packed 1,000 entities per call — MLflow's limit),
``log_dict`` for the confusion matrix (a JSON artifact), ``set_terminated``.
Database creation/migration is done before the clock starts.

Logging into journals only is repeated ``--repeat`` times (fresh folders) and
the median reported; the other logging rows and MLflow's logging run once.

Queries (median of ``--repeat``):

- compare all runs — name, status, params, final metrics, time, peak RAM and
  peak GPU of every run: ours ``Experiment(path).runs()`` (cold: a new
  ``Experiment`` each time; warm: the same object again), live from journals,
  from per-session Parquet files, and after merging. MLflow answers the same
  table in two ways, and both are printed, each on rows of its own:

  * **like-for-like** — ``mlflow.search_runs`` alone, the peaks read from the
    ``peak_*`` final metrics logged with each run (the peaks were computed
    while logging, as MLTrack's watcher computes them);
  * **with metric histories** — ``search_runs`` plus both metric histories of
    every run (``get_metric_history``), the peaks taken from the samples: what
    the table costs when only the timelines were logged (MLflow keeps the last
    value of a metric per run, not its maximum).
- one run's timeline: ours ``Experiment.samples(run=run_id)`` (RAM and GPU in one
  frame); MLflow ``get_metric_history(run_id, "ram_bytes")`` + ``"gpu_bytes"``.

Goal (issue 7): >= 60x faster logging, >= 100x faster comparing. Logging is
what the notebook waits for: the journals. Compaction runs after a session
ends, in a process of its own, and is printed on its own rows. The last lines
headline both compare ratios (merged, cold), saying which is which.

Install MLflow with the optional extra, then run::

    pip install -e '.[bench]'
    python benchmarks/store_vs_mlflow.py [--runs 200] [--samples 600]

About 2 minutes on a 2-core machine, most of it MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T0_US = 1_700_000_000_000_000  # synthetic clock, µs since the epoch
SAMPLE_US = 50_000  # the watcher's busy interval
FINAL_METRICS = ("accuracy", "precision", "recall", "f1")


@dataclass
class RunData:
    run_id: str
    session: str
    name: str
    params: dict[str, Any]
    finals: dict[str, float]
    started_at: int
    ended_at: int
    t: list[int]
    rss: list[int]
    gpu: list[int]
    confusion: list[list[int]]


def make_workload(runs: int, samples: int, runs_per_session: int, seed: int = 0) -> list[RunData]:
    from mlt_kernel.core import layout

    rng = random.Random(seed)
    out: list[RunData] = []
    t = T0_US
    session = ""
    for r in range(runs):
        if r % runs_per_session == 0:
            session = layout.new_writer_id()
        started = t
        ts = [started + (i + 1) * SAMPLE_US for i in range(samples)]
        base_rss = 400_000_000 + rng.randrange(600_000_000)
        base_gpu = 500_000_000 + rng.randrange(4_000_000_000)
        tp, fn, fp, tn = (rng.randrange(50, 500) for _ in range(4))
        out.append(
            RunData(
                run_id=layout.new_writer_id(),
                session=session,
                name=f"model_{r:04d}",
                params={
                    "model": rng.choice(["rf", "gb", "mlp"]),
                    "n_estimators": rng.choice([100, 200, 300, 500]),
                    "max_depth": rng.randint(2, 16),
                    "learning_rate": rng.choice([0.3, 0.1, 0.03, 0.01]),
                    "seed": r,
                },
                finals={m: rng.random() for m in FINAL_METRICS},
                started_at=started,
                ended_at=ts[-1] + SAMPLE_US if ts else started + SAMPLE_US,
                t=ts,
                rss=[base_rss + rng.randrange(50_000_000) for _ in range(samples)],
                gpu=[base_gpu + rng.randrange(10_000_000) for _ in range(samples)],
                confusion=[[tn, fp], [fn, tp]],
            )
        )
        t += (samples + 10) * SAMPLE_US
    return out


# -- MLTrack -------------------------------------------------------------------


def log_mltrack(exp: Path, workload: list[RunData], compact: str | None) -> tuple[float, float]:
    """Write *workload* as kernel sessions would; returns (total seconds, of which compaction).

    *compact* at each session end: None (leave the journals), ``"writer"``
    (``store.compact_writer``) or ``"experiment"`` (``compact_experiment(exp,
    writer=…)``: compact_writer then merge every table, what the kernel's
    end-of-session subprocess runs).
    """
    from mlt_kernel.core import layout
    from mlt_kernel.store import parquet as store
    from mlt_kernel.store.compaction import compact_experiment
    from mlt_kernel.store.journal import JournalWriter, journal_name
    from mlt_kernel.watcher.loop import SAMPLE_BATCH

    layout.ensure_layout(exp)
    jdir = exp / layout.JOURNALS
    sessions: dict[str, list[RunData]] = {}
    for run in workload:
        sessions.setdefault(run.session, []).append(run)
    compact_s = 0.0
    start = time.perf_counter()
    for sid, runs in sessions.items():
        kernel = JournalWriter(jdir / journal_name(sid, "kernel"))
        watcher = JournalWriter(jdir / journal_name(sid, "watcher"))
        sampled = JournalWriter(jdir / journal_name(sid, "samples"))
        kernel.write(
            "sessions",
            {"session_id": sid, "started_at": runs[0].started_at, "status": "running", "kernel_pid": os.getpid()},
        )
        for seq, run in enumerate(runs, 1):
            row = {
                "run_id": run.run_id,
                "name": run.name,
                "session_id": sid,
                "status": "running",
                "started_at": run.started_at,
                "params": run.params,
                "first_cell_seq": seq,
                "last_cell_seq": seq,
            }
            kernel.write("runs", row)
            cell = {
                "session_id": sid,
                "cell_seq": seq,
                "execution_count": seq,
                "code_sha1": "0" * 40,
                "code": "# mlt: record",
                "run_id": run.run_id,
                "run_name": run.name,
                "started_at": run.started_at,
                "rss_before_bytes": run.rss[0],
                "status": "running",
            }
            kernel.write("cells", cell)
            peak_rss = peak_gpu = 0
            batch: list[dict[str, Any]] = []
            for t, rss, gpu in zip(run.t, run.rss, run.gpu, strict=True):
                peak_rss, peak_gpu = max(peak_rss, rss), max(peak_gpu, gpu)  # the watcher keeps the cell's peaks
                batch.append(
                    {
                        "session_id": sid,
                        "t": t,
                        "rss_bytes": rss,
                        "gpu_bytes": gpu,
                        "cell_seq": seq,
                        "run_id": run.run_id,
                    }
                )
                if len(batch) == SAMPLE_BATCH:
                    sampled.write_many("samples", batch)
                    batch = []
            sampled.write_many("samples", batch)
            for name, value in run.finals.items():
                kernel.write(
                    "metrics",
                    {
                        "run_id": run.run_id,
                        "session_id": sid,
                        "name": name,
                        "step": None,
                        "value": value,
                        "split": "test",
                    },
                )
            kernel.write(
                "confusion", {"run_id": run.run_id, "split": "test", "labels": [0, 1], "matrix": run.confusion}
            )
            wall_s = (run.ended_at - run.started_at) / 1e6
            kernel.write(
                "cells",
                {
                    **cell,
                    "status": "ok",
                    "ended_at": run.ended_at,
                    "wall_s": wall_s,
                    "cpu_s": wall_s,
                    "rss_after_bytes": run.rss[-1],
                    "peak_rss_bytes": peak_rss,
                    "peak_exact": True,
                },
            )
            watcher.write(
                "cell_usage",
                {
                    "session_id": sid,
                    "cell_seq": seq,
                    "children_peak_rss_bytes": 0,
                    "peak_gpu_bytes": peak_gpu,
                    "samples": len(run.t),
                },
            )
            kernel.write(
                "runs",
                {
                    **row,
                    "status": "finished",
                    "ended_at": run.ended_at,
                    "wall_s": wall_s,
                    "cpu_s": wall_s,
                    "peak_rss_bytes": peak_rss,
                },
            )
        kernel.write(
            "sessions",
            {"session_id": sid, "started_at": runs[0].started_at, "ended_at": runs[-1].ended_at, "status": "ended"},
        )
        kernel.close()
        watcher.close()
        sampled.close()
        if compact is not None:
            c = time.perf_counter()
            if compact == "writer":
                store.compact_writer(exp, sid)
            else:
                compact_experiment(exp, writer=sid)
            compact_s += time.perf_counter() - c
    return time.perf_counter() - start, compact_s


def merge_mltrack(exp: Path) -> float:
    """``mlt-kernel compact``: every table's files merged (a session end merges at 16 files only)."""
    from mlt_kernel.store.compaction import compact_folder

    start = time.perf_counter()
    compact_folder(exp)
    return time.perf_counter() - start


# -- MLflow --------------------------------------------------------------------


def mlflow_setup(tmp: Path) -> tuple[Any, str]:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    client = MlflowClient()
    exp_id = client.create_experiment("bench", artifact_location=(tmp / "artifacts").as_uri())
    return client, exp_id


def log_mlflow(client: Any, exp_id: str, workload: list[RunData]) -> tuple[float, list[str]]:
    from mlflow.entities import Metric, Param

    batch_max = 1000  # MLflow's limit on metrics + params + tags per log_batch
    ids: list[str] = []
    start = time.perf_counter()
    for run in workload:
        mrun = client.create_run(exp_id, run_name=run.name, start_time=run.started_at // 1000)
        rid = mrun.info.run_id
        ids.append(rid)
        end_ms = run.ended_at // 1000
        params = [Param(k, str(v)) for k, v in run.params.items()]
        metrics = [Metric(k, v, end_ms, 0) for k, v in run.finals.items()]
        # The peaks as final metrics, so that search_runs alone can show them (like-for-like).
        metrics.append(Metric("peak_ram_bytes", float(max(run.rss)), end_ms, 0))
        metrics.append(Metric("peak_gpu_bytes", float(max(run.gpu)), end_ms, 0))
        for step, (t, rss, gpu) in enumerate(zip(run.t, run.rss, run.gpu, strict=True)):
            ms = t // 1000
            metrics.append(Metric("ram_bytes", float(rss), ms, step))
            metrics.append(Metric("gpu_bytes", float(gpu), ms, step))
        room = batch_max - len(params)
        client.log_batch(rid, metrics=metrics[:room], params=params)
        for i in range(room, len(metrics), batch_max):
            client.log_batch(rid, metrics=metrics[i : i + batch_max])
        client.log_dict(rid, {"labels": [0, 1], "matrix": run.confusion}, "confusion_matrix.json")
        client.set_terminated(rid, "FINISHED", end_time=end_ms)
    return time.perf_counter() - start, ids


# -- measuring -----------------------------------------------------------------


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def peaks_of(workload: list[RunData]) -> dict[str, tuple[int, int]]:
    """Each run's (peak RAM, peak GPU) by name: what both sides' compare tables must show."""
    return {run.name: (max(run.rss), max(run.gpu)) for run in workload}


def compare_ours(exp: Path, repeat: int, peaks: dict[str, tuple[int, int]]) -> tuple[float, float, int]:
    """(cold median, warm median, rows) of the compare-all-runs query."""
    from mlt_kernel import Experiment

    def cold() -> Any:
        with Experiment(exp) as e:
            return e.runs()

    cold_s, df = median_time(cold, repeat)
    missing = [m for m in FINAL_METRICS if m not in df]
    if missing:
        raise SystemExit(f"runs() lacks final metric columns {missing}")
    got = {
        name: (int(r), int(g))
        for name, r, g in zip(df["name"], df["peak_rss_bytes"], df["peak_gpu_bytes"], strict=True)
    }
    if got != peaks:
        raise SystemExit(f"runs() shows other peaks than were logged in {exp}")
    with Experiment(exp) as e:
        e.runs()
        warm_s, _ = median_time(e.runs, repeat)
    return cold_s, warm_s, len(df)


def check_mlflow_finals(df: Any, peaks: dict[str, tuple[int, int]]) -> None:
    """That ``search_runs`` alone gave the compare table with peaks (from the ``peak_*`` final metrics)."""
    missing = [c for c in (*(f"metrics.{m}" for m in FINAL_METRICS), "params.model") if c not in df]
    if missing:
        raise SystemExit(f"search_runs lacks columns {missing}")
    columns = (df["tags.mlflow.runName"], df["metrics.peak_ram_bytes"], df["metrics.peak_gpu_bytes"])
    got = {name: (int(r), int(g)) for name, r, g in zip(*columns, strict=True)}
    if got != peaks:
        raise SystemExit("MLflow's peak_* final metrics give other peaks than were logged")


def compare_mlflow(client: Any, exp_id: str, peaks: dict[str, tuple[int, int]]) -> Any:
    """MLflow's compare table with peaks from metric histories: ``search_runs``, then both histories of each run."""
    import mlflow

    df = mlflow.search_runs(experiment_ids=[exp_id])
    ram, gpu = [], []
    for run_id in df["run_id"]:
        ram.append(int(max(m.value for m in client.get_metric_history(run_id, "ram_bytes"))))
        gpu.append(int(max(m.value for m in client.get_metric_history(run_id, "gpu_bytes"))))
    df["peak_ram_bytes"], df["peak_gpu_bytes"] = ram, gpu
    got = dict(zip(df["tags.mlflow.runName"], zip(ram, gpu, strict=True), strict=True))
    if got != peaks:
        raise SystemExit("MLflow's histories give other peaks than were logged")
    return df


def timeline_ours(exp: Path, run_id: str, repeat: int) -> tuple[float, int]:
    from mlt_kernel import Experiment

    with Experiment(exp) as e:
        e.samples(run=run_id)
        secs, df = median_time(lambda: e.samples(run=run_id), repeat)
    return secs, len(df)


def fmt_s(s: float) -> str:
    return f"{s * 1000:9.1f} ms" if s < 10 else f"{s:9.2f} s "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200, help="runs to log (default 200)")
    parser.add_argument("--samples", type=int, default=600, help="RAM and GPU samples per run (default 600)")
    parser.add_argument("--runs-per-session", type=int, default=1, help="runs per kernel session (default 1)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="repeats of each query; the median is reported (default 3)"
    )
    parser.add_argument("--keep", metavar="DIR", help="write into DIR and keep it (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.samples < 1 or args.runs_per_session < 1 or args.repeat < 1:
        parser.error("--runs, --samples, --runs-per-session and --repeat must be >= 1")

    try:
        import mlflow
    except ImportError:
        print("MLflow is not installed: pip install -e '.[bench]'  (or pip install 'mlflow>=2.16,<4')", file=sys.stderr)
        return 2
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory(prefix="mlt-vs-mlflow-") as tmpdir:
        tmp = Path(args.keep).absolute() if args.keep else Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        workload = make_workload(args.runs, args.samples, args.runs_per_session)
        sessions = len({r.session for r in workload})
        print(
            f"workload: {args.runs} runs x (5 params, {len(FINAL_METRICS)} final metrics, {args.samples} RAM + "
            f"{args.samples} GPU samples, confusion matrix); {sessions} MLTrack session(s)",
            flush=True,
        )

        live, comp = tmp / "mlt-live", tmp / "mlt-compacted"
        # Journals only: the median of --repeat folders (the first is queried below).
        ours_journal_s = statistics.median(
            log_mltrack(live if r == 0 else tmp / f"mlt-live-{r}", workload, compact=None)[0]
            for r in range(args.repeat)
        )
        ours_total_s, ours_compact_s = log_mltrack(comp, workload, compact="writer")
        print(f"MLTrack logged in {ours_total_s:.2f} s (compaction {ours_compact_s:.2f} s)", flush=True)
        kernel_s, kernel_compact_s = log_mltrack(tmp / "mlt-kernel-path", workload, compact="experiment")
        print(f"MLTrack logged, compact_experiment per session: {kernel_s:.2f} s", flush=True)

        run_id = workload[len(workload) // 2].run_id
        peaks = peaks_of(workload)
        live_cold, live_warm, n_live = compare_ours(live, args.repeat, peaks)
        live_tl, n_live_tl = timeline_ours(live, run_id, args.repeat)
        sess_cold, sess_warm, n_sess = compare_ours(comp, args.repeat, peaks)
        sess_tl, _ = timeline_ours(comp, run_id, args.repeat)
        merge_s = merge_mltrack(comp)
        merged_cold, merged_warm, n_merged = compare_ours(comp, args.repeat, peaks)
        merged_tl, n_merged_tl = timeline_ours(comp, run_id, args.repeat)
        assert n_live == n_sess == n_merged == args.runs, (n_live, n_sess, n_merged)
        assert n_live_tl == n_merged_tl == args.samples, (n_live_tl, n_merged_tl)

        client, exp_id = mlflow_setup(tmp)
        print("MLflow logging…", flush=True)
        mlflow_log_s, mlflow_ids = log_mlflow(client, exp_id, workload)
        print(f"MLflow logged in {mlflow_log_s:.2f} s", flush=True)
        # Like-for-like: search_runs alone, the peaks logged as final metrics (checked after the clock).
        finals_s, mdf = median_time(lambda: mlflow.search_runs(experiment_ids=[exp_id]), args.repeat)
        check_mlflow_finals(mdf, peaks)
        assert len(mdf) == args.runs, len(mdf)
        mlflow_cmp_s, _ = median_time(lambda: compare_mlflow(client, exp_id, peaks), 1)  # seconds: once is enough
        mid = mlflow_ids[len(mlflow_ids) // 2]

        def mlflow_timeline() -> int:
            return len(client.get_metric_history(mid, "ram_bytes")) + len(client.get_metric_history(mid, "gpu_bytes"))

        mlflow_tl_s, n_points = median_time(mlflow_timeline, args.repeat)
        assert n_points == 2 * args.samples, n_points

        compares = [
            ("live journals, cold", live_cold),
            ("live journals, warm", live_warm),
            (f"{sessions} session files, cold", sess_cold),
            (f"{sessions} session files, warm", sess_warm),
            ("merged, cold", merged_cold),
            ("merged, warm", merged_warm),
        ]
        sections: list[tuple[str, list[tuple[str, float, float]]]] = [
            (
                "logging (MLflow: log_batch)",
                [
                    ("log (journals: what the notebook waits for)", ours_journal_s, mlflow_log_s),
                    ("log + compact_writer per session", ours_total_s, mlflow_log_s),
                    ("log + compact_writer + merge once", ours_total_s + merge_s, mlflow_log_s),
                    ("log + compact_experiment per session", kernel_s, mlflow_log_s),
                ],
            ),
            (
                "compare runs() with peaks, like-for-like (MLflow: search_runs, peaks logged as final metrics)",
                [(f"compare runs(), {label}", ours, finals_s) for label, ours in compares],
            ),
            (
                "compare runs() with peaks, MLflow from metric histories (search_runs + get_metric_history per run)",
                [(f"compare runs(), {label}", ours, mlflow_cmp_s) for label, ours in compares],
            ),
            (
                "one run's timeline (MLflow: get_metric_history of ram_bytes and gpu_bytes)",
                [
                    ("timeline samples(run), live journals", live_tl, mlflow_tl_s),
                    (f"timeline samples(run), {sessions} session files", sess_tl, mlflow_tl_s),
                    ("timeline samples(run), merged", merged_tl, mlflow_tl_s),
                ],
            ),
        ]
        print()
        print(f"{'measure':<50} {'MLTrack':>12} {'MLflow':>12} {'ratio':>8}")
        print("-" * 86)
        for heading, rows in sections:
            print(heading)
            for label, ours, theirs in rows:
                print(f"  {label:<48} {fmt_s(ours)} {fmt_s(theirs)} {theirs / ours:7.1f}x")
        print()
        print(
            f"compaction: compact_writer {ours_compact_s:.2f} s ({sessions} sessions), merge once {merge_s:.2f} s, "
            f"compact_experiment per session {kernel_compact_s:.2f} s; "
            f"queries: median of {args.repeat}"
        )
        print(
            f"MLflow compare: like-for-like (search_runs) the median of {args.repeat}; "
            "from metric histories timed once (it is the slow one)"
        )
        logging_ratio = mlflow_log_s / ours_journal_s
        timeline_ratio = mlflow_tl_s / merged_tl
        print()
        print(
            f"logging ratio {logging_ratio:.1f}x (goal >= 60x; {mlflow_log_s / ours_total_s:.1f}x counting compaction) "
            f"| timeline ratio {timeline_ratio:.1f}x"
        )
        print("compare ratio, ours merged and cold (goal >= 100x):")
        print(
            f"  like-for-like:        {finals_s / merged_cold:7.1f}x  MLflow search_runs, peaks logged as final "
            f"metrics ({fmt_s(finals_s).strip()} against {fmt_s(merged_cold).strip()})"
        )
        print(
            f"  with metric histories: {mlflow_cmp_s / merged_cold:6.1f}x  MLflow search_runs + get_metric_history "
            f"per run for the peaks ({fmt_s(mlflow_cmp_s).strip()} against {fmt_s(merged_cold).strip()})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
