"""The dashboard's data, over one experiment folder.

``Source`` wraps :class:`mlt_kernel.read.query.Query` (the DuckDB views named like
the tables, latest version of every row), runs the statements of
:mod:`mlt_dashboard.sql` and returns pandas DataFrames shaped for the pages and
the export. Nothing here writes into the folder.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from mlt_dashboard import sql, style
from mlt_dashboard.ranking import is_missing
from mlt_kernel.core.locations import is_remote, parse_remote
from mlt_kernel.core.safeio import regular_file
from mlt_kernel.core.schema import (
    SAMPLES,
)
from mlt_kernel.read.compare import RunDiff, collect
from mlt_kernel.read.experiment import with_final_metrics
from mlt_kernel.read.finals import FINAL_METRICS_SQL
from mlt_kernel.read.query import Query, Read, Window

#: Most points of a memory timeline sent to the browser; longer ones are bucketed (max per bucket).
MAX_TIMELINE_POINTS = 2000


# -- the source ---------------------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., Any])


def _per_version(method: _F) -> _F:
    """Keep the result until the folder changes: pages and the live tick ask again often.

    Results are shared: callers must not modify them.
    """

    @functools.wraps(method)
    def wrapper(self: Source, *args: Any) -> Any:
        key = (method.__name__, *args)
        if key not in self._memo:
            self._memo[key] = method(self, *args)
        return self._memo[key]

    return wrapper  # type: ignore[return-value]


@dataclass
class RunPage:
    """What a run page shows besides the run's own row."""

    metrics: pd.DataFrame  #: final values: ``name, value, split``
    steps: pd.DataFrame  #: training curves: ``name, step, value``
    timeline: pd.DataFrame  #: see :meth:`Source.run_timeline`
    cells: pd.DataFrame
    confusion: dict[str, tuple[list[str], list[list[int]]]]  #: ``{split: (labels, matrix)}``, ``test`` first
    curves: pd.DataFrame  #: ROC and PR points: ``split, kind, label, x, y, auc``
    plots: pd.DataFrame  #: the latest version of each of the run's plot files
    notes: pd.DataFrame  #: the run's notes and those tied to its plots


