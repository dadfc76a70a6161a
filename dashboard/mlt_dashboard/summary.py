"""Summary: which model is best, and what did it cost?"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter, StringFormatter

from mlt_dashboard import charts, importance, style
from mlt_dashboard.comparison import MAX_RUNS
from mlt_dashboard.fragments import default_metric, summary_cards
from mlt_dashboard.markup import el, header, short, trusted
from mlt_dashboard.page import Page, bokeh, html, set_options
from mlt_dashboard.ranking import LOWER_IS_BETTER, metric_columns
from mlt_kernel.read.finals import METRIC_ORDER

#: Charts that draw one row per run show this many when nothing is selected.
TOP_RUNS = 12
#: Parallel coordinates draw at most this many runs (the best ones).
PARALLEL_RUNS = 200

_TITLES = {
    "name": "run",
    "status": "status",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "average_precision": "avg precision",
    "log_loss": "log loss",
    "wall_s": "wall",
    "cpu_s": "CPU",
    "peak_rss_bytes": "peak RAM",
    "peak_gpu_bytes": "peak GPU",
    "model": "model",
    "children": "child runs",
    "params_text": "params",
    "session": "session",
    "started": "started",
}
_HIDDEN = ["run_id", "href", "status_colour", "model_colour"]
#: How the table shows its columns. No HTML templates: Bokeh compiles those with
#: ``new Function``, which the dashboard's Content-Security-Policy forbids. The
#: cells are text (Tabulator's link formatter escapes its label) and numbers are
#: formatted by the browser, bytes in binary units (``1.2 GiB``).
_FORMATTERS: dict[str, Any] = {
    "name": {"type": "link", "urlField": "href", "target": "_self"},
    "status": StringFormatter(text_color="#ffffff", background_color="status_colour", font_style="bold"),
    "model": StringFormatter(text_color="model_colour", font_style="bold"),
    "children": NumberFormatter(format="0", nan_format="", null_format="", text_align="right"),
    "wall_s": NumberFormatter(format="0.0{ s}", nan_format="—", null_format="—", text_align="right"),
    "cpu_s": NumberFormatter(format="0.0{ s}", nan_format="—", null_format="—", text_align="right"),
    "peak_rss_bytes": NumberFormatter(format="0.0 b", nan_format="—", null_format="—", text_align="right"),
    "peak_gpu_bytes": NumberFormatter(format="0.0 b", nan_format="—", null_format="—", text_align="right"),
}


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: The table's own columns (a metric field must not take one's place).
_FIXED_COLUMNS = frozenset({*_TITLES, *_HIDDEN}) - set(METRIC_ORDER)


def metric_field(name: str, index: int) -> str:
    """The table's field for the *index*-th metric, *name*: the name itself only when it is a plain identifier.

    Tabulator reads a field with a dot as a path into nested data, and a field
    is written into the page's markup; any other name from the folder becomes
    ``metric-N``, which no identifier can be (its title still shows the name).
    """
    return name if _FIELD.fullmatch(name) and name not in _FIXED_COLUMNS else f"metric-{index}"


def model_of(params: Any) -> str:
    """The estimator autolog put into a run's params (``model``), or ""."""
    model = params.get("model") if isinstance(params, dict) else None
    return short(model, 60) if isinstance(model, str) else ""


def table_frame(runs: pd.DataFrame, links: Any, *, children: bool = True) -> pd.DataFrame:
    """The runs table as the browser gets it: numbers to sort by, text to read.

    Metric columns are named :func:`metric_field` (Tabulator reads a field name
    with a dot as a path into nested data); their titles carry the metric names.
    Runs started inside another run are marked ``↳``; without *children* they are
    folded into their parent's ``child runs`` count.
    """
    parents = runs["parent_run_id"] if "parent_run_id" in runs else pd.Series([None] * len(runs), index=runs.index)
    is_child = parents.notna() & parents.isin(runs["run_id"])
    counts = parents[is_child].value_counts()
    if not children:
        runs = runs[~is_child]
        is_child = is_child[~is_child]
    metrics = metric_columns(runs)
    colours = [style.STATUS_COLOURS.get(s, "#8b949e") for s in runs["status"]]
    models = [model_of(p) for p in runs["params"]]
    palette = {m: charts.PALETTE[i % len(charts.PALETTE)] for i, m in enumerate(sorted(set(models) - {""}))}
    out = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "href": [links.href("run", run=r) for r in runs["run_id"]],
            "name": [
                ("↳ " if child else "") + short(n)
                for n, child in zip(runs["name"].fillna("(unnamed)"), is_child, strict=True)
            ],
            "status": runs["status"].fillna("—"),
            "status_colour": colours,
            "model": models,
            "model_colour": [palette.get(m, "#59636e") for m in models],
            "children": [float(counts.get(r, 0)) or None for r in runs["run_id"]],
        }
    )
    for i, m in enumerate(metrics):
        out[metric_field(m, i)] = pd.to_numeric(runs[m], errors="coerce")
    for column in ("wall_s", "cpu_s", "peak_rss_bytes", "peak_gpu_bytes"):  # the browser formats them
        out[column] = pd.to_numeric(runs[column], errors="coerce").astype(float)
    out["params_text"] = [short(style.params_text(p), 200) for p in runs["params"]]
    out["session"] = [str(s)[-8:] if isinstance(s, str) else "" for s in runs["session_id"]]
    out["started"] = [t.strftime("%Y-%m-%d %H:%M") if not pd.isna(t) else "" for t in runs["started_at"]]
    return out


