"""Runs side by side: the compare page's tables, code diffs and overlaid charts.

Shared by the compare page and the export, so it imports no Panel. Everything
shown comes from a shared folder: tables and diffs are built with
:func:`markup.el` (escaped), the code is highlighted by Pygments (which escapes
what it highlights), and chart text reaches Bokeh only as ``@column`` fields or
through :func:`markup.plain`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from bokeh.models import ColumnDataSource

from mlt_dashboard import charts
from mlt_dashboard.charts import _figure, _hover
from mlt_dashboard.markup import Markup, el, join, short, trusted
from mlt_dashboard.queries import RunPage, Source
from mlt_kernel.core.units import format_bytes, format_metric
from mlt_kernel.read.compare import RunDiff

#: Runs a comparison shows at most.
MAX_RUNS = 6
#: Training-curve metrics overlaid at most (the first ones logged).
MAX_CURVES = 4
#: Lines of a code diff shown (each is highlighted on the server).
MAX_DIFF_LINES = 1500
#: Characters of a value shown in a table cell (the whole value is its tooltip).
VALUE_CHARS = 60

GiB = float(1 << 30)


@dataclass
class Comparison:
    """What the compare view shows for a few runs."""

    diff: RunDiff
    pages: dict[str, RunPage]  #: run_id -> the run page's data (timeline, curves, confusion)
    colours: dict[str, str]  #: run_id -> colour, as on the other pages

    @classmethod
    def load(cls, source: Source, run_ids: Sequence[str]) -> Comparison:
        diff = source.compare(tuple(run_ids))
        pages = {}
        for facts in diff.runs:
            run = source.run(facts.run_id)
            if run is not None:
                pages[facts.run_id] = source.run_page(run)
        all_ids = list(source.runs()["run_id"])
        return cls(diff, pages, charts.run_colours(all_ids))

    @property
    def labels(self) -> list[str]:
        return self.diff.labels


# -- tables -------------------------------------------------------------------------


def _value(item: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if item == "ram_bytes" and isinstance(value, int | float):
        return format_bytes(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_metric(value)
    return str(value)


def table_html(title: str, table: pd.DataFrame, labels: Sequence[str], *, only_differences: bool, slug: str) -> Markup:
    """One of the side-by-side tables; rows that differ are marked (and the only ones, when asked)."""
    rows = table[table["differs"]] if only_differences and not table.empty else table
    heading = el("div", title, class_="mlt-section")
    if rows.empty:
        what = "no differences" if only_differences and not table.empty else "none recorded"
        return join([heading, el("div", f"{title}: {what}.", class_="mlt-muted", data_testid=f"compare-{slug}-empty")])
    head = el("tr", el("th", ""), *(el("th", short(label, 40), title=label) for label in labels))
    body = []
    for key, row in rows.iterrows():
        cells = []
        for label in labels:
            shown = _value(str(key), row[label])
            cells.append(el("td", short(shown, VALUE_CHARS), title=shown if len(shown) > VALUE_CHARS else None))
        body.append(
            el("tr", el("th", short(key, 60), title=str(key)), *cells, class_="differs" if row["differs"] else None)
        )
    return join(
        [
            heading,
            el(
                "div",
                el("table", el("thead", head), el("tbody", *body), class_="mlt-compare", data_testid=f"compare-{slug}"),
                class_="mlt-scroll",
            ),
        ]
    )


def tables_html(diff: RunDiff, *, only_differences: bool) -> Markup:
    labels = diff.labels
    return join(
        [
            table_html("Params", diff.params, labels, only_differences=only_differences, slug="params"),
            table_html("Final metrics", diff.metrics, labels, only_differences=only_differences, slug="metrics"),
            table_html("Provenance", diff.provenance, labels, only_differences=only_differences, slug="provenance"),
        ]
    )


# -- code ---------------------------------------------------------------------------


def _highlight(code: str) -> Markup:
    """One line of Python, highlighted; Pygments escapes ``&``, ``<``, ``>`` and quotes."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return trusted(highlight(code, PythonLexer(), HtmlFormatter(nowrap=True)).rstrip("\n"))


def diff_html(text: str) -> Markup:
    """A unified diff as lines marked added, removed or context, the code highlighted (the first
    ``MAX_DIFF_LINES``; a note says how many more there are)."""
    lines = []
    all_lines = text.splitlines()
    for line in all_lines[:MAX_DIFF_LINES]:
        if line.startswith(("+++", "---")):
            lines.append(el("div", line, class_="d-file"))
        elif line.startswith("@@"):
            lines.append(el("div", line, class_="d-hunk"))
        else:
            kind = {"+": "d-add", "-": "d-del"}.get(line[:1], "d-ctx")
            lines.append(el("div", el("span", line[:1] or " ", class_="d-mark"), _highlight(line[1:]), class_=kind))
    if len(all_lines) > MAX_DIFF_LINES:
        lines.append(el("div", f"… {len(all_lines) - MAX_DIFF_LINES} more lines of the diff", class_="d-file"))
    return el("pre", *lines, class_="mlt-diff")


