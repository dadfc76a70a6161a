"""Parameter importance: which params explain a metric across the runs (as Weights & Biases shows it).

:func:`param_importance` fits a random forest on the runs' params to predict the
metric and reports, per param, the forest's importance and the param's Pearson
correlation with the metric; :func:`importance_chart` draws the table. Param
names come from a shared folder and are data: the chart shows them cut with
``short`` and gives them to its tooltip only as a ``@{column}`` field.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import BooleanFilter, CDSView, ColumnDataSource, FactorRange, Range1d
from bokeh.models.annotations import LabelSet, Span
from bokeh.transform import dodge

from mlt_dashboard.charts import _figure, _hover, _unique, style_bars
from mlt_dashboard.markup import short
from mlt_dashboard.ranking import is_missing
from mlt_kernel.core.units import format_metric

#: Runs (with params and a value of the metric) the forest needs before its answer means anything.
MIN_RUNS = 5
#: Trees in the forest: enough for stable importances, few enough for 200 runs in a fraction of a second.
N_ESTIMATORS = 100
#: The chart shows this many params, the most important first.
CHART_PARAMS = 20

_COLUMNS = ["param", "importance", "correlation"]
_IMPORTANCE_COLOUR = "#4e79a7"
_POSITIVE_COLOUR = "#59a14f"
_NEGATIVE_COLOUR = "#e15759"


def usable_runs(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of *runs* that have params and a finite value of *metric* (the forest's training set)."""
    if metric not in runs or "params" not in runs or runs.empty:
        return runs.iloc[0:0]
    values = pd.to_numeric(runs[metric], errors="coerce").astype(float)
    has_params = runs["params"].map(lambda p: isinstance(p, Mapping) and len(p) > 0)
    return runs[has_params & np.isfinite(values)]


