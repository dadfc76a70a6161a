"""Each run's final ``test`` metrics: the metric columns of ``runs()``, read without pandas
(the dashboard's first page shows them before pandas is imported)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mlt_kernel.read.query import Query

#: Final metrics shown as columns of ``runs()``, in this order when present.
METRIC_ORDER = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "average_precision",
    "log_loss",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "mae",
    "rmse",
    "r2",
)

#: Each run's last value of each final (step-less) ``test`` metric.
FINAL_METRICS_SQL = """
    SELECT run_id, name, value FROM metrics
    WHERE step IS NULL AND coalesce(split, 'test') = 'test'
    QUALIFY row_number() OVER (PARTITION BY run_id, name ORDER BY recorded_at DESC) = 1
"""


def final_metrics(query: Query, taken: Collection[str] = ()) -> dict[str, dict[Any, Any]]:
    """Metric name → {run id: its last value}, ``METRIC_ORDER`` first, then by name.

    A metric named like one of *taken* (the runs' own columns: ``name``,
    ``status``…) is left out: it would replace that column.
    """
    wide: dict[str, dict[Any, Any]] = {}
    for run_id, name, value in query.rows(FINAL_METRICS_SQL, keep=True):
        if isinstance(name, str) and name not in taken:
            wide.setdefault(name, {})[run_id] = value
    ordered = [m for m in METRIC_ORDER if m in wide] + sorted(set(wide) - set(METRIC_ORDER))
    return {name: wide[name] for name in ordered}
