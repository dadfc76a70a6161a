"""The tables of an experiment folder, defined once.

Every writer (kernel journal, watcher, compaction, documents) and every reader
(``Experiment``, the dashboard, the docs) takes table and column names from
here. Columns are described with a tiny type vocabulary so that this module
imports nothing heavy; :func:`arrow_schema` turns a table into a pyarrow
schema when pyarrow is wanted (compaction and reading, never the cell path).

Records are append-only. A table with a ``key`` keeps every version of a row;
readers take the latest one by ``recorded_at`` ("a file, once written, is never
rewritten").
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

#: Bumped whenever a column changes meaning or type. Files carry it in their
#: name (``….v1.jsonl``, ``….v1.parquet``); a reader skips files of a newer
#: version with one warning instead of misreading them.
SCHEMA_VERSION = 1


def code_sha1(code: str) -> str:
    """The ``code_sha1`` of a cell's source."""
    return hashlib.sha1(code.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()


# The type vocabulary: name -> pyarrow factory.
_TYPES: dict[str, str] = {
    "string": "string",
    "int64": "int64",
    "float64": "float64",
    "bool": "bool_",
    "timestamp": "timestamp",
    "json": "string",  # a JSON document kept as text
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"unknown column type {self.type!r} for {self.name!r}")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    #: Column that orders rows in compacted files (so DuckDB can skip row groups).
    sort_by: str = "recorded_at"
    doc: str = ""
    names: tuple[str, ...] = field(init=False)
    name_set: frozenset[str] = field(init=False)
    json_columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "name_set", frozenset(self.names))
        object.__setattr__(self, "json_columns", tuple(c.name for c in self.columns if c.type == "json"))


def _c(name: str, type_: str, doc: str = "") -> Column:
    return Column(name, type_, doc)


_RECORDED = _c("recorded_at", "timestamp", "when this version of the row was written (UTC)")

SESSIONS = Table(
    "sessions",
    (
        _c("session_id", "string", "time-ordered id of one kernel session"),
        _c("started_at", "timestamp", "kernel start (UTC)"),
        _c("ended_at", "timestamp", "clean shutdown or death (UTC); empty while running"),
        _c("status", "string", "`running`, `ended` or `killed`"),
        _c("kernel_pid", "int64"),
        _c("hostname", "string"),
        _c("user", "string"),
        _c("python", "string", "Python version of the kernel"),
        _c("mlt_version", "string"),
        _c("exp_path", "string", "experiment folder as the kernel saw it"),
        _c("notebook", "string", "notebook path when the frontend tells it"),
        _c("peak_exact", "bool", "whether per-cell peaks are exact (Linux VmHWM) or sampled"),
        _c("death_cause", "string", "for a killed session: `oom`, `signal SIGKILL`, `unknown`"),
        _c("memory_limit_bytes", "int64", "cgroup memory limit seen by the watcher, if any"),
        _c("oom_kill", "bool", "whether the cgroup OOM killer fired while this session ran"),
        _c("last_rss_bytes", "int64", "last RSS reading (kernel + children) before death"),
        _c("memory_guard", "float64", "the share of the memory limit at which the guard stops a cell (0: off)"),
        _c("growth_bytes_per_s", "float64", "how fast the kernel's memory grew just before it died"),
        _c("platform", "string", "operating system and architecture (`platform.platform()`)"),
        _c("cpu_model", "string"),
        _c("cpu_cores", "int64", "logical CPUs of the machine"),
        _c("ram_bytes", "int64", "total memory of the machine"),
        _c("gpus", "json", "one object per GPU: `name`, `memory_bytes`, `driver`, `cuda` (NVML)"),
        _c("git_commit", "string", "HEAD of the git repository holding the notebook's folder"),
        _c("git_branch", "string", "empty on a detached HEAD"),
        _c("git_dirty", "bool", "whether tracked files differ from `git_commit`"),
        _c("git_remote", "string", "URL of the `origin` remote (else the first), credentials removed"),
        _RECORDED,
    ),
    key=("session_id",),
    doc="One row per kernel session.",
)

