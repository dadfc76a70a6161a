"""Cells: where did my time and memory go? (the session ledger)"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter, StringFormatter

from mlt_dashboard import charts, style
from mlt_dashboard.fragments import ledger_frame, post_mortem
from mlt_dashboard.markup import trusted
from mlt_dashboard.page import Page, bokeh, html, session_arg, set_options
from mlt_dashboard.queries import Source
from mlt_kernel.core.units import format_bytes, format_seconds

ALL = "all sessions"
_HIDDEN = [
    "session_id",
    "delta_rss_bytes",
    "state",
    "status_colour",
    "status_style",
    "wall_text",
    "cpu_text",
    "peak_text",
    "delta_text",
    "gpu_text",
]
_TITLES = {
    "n": "[n]",
    "session": "session",
    "run_name": "run",
    "code_line": "code",
    "started": "started",
    "wall_s": "wall",
    "cpu_s": "CPU",
    "peak_rss_bytes": "peak RAM",
    "delta_rss_mib": "Δ RSS",
    "peak_gpu_bytes": "peak GPU",
    "status": "status",
    "error_name": "error",
}
_SECONDS = NumberFormatter(format="0.00{ s}", nan_format="—", null_format="—", text_align="right")
_BYTES = NumberFormatter(format="0.0 b", nan_format="—", null_format="—", text_align="right")
#: Text and numbers only, no HTML templates (see ``summary._FORMATTERS``).
_FORMATTERS: dict[str, Any] = {
    "wall_s": _SECONDS,
    "cpu_s": _SECONDS,
    "peak_rss_bytes": _BYTES,
    "peak_gpu_bytes": _BYTES,
    "delta_rss_mib": NumberFormatter(format="+0,0.0{ MiB}", nan_format="—", null_format="—", text_align="right"),
    "status": StringFormatter(text_color="status_colour", font_style="status_style"),
}


def session_label(s: Any) -> str:
    started = s["started_at"].strftime("%Y-%m-%d %H:%M") if not pd.isna(s["started_at"]) else "?"
    return f"{started} · {s['status']} · {str(s['session_id'])[-8:]}"


class CellsPage(Page):
    """Every recorded cell of the chosen session(s), the heaviest ones, and post-mortems."""

    slug = "cells"
    title = "Cells"

    def __init__(self, source: Source, links: Any, **params: Any) -> None:
        super().__init__(source, links, **params)
        self.session = pn.widgets.Select(name="session", options=[ALL], value=ALL, width=380)
        self.banners = html()
        self.cards = html()
        self.by_time = bokeh(None, min_height=180)
        self.by_memory = bokeh(None, min_height=180)
        self.bars = pn.Row(self.by_time, self.by_memory, sizing_mode="stretch_width")
        self.table = pn.widgets.Tabulator(
            ledger_frame(source.ledger()),
            show_index=False,
            disabled=True,
            selectable=False,
            pagination="remote",
            page_size=50,
            layout="fit_data_table",
            sizing_mode="stretch_width",
            hidden_columns=_HIDDEN,
            sorters=[{"field": "wall_s", "dir": "desc"}],
            header_filters={
                "run_name": {"type": "input", "func": "like", "placeholder": "filter"},
                "status": {"type": "input", "func": "like", "placeholder": "filter"},
            },
            formatters=_FORMATTERS,
            titles=_TITLES,
            stylesheets=[":host .tabulator { font-size: 13px; }"],
        )
        self.ledger = pd.DataFrame()
        self._fill_sessions()
        wanted = session_arg("session")
        if wanted and wanted in self.session.options.values():
            self.session.value = wanted
        if pn.state.location is not None:
            pn.state.location.sync(self.session, {"value": "session"})
        self.session.param.watch(lambda _e: self._draw(force=True), "value")
        self._draw(force=True)

    def _fill_sessions(self) -> None:
        self.sessions = self.source.sessions()
        options = {ALL: ALL}
        options.update({session_label(s): s["session_id"] for _, s in self.sessions.iterrows()})
        set_options(self.session, options)

    def refresh(self) -> None:
        self._fill_sessions()
        self._draw(force=False)

    def _draw(self, force: bool) -> None:
        chosen = None if self.session.value in (None, ALL) else [self.session.value]
        ledger = self.source.ledger(chosen)
        if not force and ledger.equals(self.ledger):
            return
        self.ledger = ledger
        if ledger.empty:
            self.cards.object = style.empty(
                "No cells recorded yet",
                trusted(
                    "Open a notebook with the <b>Python (MLTrack)</b> kernel and run a cell; every cell is recorded "
                    "with its time, CPU and memory (add <code># mlt: skip</code> to leave one out)."
                ),
            )
            self.banners.object = ""
            self.bars.visible = False
            self.table.value = ledger_frame(ledger)
            return
        sessions = self.sessions if chosen is None else self.sessions[self.sessions["session_id"].isin(chosen)]
        dead = [s for _, s in sessions.iterrows() if s["status"] == "killed"]
        self.banners.object = "".join(post_mortem(s.to_dict(), ledger) for s in dead)
        errors = int((ledger["status"] == "error").sum())
        killed = int((ledger["status"] == "killed").sum())
        guarded = int((ledger["error_name"] == "MemoryGuardInterrupt").sum())
        self.cards.object = style.cards(
            [
                style.card("cells", str(len(ledger)), f"{ledger['session_id'].nunique()} session(s)"),
                style.card(
                    "wall time", format_seconds(ledger["wall_s"].sum()), f"CPU {format_seconds(ledger['cpu_s'].sum())}"
                ),
                style.card("highest peak RAM", format_bytes(ledger["peak_rss_bytes"].max())),
                style.card("errors", str(errors), "cells that raised"),
                style.card("killed", str(killed), "cells the kernel died in"),
                style.card("memory guard", str(guarded), "cells it stopped, the kernel kept"),
            ]
        )
        self.bars.visible = True
        self.by_time.object = charts.heaviest_chart(ledger, "wall_s")
        self.by_memory.object = charts.heaviest_chart(ledger, "peak_rss_bytes")
        self.table.value = ledger_frame(ledger)

    def __panel__(self) -> Any:
        return pn.Column(
            self.session,
            self.banners,
            self.cards,
            self.bars,
            pn.pane.Markdown("### Every cell (heaviest first; click a header to sort)", margin=(10, 10, 0, 10)),
            self.table,
            sizing_mode="stretch_width",
        )