def param_importance(runs: pd.DataFrame, metric: str, min_runs: int = MIN_RUNS) -> pd.DataFrame | None:
    """Per param, how much it explains *metric* across *runs*: columns ``param, importance, correlation``.

    *runs* is what ``Source.runs()`` returns (a ``params`` column of dicts, one
    column per final metric). Rows without params or without a value of the
    metric are dropped; None when fewer than *min_runs* rows remain, when no
    param varies across them, or when the metric itself does not vary.

    - **importance** is the ``feature_importances_`` of a scikit-learn
      ``RandomForestRegressor`` (fixed ``random_state``, so the same runs give
      the same answer) fitted on the params to predict the metric; the
      importances of all params sum to 1.
    - **correlation** is Pearson's r between the param and the metric, over the
      runs that have the param.

    A param whose values are all numbers (``bool`` counts as 0/1) is used as a
    number. Any other param is a category: it is one-hot encoded for the
    forest and the importances of its columns are summed back onto it; its
    correlation is NaN, because an unordered category has no sign. A param
    whose present values never differ is left out, and so is one only a single
    run has. A run without a numeric param gets the param's median (the forest
    needs a value); a run without a categorical param gets no category.

    Sorted by importance, highest first (ties by name).
    """
    usable = usable_runs(runs, metric)
    if len(usable) < min_runs:
        return None
    target = pd.to_numeric(usable[metric], errors="coerce").to_numpy(dtype=float)
    if np.ptp(target) == 0:
        return None
    params = pd.DataFrame([dict(p) for p in usable["params"]])
    features: list[np.ndarray] = []
    owners: list[str] = []  # the param each feature column belongs to
    correlations: dict[str, float] = {}
    for name in params.columns:
        values = list(params[name])
        encoded = _encode(values)
        if encoded is None:
            continue
        columns, correlation_input = encoded
        features.append(columns)
        owners += [str(name)] * columns.shape[1]
        correlations[str(name)] = _pearson(correlation_input, target)
    if not features:
        return None
    from sklearn.ensemble import RandomForestRegressor  # lazily: the dashboard starts without it

    forest = RandomForestRegressor(n_estimators=N_ESTIMATORS, random_state=0)
    forest.fit(np.hstack(features), target)
    importance = pd.Series(forest.feature_importances_, index=owners).groupby(level=0, sort=False).sum()
    table = pd.DataFrame(
        {
            "param": list(correlations),
            "importance": [float(importance[name]) for name in correlations],
            "correlation": list(correlations.values()),
        },
        columns=_COLUMNS,
    )
    return table.sort_values(["importance", "param"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _encode(values: list[Any]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Forest columns for one param and the numbers to correlate (None for a category); None if it never varies."""
    present = [v for v in values if not is_missing(v)]
    if len(present) < 2:
        return None
    if all(_is_number(v) for v in present):
        as_float = np.array([_float(v) for v in values])
        as_float[~np.isfinite(as_float)] = math.nan  # an infinite param says nothing a forest can split on
        known = as_float[~np.isnan(as_float)]
        if len(known) < 2 or np.ptp(known) == 0:
            return None
        # Ranks, not the values: a forest's splits only see the order, and ranks survive
        # scikit-learn's float32 cast where 1e300 or 1e-50 would not.
        ranks = pd.Series(as_float).rank(method="dense")
        return ranks.fillna(ranks.median()).to_numpy(dtype=float).reshape(-1, 1), as_float
    labels = [None if is_missing(v) else (v if isinstance(v, str) else repr(v)) for v in values]
    categories = sorted({label for label in labels if label is not None})
    if len(categories) < 2:
        return None
    one_hot = np.array([[1.0 if label == c else 0.0 for c in categories] for label in labels])
    return one_hot, None


def _pearson(values: np.ndarray | None, target: np.ndarray) -> float:
    """Pearson's r over the rows where *values* is known; NaN for a category or when undefined."""
    if values is None:
        return math.nan
    known = ~np.isnan(values)
    x, y = values[known], target[known]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with np.errstate(all="ignore"):  # params of 1e300 overflow; the answer is then NaN, not a warning
        r = float(np.corrcoef(x, y)[0, 1])
    return r if math.isfinite(r) else math.nan


def _float(value: Any) -> float:
    """*value* as a float; NaN when missing, infinite when too large for one (an int of 400 digits)."""
    if is_missing(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_, numbers.Real))


def importance_chart(table: pd.DataFrame, metric: str, limit: int = CHART_PARAMS) -> Any:
    """Bars of importance per param, and below each its correlation (green positive, red negative).

    *table* is what :func:`param_importance` returned; the *limit* most
    important params are drawn, the most important on top.
    """
    shown = table.head(limit)
    labels = _unique([short(name, 40) for name in shown["param"]])
    correlation = shown["correlation"].to_numpy(dtype=float)
    r = np.nan_to_num(correlation, nan=0.0)
    data = pd.DataFrame(
        {
            "label": labels,
            "param_name": [short(name) for name in shown["param"]],
            "importance": shown["importance"].to_numpy(dtype=float),
            "importance_text": [f"{v:.2f}" for v in shown["importance"]],
            "correlation": r,
            "correlation_at": np.maximum(r, 0.0),  # a negative bar's label sits right of zero, clear of the bar
            "correlation_text": [_r_text(v) for v in correlation],
        }
    )
    name = short(metric, 40)
    more = f" (the {limit} most important of {len(table)} params)" if len(table) > limit else ""
    p = _figure(
        height=max(200, 44 * len(labels) + 90),
        y_range=FactorRange(factors=list(reversed(labels))),
        title=f"Parameter importance for {name}{more}",
        x_axis_label=f"importance · Pearson correlation with {name}",
        name="param-importance",
    )
    low = float(r.min()) if len(r) else 0.0
    p.x_range = Range1d(start=low - 0.05 if low < 0 else 0.0, end=1.3)
    p.add_layout(Span(location=0, dimension="height", line_color="#999999", line_width=1))
    src = ColumnDataSource(data.to_dict("list"))
    upper, lower = dodge("label", 0.19, range=p.y_range), dodge("label", -0.19, range=p.y_range)
    bars = [
        p.hbar(
            y=upper,
            right="importance",
            height=0.36,
            source=src,
            fill_color=_IMPORTANCE_COLOUR,
            line_color=None,
            legend_label="importance",
        )
    ]
    for legend, colour, rows in (
        ("positive correlation", _POSITIVE_COLOUR, r > 0),
        ("negative correlation", _NEGATIVE_COLOUR, r < 0),
    ):
        if rows.any():
            bars.append(
                p.hbar(
                    y=lower,
                    left=0,
                    right="correlation",
                    height=0.36,
                    source=src,
                    view=CDSView(filter=BooleanFilter(booleans=[bool(b) for b in rows])),
                    fill_color=colour,
                    fill_alpha=0.8,
                    line_color=None,
                    legend_label=legend,
                )
            )
    for x, y, text in (("importance", upper, "importance_text"), ("correlation_at", lower, "correlation_text")):
        p.add_layout(
            LabelSet(
                x=x,
                y=y,
                text=text,
                source=src,
                x_offset=4,
                y_offset=-6,
                text_font_size="10px",
                text_color="#555555",
            )
        )
    p.add_tools(
        _hover(bars, [("param", "param_name"), ("importance", "importance_text"), ("correlation", "correlation_text")])
    )
    style_bars(p)
    return p


def _r_text(r: float) -> str:
    """``r +0.982``; ``r —`` for a category or an undefined correlation."""
    return "r —" if math.isnan(r) else f"r {'+' if r >= 0 else '−'}{format_metric(abs(r))}"