CELLS = Table(
    "cells",
    (
        _c("session_id", "string"),
        _c("cell_seq", "int64", "1, 2, … per session: the order in which recorded cells ran"),
        _c("execution_count", "int64", "the `[n]` the frontend shows"),
        _c("cell_id", "string", "the frontend's cell id, when it sends one"),
        _c("code_sha1", "string", "hash of the cell's source"),
        _c("code", "string", "first lines of the source (at most 2,000 characters)"),
        _c("run_id", "string", "the run the cell belongs to, if any"),
        _c("run_name", "string"),
        _c("started_at", "timestamp"),
        _c("ended_at", "timestamp"),
        _c("wall_s", "float64"),
        _c("cpu_s", "float64", "user + system CPU time of the kernel process"),
        _c("rss_before_bytes", "int64"),
        _c("rss_after_bytes", "int64"),
        _c("peak_rss_bytes", "int64", "highest RSS of the kernel during the cell"),
        _c("peak_exact", "bool", "true when `peak_rss_bytes` is exact (VmHWM), false when sampled"),
        _c("children_peak_rss_bytes", "int64", "highest RSS of child processes (watcher)"),
        _c("peak_gpu_bytes", "int64", "highest GPU memory of the kernel and its children"),
        _c("gpu_allocator_peak_bytes", "int64", "torch's exact allocator peak, when torch uses CUDA"),
        _c("status", "string", "`running`, `ok`, `error`, `interrupted` or `killed`"),
        _c("error_name", "string"),
        _c("memory_limit_bytes", "int64", "the memory limit the guard watched during the cell (watcher)"),
        _c("guard_rss_bytes", "int64", "the reading (kernel + children) at which the memory guard stopped the cell"),
        _c("guard_at", "timestamp", "when the memory guard stopped the cell"),
        _RECORDED,
    ),
    key=("session_id", "cell_seq"),
    sort_by="started_at",
    doc="One row per executed cell.",
)

SOURCES = Table(
    "sources",
    (
        _c("code_sha1", "string", "hash of the cell's source"),
        _c("code", "string", "the whole source (cells keep its first 2,000 characters)"),
        _RECORDED,
    ),
    key=("code_sha1",),
    doc="The whole source of each distinct cell longer than a cell record keeps; joined into `cells` by readers.",
)

CELL_USAGE = Table(
    "cell_usage",
    (
        _c("session_id", "string"),
        _c("cell_seq", "int64"),
        _c("children_peak_rss_bytes", "int64", "highest RSS of the kernel's child processes"),
        _c("peak_gpu_bytes", "int64", "highest GPU memory of the kernel and its children (NVML)"),
        _c("samples", "int64", "how many timeline samples the cell spans"),
        _c("memory_limit_bytes", "int64", "the memory limit the guard watched during the cell"),
        _c("guard_rss_bytes", "int64", "the reading (kernel + children) at which the memory guard stopped the cell"),
        _c("guard_at", "timestamp", "when the memory guard stopped the cell"),
        _RECORDED,
    ),
    key=("session_id", "cell_seq"),
    doc="What the watcher saw during each cell; joined into `cells` by readers.",
)

RUNS = Table(
    "runs",
    (
        _c("run_id", "string"),
        _c("name", "string"),
        _c("session_id", "string"),
        _c("status", "string", "`running`, `finished`, `error`, `interrupted` or `killed`"),
        _c("started_at", "timestamp"),
        _c("ended_at", "timestamp"),
        _c("wall_s", "float64"),
        _c("cpu_s", "float64"),
        _c("peak_rss_bytes", "int64"),
        _c("peak_gpu_bytes", "int64"),
        _c("params", "json", "the run's parameters as a JSON object"),
        _c("first_cell_seq", "int64"),
        _c("last_cell_seq", "int64"),
        _c("rss_start_bytes", "int64", "RSS when a run of code started (its peak is exact above it)"),
        _c("parent_run_id", "string", "the run this one was started in (`mlt.run` inside a run), if any"),
        _c("packages", "json", "installed versions of the distributions behind the modules imported when it ended"),
        _c("env", "json", "the environment variables of an allow-list (threads, CUDA, seeds) that were set"),
        _RECORDED,
    ),
    key=("run_id",),
    sort_by="started_at",
    doc="One row per run.",
)

