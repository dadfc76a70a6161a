"""Run: what happened during this training?"""

from __future__ import annotations

from typing import Any

import panel as pn

from mlt_dashboard import charts, fragments, style
from mlt_dashboard.fragments import RunData, header_html, killed_html, run_label
from mlt_dashboard.markup import el, short, trusted
from mlt_dashboard.notes import plots_with_notes
from mlt_dashboard.page import Page, bokeh, html, session_arg, set_options
from mlt_dashboard.queries import Source

_NO_RUNS = style.empty(
    "No runs yet",
    trusted(
        "Tag a cell with <code># mlt: record name=random_forest n_estimators=300</code>, or wrap several cells "
        "in <code># mlt: record start name=mlp</code> … <code># mlt: record stop</code>."
    ),
)
_NO_TIMELINE = style.empty(
    "No memory readings for this run",
    "The resource watcher records them while cells run; they appear here within seconds.",
)
_NO_CURVES = style.empty(
    "No training curves", trusted('Log them per epoch with <code>mlt.log_metric("loss", loss, step=epoch)</code>.')
)
_NO_PREDICTIONS = style.empty(
    "No predictions logged",
    trusted(
        "Call <code>mlt.log_predictions(y_test, y_pred, y_proba=model.predict_proba(X_test))</code> in the "
        "run to get the confusion matrix, ROC and precision-recall curves."
    ),
)
_NO_PLOTS = style.empty(
    "No plots or notes for this run",
    trusted(
        "Save figures under the experiment's <code>plots/</code> folder while the run is open, and explain "
        "them with <code># mlt: note plot=roc.png</code>."
    ),
)


def _show(pane: Any, fig: Any, live: bool) -> None:
    """Show *fig* in *pane*: on a live refresh, as new data in the figure already there."""
    if not (live and pane.object is not None and charts.update_in_place(pane.object, fig)):
        pane.object = fig


def _section(title: str) -> Any:
    return html(el("div", title, class_="mlt-section"))