def code_html(diff: RunDiff) -> Markup:
    """Each run's own cells against the first run's, then the lineages (folded)."""
    base = diff.labels[0]
    parts: list[Markup] = [el("div", "Code", class_="mlt-section")]
    for label, text in diff.code.items():
        if not text:
            parts.append(el("div", f"{label}: the same code as {base}.", class_="mlt-muted"))
        else:
            parts.append(el("div", el("b", label), f" against {base}", class_="mlt-muted"))
            parts.append(el("div", diff_html(text), data_testid="compare-code"))
    for label, text in diff.lineage.items():
        if text:
            parts.append(
                el(
                    "details",
                    el("summary", f"Lineage of {label} against {base}: every cell that led to each run"),
                    diff_html(text),
                )
            )
    return join(parts)


# -- charts -------------------------------------------------------------------------


def memory_chart(comparison: Comparison) -> Any | None:
    """Each run's memory (kernel + children) over time, aligned at its start."""
    p = _figure(
        height=300,
        title="Memory over time",
        x_axis_label="seconds since the run started",
        y_axis_label="GiB",
        name="compare-memory",
    )
    drawn = []
    for facts in comparison.diff.runs:
        page = comparison.pages.get(facts.run_id)
        if page is None or page.timeline.empty:
            continue
        t = page.timeline
        d = pd.DataFrame(
            {
                "t": t["t"].astype(float),
                "gib": pd.to_numeric(t["rss_bytes"], errors="coerce").astype(float) / GiB,
                "text": [format_bytes(None if pd.isna(v) else v) for v in t["rss_bytes"]],
                "run": facts.label,
            }
        )
        colour = comparison.colours.get(facts.run_id, charts.PALETTE[0])
        drawn.append(
            p.line(
                "t", "gib", source=ColumnDataSource(d), line_width=2, color=colour, legend_label=short(facts.label, 60)
            )
        )
    if not drawn:
        return None
    p.add_tools(_hover(drawn, [("run", "run"), ("time", "$x{0.0} s"), ("RSS", "text")]))
    p.legend.click_policy = "hide"
    p.legend.label_text_font_size = "11px"
    p.legend.location = "top_left"
    return p


def curve_charts(comparison: Comparison) -> list[Any]:
    """One chart per training-curve metric (the first few), a line per run."""
    steps = {fid: page.steps for fid, page in comparison.pages.items() if not page.steps.empty}
    names = list(dict.fromkeys(n for frame in steps.values() for n in frame["name"]))[:MAX_CURVES]
    out = []
    for i, name in enumerate(names):
        p = _figure(height=260, title=short(name, 80), x_axis_label="step", name=f"compare-curve-{i}")
        drawn = []
        for facts in comparison.diff.runs:
            frame = steps.get(facts.run_id)
            if frame is None:
                continue
            d = frame[frame["name"] == name][["step", "value"]].copy()
            if d.empty:
                continue
            d["text"] = [format_metric(v) for v in d["value"]]
            d["run"] = facts.label
            colour = comparison.colours.get(facts.run_id, charts.PALETTE[0])
            drawn.append(
                p.line(
                    "step",
                    "value",
                    source=ColumnDataSource(d),
                    line_width=2,
                    color=colour,
                    legend_label=short(facts.label, 60),
                )
            )
        p.add_tools(_hover(drawn, [("run", "run"), ("step", "step"), ("value", "text")]))
        p.legend.click_policy = "hide"
        p.legend.label_text_font_size = "11px"
        out.append(p)
    return out


def confusion_charts(comparison: Comparison) -> list[tuple[str, Any]]:
    """``(label, chart)`` of each run's confusion matrix (``test`` split, else its first)."""
    out = []
    for facts in comparison.diff.runs:
        page = comparison.pages.get(facts.run_id)
        if page is None or not page.confusion:
            continue
        split = "test" if "test" in page.confusion else next(iter(page.confusion))
        labels, matrix = page.confusion[split]
        out.append((facts.label, charts.confusion_chart(labels, matrix, False, split)))
    return out


def run_ids_arg(source: Source, raw: str | None) -> tuple[list[str], list[str]]:
    """``(run ids, names not found)`` of a ``runs=A,B`` argument (ids, or names: the latest such run)."""
    ids: list[str] = []
    missing: list[str] = []
    for part in (raw or "").split(","):
        wanted = part.strip()
        if not wanted:
            continue
        run = source.run(wanted)
        if run is None:
            missing.append(wanted)
        elif run["run_id"] not in ids:
            ids.append(run["run_id"])
    return ids, missing


__all__ = [
    "MAX_RUNS",
    "Comparison",
    "code_html",
    "confusion_charts",
    "curve_charts",
    "diff_html",
    "memory_chart",
    "run_ids_arg",
    "tables_html",
]