FITS = Table(
    "fits",
    (
        _c("fit_id", "string"),
        _c("session_id", "string"),
        _c("cell_seq", "int64", "the cell the fit ran in"),
        _c("run_id", "string", "the innermost run open during the fit, if any"),
        _c("estimator", "string", "qualified class name (`sklearn.pipeline.Pipeline`)"),
        _c("method", "string", "`fit`, `fit_transform` or `fit_predict`"),
        _c("params", "json", "params that differ from the defaults, `get_params(deep=True)` keys"),
        _c("n_samples", "int64"),
        _c("n_features", "int64"),
        _c("feature_names", "json", "the first 100"),
        _c("data_fingerprint", "string", "hash of X's and y's type, shape, dtypes, columns and a fixed sample of rows"),
        _c("started_at", "timestamp"),
        _c("wall_s", "float64"),
        _c("cpu_s", "float64"),
        _c("peak_rss_bytes", "int64", "exact peak of the fit alone (Linux), else empty"),
        _c("rss_start_bytes", "int64", "RSS when the fit started"),
        _c("model_bytes", "int64", "bytes of the fitted arrays"),
        _c("top_features", "json", "`[feature, value]` pairs: importances or coefficients, largest first (50)"),
        _c("status", "string", "`ok` or `error`"),
        _c("error_name", "string"),
        _c("best_params", "json", "searches: the best candidate's params"),
        _c("best_score", "float64", "searches: its mean cross-validated score"),
        _c("n_candidates", "int64", "searches: how many candidates were tried"),
        _c("search_results", "json", "searches: `cv_results_` as lists (5,000 candidates at most)"),
        _RECORDED,
    ),
    key=("fit_id",),
    sort_by="started_at",
    doc="One row per outermost scikit-learn fit (autolog).",
)

SAMPLES = Table(
    "samples",
    (
        _c("session_id", "string"),
        _c("t", "timestamp", "sample time (UTC)"),
        _c("rss_bytes", "int64", "kernel + children"),
        _c("children_rss_bytes", "int64"),
        _c("cpu_percent", "float64", "kernel + children, 100 = one core"),
        _c("gpu_bytes", "int64"),
        _c("gpu_util", "float64", "device utilisation, percent"),
        _c("cell_seq", "int64", "the cell running at that moment, if any"),
        _c("run_id", "string"),
        _RECORDED,
    ),
    sort_by="t",
    doc="The watcher's timeline.",
)

METRICS = Table(
    "metrics",
    (
        _c("run_id", "string"),
        _c("session_id", "string"),
        _c("name", "string"),
        _c("step", "int64", "empty for a final value"),
        _c("value", "float64"),
        _c("split", "string", "for metrics computed from predictions: `test`, `val`, `train`…"),
        _RECORDED,
    ),
    # Merged files sorted by run: a run page's metrics come from one row group.
    sort_by="run_id",
    doc="Logged and computed metric values.",
)

PREDICTIONS = Table(
    "predictions",
    (
        _c("run_id", "string"),
        _c("session_id", "string"),
        _c("split", "string"),
        _c("task", "string", "`binary`, `multiclass` or `regression`"),
        _c("labels", "json", "class labels in order"),
        _c("n", "int64", "number of predictions"),
        _c("file", "string", "Parquet file of the predictions, relative to the experiment"),
        _RECORDED,
    ),
    key=("run_id", "split"),
    doc="One row per logged set of predictions; the values live in their own file.",
)