class Source:
    """The read side of one experiment folder for one browser session (or the export).

    ``refresh()`` picks up what writers added; the page code calls it from its
    periodic callback and redraws only when it returns True.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: An ``s3://`` experiment: read through its local mirror, which refresh() brings up to date.
        self.remote = is_remote(path)
        if self.remote:
            self._q = Query(str(path))
            self.path = self._q.root
            self.name = parse_remote(str(path)).url
        else:
            self.path = Path(path).absolute()
            self.name = self.path.name
            self._q = Query(self.path)
        self.changed_at = time.time()
        self._memo: dict[tuple[Any, ...], Any] = {}

    # -- plumbing ---------------------------------------------------------------
    def refresh(self) -> bool:
        """True when the folder changed since the last call."""
        changed = self._q.refresh()
        if changed:
            self.changed_at = time.time()
            self._memo.clear()
        return changed

    def invalidate(self) -> None:
        """Forget cached results (they are also dropped whenever the folder changes)."""
        self._memo.clear()

    def _small(self, statement: str, params: list[Any], select: str) -> pd.DataFrame:
        """A small result as a DataFrame, through plain rows: several times cheaper than
        DuckDB's pandas conversion for the handful of rows a run page asks for."""
        return pd.DataFrame.from_records(self._q.rows(statement, params), columns=sql.names(select))

    def _df(self, statement: str, params: list[Any] | None = None) -> pd.DataFrame:
        return _plain_numbers(self._q.df(statement, params))

    def close(self) -> None:
        self._q.close()

    # -- summary ----------------------------------------------------------------
    @_per_version
    def counts(self) -> dict[str, int]:
        """``sessions``, ``running_sessions``, ``runs``, ``guarded_runs`` (runs the memory guard stopped a cell of)."""
        row = self._q.rows(sql.COUNTS_SQL)[0]
        return {
            "sessions": int(row[0]),
            "running_sessions": int(row[1]),
            "runs": int(row[2]),
            "guarded_runs": int(row[3]),
        }

    @_per_version
    def _run_rows(self) -> pd.DataFrame:
        """Every run with its params parsed and UTC times: what ``runs()`` and ``run()`` start from."""
        self._q.prepare(sql.RUNS_SQL, FINAL_METRICS_SQL)
        runs = self._df(sql.RUNS_SQL)
        runs["params"] = [style.params_of(_json(v, {})) for v in runs["params"]]
        return runs

    @_per_version
    def runs(self) -> pd.DataFrame:
        """One row per run, final ``test`` metrics as columns (``METRIC_ORDER`` first)."""
        runs = with_final_metrics(self._run_rows().drop(columns=["first_cell_seq", "last_cell_seq"]), self._q)
        for col in ("started_at", "ended_at"):
            runs[col] = _local(runs[col])
        return runs.reset_index(drop=True)

    # -- one run ----------------------------------------------------------------
    @_per_version
    def run(self, run: str) -> dict[str, Any] | None:
        """The run whose id (or, failing that, name: the latest such run) is *run*; None when there is none."""
        rows = self._run_rows()
        at = np.flatnonzero(rows["run_id"].to_numpy() == run)
        if not len(at):
            at = np.flatnonzero(rows["name"].to_numpy() == run)  # runs are in start order: the last
        if not len(at):
            return None
        i = int(at[-1])
        return {col: _native(rows[col].iat[i]) for col in rows.columns}

    def run_timeline(self, run: dict[str, Any], max_points: int = MAX_TIMELINE_POINTS) -> pd.DataFrame:
        """Memory and CPU samples during *run*, at most *max_points* rows.

        Columns ``t`` (seconds since the run started), ``rss_bytes``,
        ``children_rss_bytes``, ``gpu_bytes``, ``cpu_percent``, ``samples``.
        """
        window = _timeline_window(run)
        if window is None:
            return _timeline_frame(None, window, max_points)
        return _timeline_frame(self._q.numpy(sql.TIMELINE_SQL, window, _samples_window(window)), window, max_points)

    def run_page(self, run: dict[str, Any]) -> RunPage:
        """Everything a run page shows but the run itself, read by independent queries at once.

        On a run page each query's fixed cost is most of its time, and DuckDB
        runs queries on separate cursors in parallel, without the GIL.
        """
        rid = run["run_id"]
        first: Any = run.get("first_cell_seq")
        last: Any = run.get("last_cell_seq")
        if is_missing(first) or is_missing(last):  # still running
            cells = (sql.RUN_CELLS_SQL.format(which="run_id = ?"), [run["session_id"], rid])
        else:
            cells = (
                sql.RUN_CELLS_SQL.format(which="cell_seq BETWEEN ? AND ?"),
                [run["session_id"], int(first), int(last)],
            )
        window = _timeline_window(run)
        # Two lanes of about equal time: the Parquet reads (the metrics, and
        # the samples through a window) and the small tables in one query,
        # since each query's fixed cost is most of a small read's time. Each
        # result is shaped on its lane's thread, beside the other lane's query.
        parts = (  # (statement, params, shape)
            (sql.CONFUSION_SQL, [rid], _confusion_dict),
            (*cells, _frame(sql.RUN_CELLS_COLS)),
            (sql.CURVES_SQL, [rid], _curves_frame),
            (sql.RUN_PLOTS_SQL, [rid], _frame(sql.PLOTS_COLS)),
            (sql.RUN_NOTES_SQL, [rid, rid], _frame(sql.NOTES_COLS)),
        )
        files = [Read(sql.RUN_METRICS_SQL, [rid], then=_metric_frames)]
        if window is not None:
            files.append(
                Read(
                    sql.TIMELINE_SQL,
                    window,
                    numpy=True,
                    window=_samples_window(window),
                    then=lambda cols: _timeline_frame(cols, window, MAX_TIMELINE_POINTS),
                )
            )
        tables = Read(
            "SELECT " + ", ".join(_rows_as_list(statement) for statement, _, _ in parts),
            [param for _, params, _ in parts for param in params],
            then=lambda rows: [
                shape([tuple(r.values()) for r in structs or ()])
                for (_, _, shape), structs in zip(parts, rows[0], strict=True)
            ],
        )
        ((finals, steps), *timeline), ((confusion, cells_df, curves, plots, notes),) = self._q.read_all(files, [tables])
        return RunPage(
            metrics=finals,
            steps=steps,
            timeline=timeline[0] if timeline else _timeline_frame(None, window, MAX_TIMELINE_POINTS),
            cells=cells_df,
            confusion=confusion,
            curves=curves,
            plots=plots,
            notes=notes,
        )

    @_per_version
    def run_fits(self, run_id: str) -> pd.DataFrame:
        """The scikit-learn fits of a run and of the runs started inside it (JSON columns decoded)."""
        fits = self._small(sql.RUN_FITS_SQL, [run_id, run_id], sql.RUN_FITS_COLS)
        for column, default in (
            ("params", {}),
            ("top_features", []),
            ("best_params", {}),
            ("search_results", {}),
        ):
            fits[column] = [_json(v, default) for v in fits[column]]
        return fits

    @_per_version
    def compare(self, run_ids: tuple[str, ...]) -> RunDiff:
        """Runs side by side, every row kept (``differs`` tells which differ); the first is the baseline."""
        return RunDiff.build(collect(self._q, run_ids), only_differences=False)

    def session(self, session_id: str) -> dict[str, Any] | None:
        """One kernel session, or None."""
        rows = self._small(sql.SESSION_SQL, [session_id], sql.SESSION_COLS)
        if rows.empty:
            return None
        for col in ("started_at", "ended_at"):
            rows[col] = _local(rows[col])
        session: dict[str, Any] = rows.iloc[0].to_dict()
        return session

    # -- plots and notes --------------------------------------------------------
    def plots(self) -> pd.DataFrame:
        """The latest version of every plot file."""
        return self._df(sql.PLOTS_SQL.format(where=""))

    def notes(self) -> pd.DataFrame:
        """Every note, verbatim."""
        return self._df(sql.NOTES_SQL.format(where=""))

    def plot_path(self, row: dict[str, Any]) -> Path | None:
        """The file of a plot row: a regular file inside the experiment folder, reached through no link.

        The row is a shared folder's data: an absolute path, ``..`` or a link
        anywhere below the folder finds nothing (``mlt_kernel.core.safeio``).
        """
        rel = row.get("path") if not is_missing(row.get("path")) else None
        candidates = [rel] if isinstance(rel, str) and rel else []
        file = row.get("file")
        if isinstance(file, str) and file:
            candidates.append(f"plots/{PurePath(file).name}")
        for cand in candidates:
            found = regular_file(self.path, cand)
            if found is not None:
                return found
        return None

    # -- cells ------------------------------------------------------------------
    @_per_version
    def sessions(self) -> pd.DataFrame:
        """Kernel sessions, newest first."""
        df = self._df(sql.SESSIONS_SQL)
        for col in ("started_at", "ended_at"):
            df[col] = _local(df[col])
        return df

    def ledger(self, session_ids: list[str] | None = None) -> pd.DataFrame:
        """Every recorded cell (of the given sessions), in the order they ran."""
        return self._ledger(tuple(session_ids or ()))

    @_per_version
    def _ledger(self, session_ids: tuple[str, ...]) -> pd.DataFrame:
        if session_ids:
            df = self._df(
                sql.LEDGER_SQL.format(where="WHERE list_contains(?::VARCHAR[], session_id)"), [list(session_ids)]
            )
        else:
            df = self._df(sql.LEDGER_SQL.format(where=""))
        df["started_at"] = _local(df["started_at"])
        return df

    # -- documents --------------------------------------------------------------
    def document_titles(self) -> pd.DataFrame:
        return self._df(sql.DOCUMENT_TITLES_SQL)


