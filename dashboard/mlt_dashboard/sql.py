"""The dashboard's SQL: every statement, its table and column names taken from the schema.

:func:`cols` builds a select list and refuses any name that
:mod:`mlt_kernel.core.schema` does not define; values are always parameters.
"""

from __future__ import annotations

from mlt_kernel.core.schema import (
    CELLS,
    CONFUSION,
    CURVES,
    DOCUMENTS,
    FITS,
    METRICS,
    NOTES,
    PLOTS,
    RUNS,
    SAMPLES,
    SESSIONS,
    Table,
)


def names(select: str) -> list[str]:
    """The column names of a select list made by :func:`_cols`."""
    return [part.strip().strip('"') for part in select.split(",")]


def cols(table: Table, *names: str, prefix: str = "") -> str:
    """A select list of *names*, each checked against *table*'s schema."""
    unknown = [n for n in names if n not in table.names]
    if unknown:
        raise ValueError(f"{table.name}: not in the schema: {unknown}")
    return ", ".join(f'{prefix}"{n}"' for n in names)


# -- the SQL ------------------------------------------------------------------------

#: The columns of ``RUNS_SQL``, in order.
RUNS_COLUMNS = tuple(name for name in RUNS.names if name != "recorded_at")
RUNS_SQL = f"""
    SELECT {cols(RUNS, *RUNS_COLUMNS)}
    FROM {RUNS.name} ORDER BY started_at, run_id
"""

COUNTS_SQL = f"""
    SELECT (SELECT count(*) FROM {SESSIONS.name}) AS sessions,
           (SELECT count(*) FROM {SESSIONS.name} WHERE status = 'running') AS running_sessions,
           (SELECT count(*) FROM {RUNS.name}) AS runs,
           (SELECT count(DISTINCT run_id) FROM {CELLS.name}
            WHERE error_name = 'MemoryGuardInterrupt' AND run_id IS NOT NULL) AS guarded_runs
"""

# Final values (no step) and training curves (steps) of one run, in one pass;
# run_metrics keeps the latest row per (name, split, step): cheaper in Python
# for one run's rows than a window in SQL.
RUN_METRICS_SQL = f"""
    SELECT {cols(METRICS, "name", "step", "value", "split")}, epoch_us(recorded_at)
    FROM {METRICS.name} WHERE run_id = ?
"""

RUN_CELLS_COLS = cols(
    CELLS,
    "cell_seq",
    "execution_count",
    "started_at",
    "ended_at",
    "wall_s",
    "cpu_s",
    "peak_rss_bytes",
    "status",
    "error_name",
    "memory_limit_bytes",
    "guard_rss_bytes",
    "guard_at",
)
RUN_CELLS_SQL = f"""
    SELECT {RUN_CELLS_COLS}
    FROM {CELLS.name} WHERE session_id = ? AND {{which}}
    ORDER BY cell_seq
"""

# The samples of one session between two instants; run_timeline buckets them.
# Times come back as microseconds: turning thousands of timestamps into Python
# datetimes would cost more than the whole query.
# {window}: the samples files whose times overlap the run's (see Query's Window).
TIMELINE_SQL = f"""
    SELECT epoch_us(t) AS us, {cols(SAMPLES, "rss_bytes", "children_rss_bytes", "gpu_bytes", "cpu_percent")}
    FROM {{window}} WHERE session_id = ? AND t BETWEEN ? AND ?
"""

# A run's fits and those of the runs started inside it, in the order they started.
RUN_FITS_COLS = cols(
    FITS,
    "fit_id",
    "run_id",
    "estimator",
    "method",
    "params",
    "n_samples",
    "n_features",
    "data_fingerprint",
    "wall_s",
    "cpu_s",
    "peak_rss_bytes",
    "rss_start_bytes",
    "model_bytes",
    "top_features",
    "status",
    "error_name",
    "best_params",
    "best_score",
    "n_candidates",
    "search_results",
)
RUN_FITS_SQL = f"""
    SELECT {RUN_FITS_COLS} FROM {FITS.name}
    WHERE run_id = ? OR run_id IN (SELECT run_id FROM {RUNS.name} WHERE parent_run_id = ?)
    ORDER BY started_at
"""

CONFUSION_SQL = f"""
    SELECT {cols(CONFUSION, "split", "labels", "matrix")} FROM {CONFUSION.name}
    WHERE run_id = ? ORDER BY split = 'test' DESC, split
"""

CURVES_COLS = cols(CURVES, "split", "kind", "label", "x", "y", "auc")
CURVES_SQL = f"""
    SELECT {CURVES_COLS} FROM {CURVES.name}
    WHERE run_id = ? ORDER BY split, kind, label
"""

PLOTS_COLS = cols(PLOTS, "plot_id", "file", "path", "size_bytes", "run_id", "cell_seq", "session_id", "created_at")
PLOTS_SQL = f"""
    SELECT {PLOTS_COLS}
    FROM {PLOTS.name} {{where}}
    QUALIFY row_number() OVER (PARTITION BY coalesce(path, file) ORDER BY created_at DESC) = 1
    ORDER BY created_at
"""

NOTES_COLS = cols(NOTES, "note_id", "run_id", "plot", "doc", "markdown", "execution_count", "created_at")
NOTES_SQL = f"""
    SELECT {NOTES_COLS}
    FROM {NOTES.name} WHERE NOT coalesce(deleted, false) {{where}} ORDER BY created_at
"""


RUN_PLOTS_SQL = PLOTS_SQL.format(where="WHERE run_id = ?")
# A run's notes, and the notes tied to one of its plots.
RUN_NOTES_SQL = NOTES_SQL.format(where=f"AND (run_id = ? OR plot IN (SELECT file FROM {PLOTS.name} WHERE run_id = ?))")

SESSION_COLS = cols(
    SESSIONS,
    "session_id",
    "started_at",
    "ended_at",
    "status",
    "hostname",
    "user",
    "notebook",
    "death_cause",
    "memory_limit_bytes",
    "oom_kill",
    "last_rss_bytes",
    "memory_guard",
    "growth_bytes_per_s",
)
SESSIONS_SQL = f"SELECT {SESSION_COLS} FROM {SESSIONS.name} ORDER BY started_at DESC"
SESSION_SQL = f"SELECT {SESSION_COLS} FROM {SESSIONS.name} WHERE session_id = ?"

LEDGER_SQL = f"""
    SELECT {
    cols(
        CELLS,
        "session_id",
        "cell_seq",
        "execution_count",
        "run_id",
        "run_name",
        "code",
        "started_at",
        "ended_at",
        "wall_s",
        "cpu_s",
        "rss_before_bytes",
        "rss_after_bytes",
        "peak_rss_bytes",
        "children_peak_rss_bytes",
        "peak_gpu_bytes",
        "status",
        "error_name",
    )
},
           rss_after_bytes - rss_before_bytes AS delta_rss_bytes
    FROM {CELLS.name} {{where}} ORDER BY started_at, session_id, cell_seq
"""

DOCUMENT_TITLES_SQL = f"""
    SELECT {cols(DOCUMENTS, "doc_id", "title", "created_at")} FROM {DOCUMENTS.name}
    WHERE NOT coalesce(deleted, false) ORDER BY created_at
"""
