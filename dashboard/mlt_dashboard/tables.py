"""Plain HTML tables of runs, without Bokeh or Panel: the export's, and the page shown while the server starts.

Every value comes from the folder and goes through ``markup.el`` (escaped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlt_dashboard import style
from mlt_dashboard.markup import Markup, el, join, short
from mlt_kernel.core.units import format_bytes, format_metric, format_seconds

if TYPE_CHECKING:
    import pandas as pd


def table_html(head: Sequence[str], rows: Sequence[Sequence[Markup | str]], numeric: Sequence[bool]) -> Markup:
    """A scrolling table; cells are escaped unless Markup."""
    header = el("tr", join(el("th", h) for h in head))
    body = join(
        el("tr", join(el("td", cell, class_="num" if num else None) for cell, num in zip(row, numeric, strict=True)))
        for row in rows
    )
    return el("div", el("table", el("thead", header), el("tbody", body), class_="mlt-table"), class_="scroll")


def runs_table(runs: pd.DataFrame, *, link: bool = False) -> Markup:
    """The runs of ``Source.runs()`` with their final metrics, times and peaks; *link*: each name
    links to ``#run-{index}`` (the export's run sections)."""
    from mlt_dashboard.ranking import metric_columns

    metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
    records = runs.astype(object).where(runs.notna(), None).to_dict("records")  # NaN and NaT: None
    return runs_records_table(list(zip(runs.index, records, strict=True)), metrics, link=link)


def runs_records_table(
    runs: Sequence[tuple[Any, Mapping[str, Any]]], metrics: Sequence[str], *, link: bool = False
) -> Markup:
    """:func:`runs_table` from ``(index, run)`` pairs, each run a mapping of the columns of
    ``Source.runs()`` (``params`` a dictionary, ``started_at`` a local time), and the *metrics*
    to show: no pandas needed (the page shown while the server starts)."""
    head = [
        "run",
        "status",
        *(short(m, 40) for m in metrics),
        "wall",
        "CPU",
        "peak RAM",
        "peak GPU",
        "params",
        "started",
    ]
    numeric = [False, False, *(True for _ in metrics), True, True, True, True, False, False]
    rows = []
    for i, r in runs:
        rows.append(
            [
                el("a", short(r["name"]), href=f"#run-{i}") if link else el("b", short(r["name"]), title=r["name"]),
                style.badge(r["status"]),
                *(format_metric(r.get(m)) for m in metrics),
                format_seconds(r["wall_s"]),
                format_seconds(r["cpu_s"]),
                format_bytes(r["peak_rss_bytes"]),
                format_bytes(r["peak_gpu_bytes"]),
                short(style.params_text(r["params"]), 200),
                _minute(r["started_at"]),
            ]
        )
    return table_html(head, rows, numeric)


def _minute(when: Any) -> str:
    """``2026-12-06 14:05``; empty for a missing time (None, or pandas' NaT)."""
    try:
        return str(when.strftime("%Y-%m-%d %H:%M"))
    except (AttributeError, ValueError, NotImplementedError, OverflowError):  # NaT, a time past pandas' range
        return ""