CONFUSION = Table(
    "confusion",
    (
        _c("run_id", "string"),
        _c("split", "string"),
        _c("labels", "json"),
        _c("matrix", "json", "counts, rows = true label, columns = predicted"),
        _RECORDED,
    ),
    key=("run_id", "split"),
    doc="Confusion matrix per run and split.",
)

CURVES = Table(
    "curves",
    (
        _c("run_id", "string"),
        _c("split", "string"),
        _c("kind", "string", "`roc` or `pr`"),
        _c("label", "string", "the positive class (one-vs-rest for multiclass)"),
        _c("x", "json", "false positive rate (roc) or recall (pr)"),
        _c("y", "json", "true positive rate (roc) or precision (pr)"),
        _c("auc", "float64", "area: ROC AUC or average precision"),
        _RECORDED,
    ),
    key=("run_id", "split", "kind", "label"),
    doc="ROC and precision-recall curve points.",
)

NOTES = Table(
    "notes",
    (
        _c("note_id", "string"),
        _c("session_id", "string"),
        _c("execution_count", "int64"),
        _c("cell_id", "string"),
        _c("run_id", "string"),
        _c("plot", "string", "file name of the plot the note explains"),
        _c("doc", "string", "title of the document the note belongs to"),
        _c("markdown", "string", "the note, verbatim (untrusted: render it sanitised)"),
        _c("created_at", "timestamp"),
        _c("deleted", "bool"),
        _RECORDED,
    ),
    key=("note_id",),
    doc="Markdown notes.",
)

PLOTS = Table(
    "plots",
    (
        _c("plot_id", "string"),
        _c("file", "string", "file name under `plots/`, or absolute path elsewhere"),
        _c("path", "string", "path relative to the experiment when inside it"),
        _c("size_bytes", "int64"),
        _c("sha256", "string"),
        _c("session_id", "string"),
        _c("cell_seq", "int64"),
        _c("run_id", "string"),
        _c("source", "string", "`savefig` or `inline`"),
        _c("created_at", "timestamp"),
        _RECORDED,
    ),
    key=("plot_id",),
    doc="Saved and inline figures.",
)

DOCUMENTS = Table(
    "documents",
    (
        _c("doc_id", "string"),
        _c("title", "string"),
        _c("deleted", "bool"),
        _c("created_at", "timestamp"),
        _RECORDED,
    ),
    key=("doc_id",),
    doc="Document titles.",
)

BLOCKS = Table(
    "blocks",
    (
        _c("block_id", "string"),
        _c("doc_id", "string"),
        _c("position", "float64", "blocks sort by position; moving a block writes a new one"),
        _c("kind", "string", "`markdown`, `note` or `plot`"),
        _c("content", "string", "Markdown text, a note id or a plot file name"),
        _c("deleted", "bool"),
        _RECORDED,
    ),
    key=("block_id",),
    doc="Blocks of documents, one row per block so that concurrent edits never lose one.",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        SESSIONS,
        CELLS,
        SOURCES,
        CELL_USAGE,
        RUNS,
        FITS,
        SAMPLES,
        METRICS,
        PREDICTIONS,
        CONFUSION,
        CURVES,
        NOTES,
        PLOTS,
        DOCUMENTS,
        BLOCKS,
    )
}


def table(name: str) -> Table:
    """The table called *name*; ``KeyError`` names the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}") from None


@functools.cache
def arrow_schema(tbl: Table) -> Any:
    """The pyarrow schema of *tbl* (imports pyarrow: not for the cell path); made once per table."""
    import pyarrow as pa

    fields = []
    for col in tbl.columns:
        factory = _TYPES[col.type]
        typ = pa.timestamp("us", tz="UTC") if factory == "timestamp" else getattr(pa, factory)()
        fields.append(pa.field(col.name, typ, metadata={"doc": col.doc} if col.doc else None))
    return pa.schema(fields, metadata={"mlt.table": tbl.name, "mlt.schema_version": str(SCHEMA_VERSION)})
