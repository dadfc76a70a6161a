"""``log_predictions``: store a run's predictions, its metrics, confusion matrix and curves.

Everything is validated and computed (``metrics.evaluate``, scikit-learn)
before anything is stored, so bad input stores nothing. The predictions
themselves go to a Parquet file of their own under ``predictions/`` — a million
rows with ten class probabilities are tens of MB, far too much for a journal
line — and a small row in the ``predictions`` table points at it.
Probabilities are stored as float32 (ample for probabilities, half the bytes).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from mlt_kernel.core import layout
from mlt_kernel.core.schema import CONFUSION, CURVES, METRICS, PREDICTIONS
from mlt_kernel.tracking.metrics import Evaluation, evaluate
from mlt_kernel.tracking.session import Session


def _column(values: np.ndarray) -> Any:
    if values.dtype == object:
        return [None if v is None else str(v) if not isinstance(v, (int, float, bool)) else v for v in values]
    return values


def prediction_columns(ev: Evaluation) -> dict[str, Any]:
    """Columns of the predictions file: ``y_true``, ``y_pred``, ``proba_<label>``…"""
    columns: dict[str, Any] = {"y_true": _column(ev.y_true), "y_pred": _column(ev.y_pred)}
    if ev.y_proba is not None:
        proba = np.asarray(ev.y_proba, dtype=np.float32)
        for i, label in enumerate(ev.labels):
            columns[f"proba_{label}"] = proba[:, i]
    return columns


def record_predictions(
    rec: Session,
    y_true: Any,
    y_pred: Any = None,
    *,
    y_proba: Any = None,
    labels: Any = None,
    run: str,
    split: str = "test",
    task: str | None = None,
) -> dict[str, float]:
    """Validate, compute and store; returns the metrics."""
    from mlt_kernel.store import parquet as store

    ev = evaluate(y_true, y_pred, y_proba=y_proba, labels=labels, task=task)
    exp = rec.folder()
    relative = f"{layout.PREDICTIONS}/{run}-{split}-{secrets.token_hex(4)}.parquet"
    store.write_arrays(exp / relative, prediction_columns(ev))
    session = rec.session_id
    labels_json = [str(label) for label in ev.labels]
    rec.write(
        PREDICTIONS.name,
        {
            "run_id": run,
            "session_id": session,
            "split": split,
            "task": ev.task,
            "labels": labels_json,
            "n": len(ev.y_true),
            "file": relative,
        },
    )
    for name, value in ev.metrics.items():
        rec.write(
            METRICS.name,
            {"run_id": run, "session_id": session, "name": name, "step": None, "value": value, "split": split},
        )
    if ev.confusion is not None:
        rec.write(CONFUSION.name, {"run_id": run, "split": split, "labels": labels_json, "matrix": ev.confusion})
    for curve in ev.curves:
        rec.write(
            CURVES.name,
            {
                "run_id": run,
                "split": split,
                "kind": curve.kind,
                "label": curve.label,
                "x": curve.x,
                "y": curve.y,
                "auc": curve.auc,
            },
        )
    return dict(ev.metrics)
