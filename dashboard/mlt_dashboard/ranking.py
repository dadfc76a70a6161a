"""Ranking runs by a metric: the best run, the metric columns, the Pareto front."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mlt_kernel.core.schema import RUNS

#: Metrics where a smaller value is better (the "best run" card and the Pareto front use it).
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "loss", "val_loss"})


def is_missing(value: Any) -> bool:
    """None, NaN, ``pd.NaT`` or ``pd.NA``: a cell with no value."""
    return value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def best_run(runs: pd.DataFrame, metric: str) -> pd.Series | None:
    """The row of the best run by *metric* (highest, or lowest for losses)."""
    if metric not in runs or runs[metric].isna().all():
        return None
    values = runs[metric]
    idx = values.idxmin() if metric in LOWER_IS_BETTER else values.idxmax()
    return runs.loc[idx]


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The final-metric columns of a ``runs()`` frame, in display order."""
    fixed = set(RUNS.names)
    return [c for c in runs.columns if c not in fixed]


def pareto_front(cost: list[float], value: list[float], lower_is_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and value.

    Returned in order of increasing cost: the front as a person reads it,
    "each step right buys a better model".
    """
    points = [
        (c, v, i) for i, (c, v) in enumerate(zip(cost, value, strict=True)) if not (is_missing(c) or is_missing(v))
    ]
    sign = -1.0 if lower_is_better else 1.0
    points.sort(key=lambda p: (p[0], -sign * p[1]))
    front: list[int] = []
    best = -math.inf
    for _c, v, i in points:
        if sign * v > best:
            front.append(i)
            best = sign * v
    return front
