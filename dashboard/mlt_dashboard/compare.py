"""Compare: what differs between these runs?"""

from __future__ import annotations

from typing import Any

import panel as pn

from mlt_dashboard import style
from mlt_dashboard.comparison import (
    MAX_RUNS,
    Comparison,
    code_html,
    confusion_charts,
    curve_charts,
    memory_chart,
    run_ids_arg,
    tables_html,
)
from mlt_dashboard.fragments import run_label
from mlt_dashboard.markup import Markup, el, join, short, text, trusted
from mlt_dashboard.page import Page, bokeh, html, session_arg
from mlt_dashboard.queries import Source

_PICK = style.empty(
    "Pick two to six runs",
    trusted(
        "Tick their rows in the <b>Summary</b> table and follow <b>Compare</b>, or choose them above. "
        "Params, metrics and provenance are shown side by side, with the code diff, memory over time, "
        "training curves and confusion matrices."
    ),
)


class ComparePage(Page):
    """Two to six runs side by side (``compare?runs=A,B,…``)."""

    slug = "compare"
    title = "Compare"

    def __init__(self, source: Source, links: Any, **params: Any) -> None:
        super().__init__(source, links, **params)
        ids, missing = run_ids_arg(source, session_arg("runs"))
        self.picker = pn.widgets.MultiChoice(
            name="runs", options=self._options(), value=ids[:MAX_RUNS], max_items=MAX_RUNS, width=640
        )
        self.only = pn.widgets.Switch(value=True, width=40, margin=(22, 4, 0, 12), css_classes=["mlt-only"])
        self.notice = html(visible=bool(missing) or len(ids) > MAX_RUNS)
        if self.notice.visible:
            bits: list[Markup] = []
            if missing:
                bits.append(join(["No run ", join((el("code", short(m, 60)) for m in missing), ", "), " here. "]))
            if len(ids) > MAX_RUNS:
                bits.append(text(f"Showing the first {MAX_RUNS} of {len(ids)} runs."))
            self.notice.object = style.banner("info", join(bits))
        self.empty = html(_PICK, visible=False)
        self.tables = html()
        self.code = html()
        self.memory = bokeh(None, min_height=300)
        self.curves = pn.Row(sizing_mode="stretch_width")
        self.confusion = pn.Row(sizing_mode="stretch_width")
        self.content = pn.Column(
            self.tables,
            self.code,
            self.memory,
            html(el("div", "Training curves", class_="mlt-section")),
            self.curves,
            html(el("div", "Confusion matrices", class_="mlt-section")),
            self.confusion,
            sizing_mode="stretch_width",
        )
        self.comparison: Comparison | None = None
        self.picker.param.watch(lambda _e: self._draw(), "value")
        self.only.param.watch(lambda _e: self._draw_tables(), "value")
        self._draw()

    def _options(self) -> dict[str, str]:
        runs = self.source.runs()
        # Escaped: the picker's dropdown (Choices.js) writes its labels as HTML.
        return {str(text(run_label(r))): r["run_id"] for _, r in runs.iloc[::-1].iterrows()}

    def refresh(self) -> None:
        options = self._options()
        if options != self.picker.options:
            value = [v for v in self.picker.value if v in options.values()]
            self.picker.options = options
            self.picker.value = value
        self._draw()

    def _draw(self) -> None:
        ids = list(self.picker.value)
        if pn.state.location is not None:
            # Panel annotates **kwargs as Mapping; each is one query argument's value.
            pn.state.location.update_query(runs=",".join(ids))  # type: ignore[arg-type]
        if len(ids) < 2:
            self.comparison = None
            self.empty.visible, self.content.visible = True, False
            return
        self.comparison = Comparison.load(self.source, ids)
        self.empty.visible, self.content.visible = False, True
        self._draw_tables()
        self.code.object = code_html(self.comparison.diff)
        fig = memory_chart(self.comparison)
        self.memory.visible = fig is not None
        if fig is not None:
            self.memory.object = fig
        curves = curve_charts(self.comparison)
        curve_panes: list[Any] = [bokeh(c, min_height=260) for c in curves] or [
            html(el("div", "No training curves logged in these runs.", class_="mlt-muted"))
        ]
        self.curves[:] = curve_panes
        confusions = confusion_charts(self.comparison)
        confusion_panes: list[Any] = [
            pn.Column(html(el("div", el("b", short(label, 60)), class_="mlt-muted")), bokeh(c, sizing_mode="fixed"))
            for label, c in confusions
        ] or [html(el("div", "No predictions logged in these runs.", class_="mlt-muted"))]
        self.confusion[:] = confusion_panes

    def _draw_tables(self) -> None:
        if self.comparison is not None:
            self.tables.object = tables_html(self.comparison.diff, only_differences=self.only.value)

    def __panel__(self) -> Any:
        switch = pn.Row(self.only, html(el("div", "differences only", class_="mlt-muted"), margin=(24, 0, 0, 0)))
        return pn.Column(
            pn.Row(self.picker, switch, sizing_mode="stretch_width"),
            self.notice,
            self.empty,
            self.content,
            sizing_mode="stretch_width",
        )