class SummaryPage(Page):
    """Cards, the runs table, and charts comparing the runs."""

    slug = "summary"
    title = "Summary"

    def __init__(self, source: Any, links: Any, **params: Any) -> None:
        super().__init__(source, links, **params)
        self.runs = source.runs()
        metrics = [m for m in metric_columns(self.runs) if self.runs[m].notna().any()]
        self.metric = pn.widgets.Select(name="metric", options=metrics, value=default_metric(metrics), width=180)
        costs = [c for c, spec in charts.COSTS.items() if spec[0] in self.runs and self.runs[spec[0]].notna().any()]
        self.cost = pn.widgets.Select(
            name="against", options=costs or list(charts.COSTS), value=(costs or ["wall time"])[0], width=160
        )
        self.cards = html()
        self.hint = html()
        self.compare_link = html(visible=False)
        self.show_children = pn.widgets.Checkbox(
            name="show child runs", value=False, visible=False, css_classes=["mlt-children"]
        )
        self.show_children.param.watch(lambda _e: self._fill_table(self._selected_ids()), "value")
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            selectable="checkbox",
            pagination="remote",
            page_size=25,
            layout="fit_data_table",
            sizing_mode="stretch_width",
            hidden_columns=_HIDDEN,
            header_filters={
                "name": {"type": "input", "func": "like", "placeholder": "filter"},
                "status": {"type": "input", "func": "like", "placeholder": "filter"},
                "model": {"type": "input", "func": "like", "placeholder": "filter"},
            },
            stylesheets=[":host .tabulator { font-size: 13px; }"],
        )
        # Chart panes live as long as the page: a refresh swaps their figures in place,
        # so the page keeps its height and the reader's scroll position.
        self.pareto = bokeh(None, min_height=340)
        self.metrics_per_run = bokeh(None, min_height=220)
        self.no_metrics = html(visible=False)
        self.time = bokeh(None, min_height=180)
        self.memory = bokeh(None, min_height=180)
        self.parallel = bokeh(None, min_height=320, visible=False)
        self.importance = bokeh(None, min_height=200, visible=False)
        self.importance_hint = html(visible=False)
        self.charts = pn.Column(
            pn.Row(self.pareto, self.metrics_per_run, sizing_mode="stretch_width"),
            self.no_metrics,
            pn.Row(self.time, self.memory, sizing_mode="stretch_width"),
            self.parallel,
            self.importance,
            self.importance_hint,
            sizing_mode="stretch_width",
        )
        self.table.param.watch(lambda _e: self._draw_charts(), "selection")
        self.metric.param.watch(lambda _e: self._draw(), "value")
        self.cost.param.watch(lambda _e: self._draw_charts(), "value")
        self._fill_table()
        self._draw(with_charts=False)
        # The charts follow as soon as the page is shown: the table comes first.
        pn.state.onload(self._draw_charts_after_load)

    # -- data ---------------------------------------------------------------------
    def refresh(self) -> None:
        runs = self.source.runs()
        if runs.equals(self.runs):
            return
        selected = self._selected_ids()
        self.runs = runs
        metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
        if self.metric.value not in metrics:
            set_options(self.metric, metrics, fallback=default_metric(metrics))
        else:
            set_options(self.metric, metrics)
        self._fill_table(selected)
        self._draw()

    def _fill_table(self, selected: list[str] | None = None) -> None:
        has_children = "parent_run_id" in self.runs and self.runs["parent_run_id"].notna().any()
        self.show_children.visible = bool(has_children)
        frame = table_frame(self.runs, self.links, children=self.show_children.value or not has_children)
        metrics = metric_columns(self.runs)
        formatters = dict(_FORMATTERS)
        titles = {c: header(_TITLES.get(c, c.replace("_", " "))) for c in frame.columns}
        for i, m in enumerate(metrics):
            field = metric_field(m, i)
            formatters[field] = NumberFormatter(format="0.000", nan_format="—", null_format="—", text_align="right")
            titles[field] = header(_TITLES.get(m, m))
        self.table.formatters = formatters
        self.table.titles = titles
        self.table.value = frame
        if selected:
            self.table.selection = [i for i, r in enumerate(frame["run_id"]) if r in set(selected)]

    def _draw_compare_link(self) -> None:
        """Two to six ticked runs: a link to compare them; more: how many the compare page takes."""
        ids = self._selected_ids()
        self.compare_link.visible = len(ids) >= 2
        if len(ids) > MAX_RUNS:
            self.compare_link.object = el("div", f"Tick at most {MAX_RUNS} runs to compare them.", class_="mlt-muted")
        elif len(ids) >= 2:
            href = self.links.href("compare", runs=",".join(ids))
            self.compare_link.object = el(
                "a", f"Compare {len(ids)} runs →", href=href, class_="mlt-button", data_testid="compare-link"
            )

    def _selected_ids(self) -> list[str]:
        frame = self.table.value
        if frame is None or frame.empty:
            return []
        return [frame["run_id"].iloc[i] for i in self.table.selection if i < len(frame)]

    # -- drawing ------------------------------------------------------------------
    def _draw(self, with_charts: bool = True) -> None:
        metric = self.metric.value
        if self.runs.empty:
            self.cards.object = style.empty(
                "No runs yet",
                trusted(
                    "Tag a cell with <code># mlt: record name=random_forest n_estimators=300</code> and run it in "
                    "the <b>Python (MLTrack)</b> kernel; each tagged cell becomes a run and appears here within "
                    "seconds."
                ),
            )
            self.hint.object = ""
            self.charts.visible = False
            return
        self.charts.visible = True
        self.cards.object = summary_cards(self.runs, metric, self.source.counts()["guarded_runs"])
        if with_charts:
            self._draw_all_charts()

    def _draw_all_charts(self) -> None:
        self._draw_charts()
        self._draw_importance()

    def _draw_charts_after_load(self) -> None:
        self._draw_charts()
        # On the next tick, so the other charts reach the browser first: the first forest
        # of a server also imports scikit-learn (about a second).
        pn.state.execute(self._draw_importance, schedule=True)

    def _draw_charts(self) -> None:
        runs = self.runs
        if runs.empty:
            return
        colours = charts.run_colours(list(runs["run_id"]))
        selected = set(self._selected_ids())
        metric = self.metric.value
        metrics = [
            m for m in ("accuracy", "precision", "recall", "f1", "roc_auc") if m in runs and runs[m].notna().any()
        ]
        if not metrics:
            metrics = [m for m in metric_columns(runs) if runs[m].notna().any()][:5]
        if selected:
            shown = runs[runs["run_id"].isin(selected)]
            note = f"{len(shown)} selected run(s); clear the selection to see all."
        elif len(runs) > TOP_RUNS and metric:
            shown = _top(runs, metric, TOP_RUNS)
            note = (
                f"The {TOP_RUNS} best of {len(runs)} runs by {short(metric, 60)}; "
                "tick rows in the table to compare others."
            )
        else:
            shown = runs
            note = "Tick rows in the table to narrow the charts."
        self.hint.object = el("div", note, class_="mlt-muted")
        self._draw_compare_link()
        has_metrics = bool(metric and metrics)
        self.pareto.visible = self.metrics_per_run.visible = has_metrics
        self.no_metrics.visible = not has_metrics
        if has_metrics:
            self.pareto.object = charts.pareto_chart(shown if selected else runs, metric, self.cost.value, colours)
            self.metrics_per_run.object = charts.metrics_chart(shown, metrics, colours)
        else:
            self.no_metrics.object = style.empty(
                "No metrics yet",
                trusted(
                    "Log predictions in a run with <code>mlt.log_predictions(y_test, y_pred, y_proba=proba)</code>"
                    " to compare accuracy, F1, ROC AUC… across runs."
                ),
            )
        self.time.object = charts.time_chart(shown, colours)
        self.memory.object = charts.memory_chart(shown, colours)
        parallel = None
        if metric:
            parallel = charts.parallel_chart(shown if selected else _top(runs, metric, PARALLEL_RUNS), metric)
        self.parallel.visible = parallel is not None
        if parallel is not None:
            self.parallel.object = parallel

    def _draw_importance(self) -> None:
        """Parameter importance for the chosen metric, over all runs (a selection does not narrow it).

        Drawn only when the metric or the runs change: the forest is the
        slowest thing on the page.
        """
        metric = self.metric.value
        table = importance.param_importance(self.runs, metric) if metric else None
        self.importance.visible = table is not None
        self.importance_hint.visible = table is None and not self.runs.empty
        if table is not None:
            self.importance.object = importance.importance_chart(table, metric)
            return
        what = short(metric, 60) if metric else "a metric"
        if metric and len(importance.usable_runs(self.runs, metric)) >= importance.MIN_RUNS:
            note = f"Parameter importance for {what} needs a param and {what} that vary across the runs."
        else:
            note = f"Parameter importance appears once {importance.MIN_RUNS} runs have params and {what}."
        self.importance_hint.object = el("div", note, class_="mlt-muted", data_testid="param-importance-hint")

    def __panel__(self) -> Any:
        return pn.Column(
            self.cards,
            pn.Row(pn.pane.Markdown("### Runs", margin=(10, 10, 0, 10)), self.show_children),
            self.table,
            pn.Row(self.metric, self.cost, self.hint, self.compare_link, sizing_mode="stretch_width"),
            self.charts,
            sizing_mode="stretch_width",
        )


def _top(runs: pd.DataFrame, metric: str, n: int) -> pd.DataFrame:
    if metric not in runs or len(runs) <= n:
        return runs
    ascending = metric in LOWER_IS_BETTER
    return runs.sort_values(metric, ascending=ascending, na_position="last").head(n).sort_index()
