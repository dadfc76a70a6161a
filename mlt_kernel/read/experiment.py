"""The read API: ``Experiment(path)`` returns pandas DataFrames.

Reading never writes into the folder (a teammate may have read access only);
files that cannot be read are skipped with one ``DamagedFileWarning`` each.
Live journals are read as they are, so a running kernel's cells show up at
once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlt_kernel.core import layout, safeio
from mlt_kernel.core.errors import UnknownRunError, UnsafeFileError
from mlt_kernel.core.locations import is_remote, parse_remote
from mlt_kernel.core.schema import SAMPLES
from mlt_kernel.read import compare
from mlt_kernel.read.compare import RunDiff
from mlt_kernel.read.finals import FINAL_METRICS_SQL, final_metrics
from mlt_kernel.read.query import RUN_CELLS, RUN_LAST_CELL, Query, Window, json_value


def _json_column(df: pd.DataFrame, column: str) -> None:
    if column in df:
        df[column] = [json_value(v) for v in df[column]]


def predictions_file(stored: Any) -> str:
    """The path, relative to the experiment, of a ``predictions`` row's ``file``.

    The row is data from a shared folder: only ``predictions/NAME`` is accepted,
    never an absolute path, ``..`` or another folder.

    Raises:
        UnsafeFileError: anything else (the message names the stored value).
    """
    text = stored if isinstance(stored, str) else ""
    try:
        parts = safeio.parts_below(text)
    except UnsafeFileError:
        parts = ()
    if len(parts) != 2 or parts[0] != layout.PREDICTIONS:
        raise UnsafeFileError(repr(stored), f"not a file directly in the {layout.PREDICTIONS}/ folder")
    return "/".join(parts)


def with_final_metrics(runs: pd.DataFrame, query: Query) -> pd.DataFrame:
    """*runs* with one column per final ``test`` metric, ``METRIC_ORDER`` first.

    A metric named like a column of *runs* (``name``, ``status``…) stays out:
    it would replace that column. ``metrics()`` still has it.
    """
    wide = final_metrics(query, set(runs.columns))
    if not wide:
        return runs
    ids = runs["run_id"].tolist()
    columns = {name: [values.get(i) for i in ids] for name, values in wide.items()}
    return pd.concat([runs, pd.DataFrame(columns, index=runs.index, dtype="float64")], axis=1)


class Experiment:
    """One experiment folder, read through DuckDB views named like the methods."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: ``s3://bucket/prefix`` for an experiment on object storage (read through a local mirror).
        self.url: str | None = None
        if is_remote(path):
            self.url = parse_remote(str(path)).url
            self._q = Query(self.url)
            self.path = self._q.root
            if not layout.is_experiment(self.path):
                self._q.close()
                raise FileNotFoundError(f"{self.url} holds no MLTrack experiment")
            return
        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"no experiment folder at {root}")
        if not layout.is_experiment(root):
            raise FileNotFoundError(f"{root} is not an MLTrack experiment folder (no {layout.MARKER})")
        self.path = root.absolute()
        self._q = Query(self.path)

    def __repr__(self) -> str:
        return f"Experiment({self.url or str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def refresh(self) -> bool:
        """Pick up what writers added since the last call (every method does this)."""
        return self._q.refresh()

    def _df(self, sql: str, params: list[Any] | None = None, *, keep: bool = False) -> pd.DataFrame:
        self._q.refresh()
        return self._q.df(sql, params, keep=keep)

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """DuckDB SQL over views named like the tables: ``runs``, ``cells``, ``samples``, …"""
        self._q.refresh()
        return self._q.df(query, params)

    # -- sessions and cells ----------------------------------------------------
    def sessions(self) -> pd.DataFrame:
        """One row per kernel session (status ``running``, ``ended`` or ``killed``), with its provenance."""
        sessions = self._df("SELECT * EXCLUDE (recorded_at) FROM sessions ORDER BY started_at")
        _json_column(sessions, "gpus")
        return sessions

    def cells(self, session: str | None = None, run: str | None = None) -> pd.DataFrame:
        """One row per executed cell, in the order they ran."""
        where, params = [], []
        if session is not None:
            where.append("session_id = ?")
            params.append(session)
        if run is not None:
            found = self.resolve_run(run)
            where.append(RUN_CELLS)
            params += [found["session_id"], found["run_id"], found["first_cell_seq"], found["last_cell_seq"]]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._df(
            f"SELECT * EXCLUDE (recorded_at) FROM cells {clause} ORDER BY started_at, session_id, cell_seq",
            params,
        )

    def lineage(self, run: str) -> pd.DataFrame:
        """How *run* came to be: the cells of its session in the order they ran, from the
        session's start through the run's last cell (``cell_seq, execution_count, code,
        status, error_name, run_name, started_at``).

        In a notebook whose cells ran out of order, this is the order that produced the
        run, whatever the notebook file shows. ``execution_count`` jumps where a cell was
        not recorded (``# mlt: skip``, or silent executions).
        """
        found = self.resolve_run(run)
        return self._df(
            "SELECT cell_seq, execution_count, code, status, error_name, run_name, started_at FROM cells "
            f"WHERE session_id = ? AND cell_seq <= {RUN_LAST_CELL} ORDER BY cell_seq",
            [found["session_id"], found["last_cell_seq"], found["run_id"]],
        )

    def replay(self, run: str, exp_path: str | os.PathLike[str] | None = None) -> Any:
        """*run*'s lineage as a notebook (``nbformat``) that reproduces it; see ``mlt_kernel.read.replay``.

        *exp_path*: where the replay records (its ``EXP_PATH`` assignments are
        rewritten to it); None keeps them as they were.
        """
        from mlt_kernel.read import replay

        found = self.resolve_run(run)
        keys = ("session_id", "notebook", "hostname", "git_commit", "git_branch", "git_dirty", "git_remote")
        rows = self._q.rows(f"SELECT {', '.join(keys)} FROM sessions WHERE session_id = ?", [found["session_id"]])
        session = dict(zip(keys, rows[0], strict=True)) if rows else {}
        packages = self._q.rows("SELECT packages FROM _latest_runs WHERE run_id = ?", [found["run_id"]])
        found["packages"] = json_value(packages[0][0]) if packages else None
        target = None if exp_path is None else os.fspath(Path(os.fspath(exp_path)).absolute())
        return replay.notebook(self.lineage(found["run_id"]), found, session, target)

    def diff(self, run_a: str, run_b: str, *, only_differences: bool = True) -> RunDiff:
        """What differs between two runs: params, final metrics, provenance (packages, git,
        machine) as tables, and unified diffs of their own cells' code and of their lineages.

        ``str()`` of the result reads like a review; ``only_differences=False`` keeps the
        rows that are the same (with ``differs`` False).
        """
        return self.compare([run_a, run_b], only_differences=only_differences)

    def compare(self, runs: Sequence[str], *, only_differences: bool = False) -> RunDiff:
        """Runs side by side (ids or unique names); the first is the baseline of the code diffs."""
        if len(runs) < 2:
            raise ValueError(f"compare needs at least two runs, got {len(runs)}")
        ids = [self.resolve_run(run)["run_id"] for run in runs]
        return RunDiff.build(compare.collect(self._q, ids), only_differences=only_differences)

    # -- runs ------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """One row per run, with its final ``test`` metrics as columns (``params``, ``packages`` and
        ``env`` are dictionaries)."""
        statement = "SELECT * EXCLUDE (recorded_at) FROM runs ORDER BY started_at"
        self._q.prepare(statement, FINAL_METRICS_SQL)
        runs = self._df(statement, keep=True)  # asked again and again (a notebook, a loop): kept
        for column in ("params", "packages", "env"):
            _json_column(runs, column)
        return with_final_metrics(runs, self._q).reset_index(drop=True)

    def fits(self, run: str | None = None) -> pd.DataFrame:
        """One row per outermost scikit-learn fit (autolog), in the order they started; with *run*,
        the fits of that run and of the runs started inside it. ``params``, ``feature_names``,
        ``top_features`` and ``best_params`` are decoded; ``search_results`` is left out (see
        :meth:`search_results`)."""
        where, params = "", []
        if run is not None:
            found = self.resolve_run(run)
            where = "WHERE run_id = ? OR run_id IN (SELECT run_id FROM runs WHERE parent_run_id = ?)"
            params = [found["run_id"], found["run_id"]]
        fits = self._df(f"SELECT * EXCLUDE (recorded_at, search_results) FROM fits {where} ORDER BY started_at", params)
        for column in ("params", "feature_names", "top_features", "best_params"):
            _json_column(fits, column)
        return fits.reset_index(drop=True)

    def search_results(self, fit_id: str) -> pd.DataFrame:
        """A hyper-parameter search's ``cv_results_`` (one row per candidate) from its fit's row."""
        rows = self._df("SELECT search_results FROM fits WHERE fit_id = ?", [fit_id])
        if rows.empty:
            raise UnknownRunError(f"no fit {fit_id!r} in {self.path}")
        table = json_value(rows["search_results"].iloc[0])
        if not isinstance(table, dict):
            return pd.DataFrame()
        columns = {str(k): v for k, v in table.items() if isinstance(v, list)}
        n = max((len(v) for v in columns.values()), default=0)
        return pd.DataFrame({k: v + [None] * (n - len(v)) for k, v in columns.items()})

    def resolve_run(self, run: str) -> dict[str, Any]:
        """The run whose id is *run*, or whose name is *run* and unique in the experiment.

        Returns ``run_id, name, session_id, started_at, ended_at, first_cell_seq, last_cell_seq``.
        """
        self._q.refresh()
        return self._run_row(run)

    def _run_row(self, run: str) -> dict[str, Any]:
        keys = ("run_id", "name", "session_id", "started_at", "ended_at", "first_cell_seq", "last_cell_seq")
        rows = self._q.rows(
            f"SELECT {', '.join(keys)} FROM _latest_runs WHERE run_id = ? OR name = ? "
            "ORDER BY run_id = ? DESC, started_at",
            [run, run, run],
        )
        if not rows:
            raise UnknownRunError(f"no run {run!r} in {self.path}")
        if rows[0][0] == run or len(rows) == 1:
            return dict(zip(keys, rows[0], strict=True))
        ids = ", ".join(f"{r[0]} (session {r[2]})" for r in rows)
        raise UnknownRunError(f"{len(rows)} runs are named {run!r}; pass one run_id: {ids}")

    def samples(self, run: str | None = None, session: str | None = None) -> pd.DataFrame:
        """The watcher's timeline: ``t, rss_bytes, children_rss_bytes, cpu_percent, gpu_bytes, gpu_util, cell_seq``.

        With *run*, the samples of that run's session between its start and its
        end; with *session*, that session's; else every sample (with
        ``session_id`` and ``run_id``).
        """
        self._q.refresh()
        timeline = "t, rss_bytes, children_rss_bytes, cpu_percent, gpu_bytes, gpu_util, cell_seq"
        if run is not None:
            info = self._run_row(run)
            started, ended = info["started_at"], info["ended_at"] or pd.Timestamp.now(tz="UTC")
            us = [pd.Timestamp(x).value // 1000 if x is not None else 0 for x in (started, ended)]
            return self._q.df(
                f"SELECT {timeline} FROM {{window}} WHERE session_id = ? AND t BETWEEN ? AND ? ORDER BY t",
                [info["session_id"], started, ended],
                window=Window(SAMPLES.name, *us),
            )
        if session is not None:
            return self._q.df(f"SELECT {timeline} FROM samples WHERE session_id = ? ORDER BY t", [session])
        return self._q.df("SELECT * EXCLUDE (recorded_at) FROM samples ORDER BY t")

    def metrics(self, run: str | None = None) -> pd.DataFrame:
        """Every logged or computed value: ``run_id, name, step, value, split``."""
        if run is None:
            return self._df("SELECT * EXCLUDE (session_id, recorded_at) FROM metrics ORDER BY recorded_at")
        run_id = self.resolve_run(run)["run_id"]
        return self._q.df(
            "SELECT * EXCLUDE (session_id, recorded_at) FROM metrics WHERE run_id = ? ORDER BY recorded_at",
            [run_id],
        )

    def confusion_matrix(self, run: str, split: str = "test", normalize: str | None = None) -> pd.DataFrame:
        """The labelled confusion matrix (rows: true label, columns: predicted).

        ``normalize="true"`` divides each row by its total (recall per class),
        ``"pred"`` each column, ``"all"`` everything.
        """
        run_id = self.resolve_run(run)["run_id"]
        rows = self._q.rows("SELECT labels, matrix FROM confusion WHERE run_id = ? AND split = ?", [run_id, split])
        if not rows:
            raise KeyError(f"run {run!r} has no confusion matrix for split {split!r}")
        labels = [str(x) for x in json.loads(rows[0][0])]
        df = pd.DataFrame(json.loads(rows[0][1]), index=labels, columns=labels)
        df.index.name, df.columns.name = "true", "predicted"
        if normalize is None:
            return df
        if normalize == "true":
            return df.div(df.sum(axis=1).replace(0, 1), axis=0)
        if normalize == "pred":
            return df.div(df.sum(axis=0).replace(0, 1), axis=1)
        if normalize == "all":
            return df / max(int(df.to_numpy().sum()), 1)
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', not {normalize!r}")

    def curves(self, run: str, split: str = "test") -> pd.DataFrame:
        """ROC and precision-recall curve points: ``kind, label, x, y, auc``."""
        run_id = self.resolve_run(run)["run_id"]
        df = self._q.df(
            "SELECT kind, label, x, y, auc FROM curves WHERE run_id = ? AND split = ? ORDER BY kind, label",
            [run_id, split],
        )
        _json_column(df, "x")
        _json_column(df, "y")
        return df

    def predictions(self, run: str, split: str = "test") -> pd.DataFrame:
        """The stored predictions of a run: ``y_true, y_pred`` and ``proba_<label>`` columns.

        Raises:
            UnsafeFileError: the stored file name leaves the ``predictions/``
                folder, or the file is a link or not a regular file.
        """
        from mlt_kernel.store import parquet as store

        run_id = self.resolve_run(run)["run_id"]
        rows = self._q.rows("SELECT file FROM predictions WHERE run_id = ? AND split = ?", [run_id, split])
        if not rows:
            raise KeyError(f"run {run!r} has no predictions for split {split!r}")
        return store.read_table(predictions_file(rows[0][0]), beneath=self.path).to_pandas()

    # -- notes, plots, documents -------------------------------------------------
    def notes(self) -> pd.DataFrame:
        """Markdown notes (verbatim: render them through ``mlt_kernel.tracking.render``).

        ``plot_path`` links a note to its plot by file name: the plot's path in the
        experiment once that plot is recorded, empty until then.
        """
        return self._df(
            "SELECT n.* EXCLUDE (recorded_at), p.path AS plot_path FROM notes n "
            "LEFT JOIN (SELECT file, path FROM plots WHERE path = 'plots/' || file "
            "  QUALIFY row_number() OVER (PARTITION BY file ORDER BY created_at DESC) = 1) p "
            "ON p.file = n.plot WHERE NOT coalesce(n.deleted, false) ORDER BY n.created_at"
        )

    def plots(self) -> pd.DataFrame:
        """Recorded figures, newest version of each file last."""
        return self._df("SELECT * EXCLUDE (recorded_at) FROM plots ORDER BY created_at")

    def documents(self) -> pd.DataFrame:
        """Documents: ``doc_id, title, created_at, blocks`` (number of blocks)."""
        return self._df(
            "SELECT d.doc_id, d.title, d.created_at, count(b.block_id) AS blocks FROM documents d "
            "LEFT JOIN blocks b ON b.doc_id = d.doc_id AND NOT coalesce(b.deleted, false) "
            "WHERE NOT coalesce(d.deleted, false) GROUP BY ALL ORDER BY d.created_at"
        )

    def close(self) -> None:
        self._q.close()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