# -- helpers ------------------------------------------------------------------------


def _native(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


_TIMELINE_VALUES = ("rss_bytes", "children_rss_bytes", "gpu_bytes", "cpu_percent")


def _rows_as_list(statement: str) -> str:
    """A scalar subquery: the rows of *statement* as one list of structs, in its final ORDER BY."""
    body, _, order = statement.rpartition("ORDER BY")
    if not body:
        return f"(SELECT list(q) FROM ({statement}) q)"
    return f"(SELECT list(q ORDER BY {order.strip()}) FROM ({body}) q)"


def _frame(select: str) -> Callable[[list[tuple[Any, ...]]], pd.DataFrame]:
    """Rows of a query selecting *select* as a DataFrame."""
    return lambda rows: pd.DataFrame.from_records(rows, columns=sql.names(select))


def _confusion_dict(rows: list[tuple[Any, ...]]) -> dict[str, tuple[list[str], list[list[int]]]]:
    """``{split: (labels, matrix)}`` from ``split, labels, matrix`` rows."""
    return {str(split): ([str(x) for x in _json(labels, [])], _json(matrix, [])) for split, labels, matrix in rows}


def _curves_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Curve rows with their points parsed."""
    df = pd.DataFrame.from_records(rows, columns=sql.names(sql.CURVES_COLS))
    df["x"] = [_json(v, []) for v in df["x"]]
    df["y"] = [_json(v, []) for v in df["y"]]
    return df


def _metric_frames(rows: list[tuple[Any, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Final values and training curves from ``name, step, value, split, recorded_at`` rows.

    The latest row per ``(name, split, step)`` wins: cheaper here, for one
    run's rows, than a window in SQL.
    """
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = row[0], row[3], row[1]
        if key not in latest or (row[4] or 0) >= (latest[key][4] or 0):
            latest[key] = row
    ordered = sorted(latest.values(), key=lambda r: (r[0], r[1] if r[1] is not None else 0))
    return (
        pd.DataFrame.from_records(
            [(n, v, sp) for n, st, v, sp, _ in ordered if st is None], columns=["name", "value", "split"]
        ),
        pd.DataFrame.from_records(
            [(n, st, v) for n, st, v, _, _ in ordered if st is not None], columns=["name", "step", "value"]
        ),
    )


def _timeline_window(run: dict[str, Any]) -> list[Any] | None:
    """``[session_id, start, end]`` of *run* for ``sql.TIMELINE_SQL``; None before it started."""
    if is_missing(run["started_at"]):
        return None
    end = run.get("ended_at")
    return [
        run["session_id"],
        pd.Timestamp(run["started_at"]),
        pd.Timestamp.now(tz="UTC") if is_missing(end) else pd.Timestamp(end),
    ]


def _samples_window(window: list[Any]) -> Window:
    """The :class:`Window` of the samples for a ``_timeline_window``."""
    return Window(SAMPLES.name, window[1].value // 1000, window[2].value // 1000)


def _timeline_frame(cols: dict[str, Any] | None, window: list[Any] | None, max_points: int) -> pd.DataFrame:
    """The samples ``sql.TIMELINE_SQL`` read for *window* (or none), at most *max_points* rows."""
    if cols is None or window is None:
        return pd.DataFrame(columns=["t", *_TIMELINE_VALUES, "samples"])
    _, start, end = window
    us = np.asarray(cols["us"], dtype=np.int64)
    order = np.argsort(us, kind="stable")  # a parallel scan may interleave files
    us = us[order] - (start - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    values = {c: np.ma.filled(np.ma.asarray(cols[c], dtype=np.float64), np.nan)[order] for c in _TIMELINE_VALUES}
    span_us = max(int((end - start).total_seconds() * 1e6), 1)
    return _buckets(us, values, max(math.ceil(span_us / max_points), 1) if len(us) > max_points else None)


def _buckets(us: np.ndarray, values: dict[str, np.ndarray], bucket_us: int | None) -> pd.DataFrame:
    """Samples at *us* (sorted, µs since the start), one row per *bucket_us* (None: per sample).

    A bucket keeps its first time, its highest memory readings (a peak must
    never be averaged away) and its mean CPU.
    """
    if bucket_us is None:
        return pd.DataFrame({"t": us / 1e6, **values, "samples": np.ones(len(us), dtype=np.int64)})
    ids = us // bucket_us
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    out: dict[str, Any] = {"t": us[starts] / 1e6}
    for name, col in values.items():
        if name == "cpu_percent":
            known = ~np.isnan(col)
            total = np.add.reduceat(np.where(known, col, 0.0), starts)
            count = np.add.reduceat(known.astype(np.int64), starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        else:
            out[name] = np.fmax.reduceat(col, starts)
    out["samples"] = np.diff(np.r_[starts, len(us)])
    return pd.DataFrame(out)


def _plain_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns (``Int64`` with ``pd.NA``) as floats with NaN.

    Byte counts fit a float exactly far beyond any machine's memory, and NaN is
    what the formatters and charts expect for "no value".
    """
    for col, dtype in df.dtypes.items():
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iuf":
            df[col] = df[col].astype("float64")
        elif isinstance(dtype, pd.BooleanDtype):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            return default
    return default if is_missing(value) else value


def _local(column: pd.Series) -> pd.Series:
    """UTC timestamps as naive local times (what a person reads on their clock)."""
    return pd.to_datetime(column, utc=True).dt.tz_convert(style.local_zone()).dt.tz_localize(None)