class RunPage(Page):
    """One run: header, memory over time, training curves, confusion matrix, ROC/PR, plots and notes.

    Every part is a pane that lives as long as the page; a refresh (a running
    run, every few seconds) swaps figures and HTML in place, so the page keeps
    its height and the reader's scroll position.
    """

    slug = "run"
    title = "Run"

    def __init__(self, source: Source, links: Any, **params: Any) -> None:
        super().__init__(source, links, **params)
        self.select = pn.widgets.Select(name="run", options={}, width=420)
        self.split = pn.widgets.Select(name="split", options=[], width=140)
        self.mode = pn.widgets.RadioButtonGroup(options=["counts", "normalised"], value="counts", button_type="default")
        self.empty = html(_NO_RUNS, visible=False)
        self.header = html()
        self.killed = html(visible=False)
        self.timeline = bokeh(None, min_height=340)
        self.no_timeline = html(_NO_TIMELINE, visible=False)
        self.losses = bokeh(None, min_height=280, visible=False)
        self.other_curves = bokeh(None, min_height=280, visible=False)
        self.no_curves = html(_NO_CURVES, visible=False)
        self.confusion = bokeh(None, sizing_mode="fixed")
        self.roc = bokeh(None, min_height=320)
        self.pr = bokeh(None, min_height=320)
        self.no_predictions = html(_NO_PREDICTIONS, visible=False)
        self.predictions = pn.Row(
            pn.Column(pn.Row(self.split, self.mode), self.confusion, width=560),
            self.roc,
            self.pr,
            sizing_mode="stretch_width",
        )
        self.plots = html()
        self.fits = html()
        self.content = pn.Column(
            self.header,
            self.killed,
            self.timeline,
            self.no_timeline,
            _section("Model fits"),
            self.fits,
            _section("Training curves"),
            pn.Row(self.losses, self.other_curves, sizing_mode="stretch_width"),
            self.no_curves,
            _section("Predictions"),
            self.no_predictions,
            self.predictions,
            _section("Plots and notes"),
            self.plots,
            sizing_mode="stretch_width",
        )
        self.data: RunData | None = None
        self._fill_select()
        wanted = session_arg("run")
        if wanted:
            found = source.run(wanted)
            if found is not None and found["run_id"] in self.select.options.values():
                self.select.value = found["run_id"]
        if pn.state.location is not None:
            pn.state.location.sync(self.select, {"value": "run"})
        self.select.param.watch(lambda _e: self._draw(force=True), "value")
        self.split.param.watch(lambda _e: self._draw_split(), "value")
        self.mode.param.watch(lambda _e: self._draw_confusion(), "value")
        self._draw(force=True)

    def _fill_select(self) -> None:
        runs = self.source.runs()
        options = {run_label(r): r["run_id"] for _, r in runs.iloc[::-1].iterrows()}
        set_options(self.select, options)  # a new select starts on the newest run

    def refresh(self) -> None:
        self._fill_select()
        self._draw(force=False)

    def _draw(self, force: bool) -> None:
        run_id = self.select.value
        data = RunData(self.source, run_id) if run_id else None
        if data is None or data.run is None:
            self.data = None
            self.empty.object = (
                _NO_RUNS if not run_id else style.empty("Run not found", f"No run {short(run_id)} in this experiment.")
            )
            self.empty.visible, self.content.visible = True, False
            return
        if not force and data.same_as(self.data):
            return
        # A refresh of the run shown (still recording) moves the new points into the
        # charts already drawn, so the reader's zoom and pan stay.
        shown = self.data.run if self.data is not None else None
        live = not force and shown is not None and shown["run_id"] == run_id
        self.data = data
        self.empty.visible, self.content.visible = False, True
        run = data.run
        self.header.object = header_html(data)
        self.killed.visible = run["status"] == "killed"
        if self.killed.visible:
            self.killed.object = killed_html(data)
        self._draw_timeline(data, live)
        self.fits.object = fragments.fits_html(data.fits)
        curves = charts.training_charts(data.steps)
        self.no_curves.visible = not curves
        for pane, fig in zip((self.losses, self.other_curves), [*curves, None, None], strict=False):
            pane.visible = fig is not None
            if fig is not None:
                _show(pane, fig, live)
        self._draw_predictions()
        blocks = plots_with_notes(self.source, data.plots, data.notes)
        self.plots.object = "".join(blocks) if blocks else _NO_PLOTS

    def _draw_timeline(self, data: RunData, live: bool) -> None:
        self.no_timeline.visible = data.timeline.empty
        self.timeline.visible = not data.timeline.empty
        if data.timeline.empty or data.run is None:
            return
        _show(self.timeline, fragments.timeline(data), live)

    def _draw_predictions(self) -> None:
        data = self.data
        if data is None:
            return
        splits = list(data.confusion)
        if not splits and not data.curves.empty:
            splits = sorted(set(data.curves["split"]))
        self.no_predictions.visible = not splits
        self.predictions.visible = bool(splits)
        if not splits:
            return
        split = self.split.value
        set_options(self.split, splits)
        if self.split.value == split:  # otherwise the split watcher has drawn the new split
            self._draw_split()

    def _draw_split(self) -> None:
        """The parts that show one split: the confusion matrix, ROC and precision-recall."""
        data = self.data
        if data is None:
            return
        self._draw_confusion()
        split = self.split.value or "test"
        curves = data.curves[data.curves["split"] == split] if not data.curves.empty else data.curves
        self.roc.visible = self.pr.visible = not curves.empty
        if not curves.empty:
            self.roc.object = charts.curve_chart(curves, "roc")
            self.pr.object = charts.curve_chart(curves, "pr")

    def _draw_confusion(self) -> None:
        data = self.data
        self.confusion.visible = data is not None and bool(data.confusion)
        if data is None or not data.confusion:
            return
        split = self.split.value if self.split.value in data.confusion else next(iter(data.confusion))
        labels, matrix = data.confusion[split]
        self.confusion.object = charts.confusion_chart(labels, matrix, self.mode.value == "normalised", split)

    def __panel__(self) -> Any:
        return pn.Column(self.select, self.empty, self.content, sizing_mode="stretch_width")
