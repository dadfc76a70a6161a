"""An experiment as static HTML for a notebook's output: ``%mlt runs`` and ``%mlt run NAME``.

The fragments are the export's (``fragments``): the summary cards and the runs
table, and a run's header with its params and metrics. Charts that the
dashboard draws with Bokeh are drawn here without a script — the memory
timeline as an inline SVG, the confusion matrix as a shaded table — so the
output reads the same in JupyterLab, VS Code, nbviewer and on GitHub, none of
which runs a script from a saved notebook. Every value from the folder is
escaped by ``markup.el``; the look is in ``style`` attributes (no ``<style>``
block, which frontends drop from a saved notebook).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlt_dashboard import style
from mlt_dashboard.fragments import RunData, default_metric, header_html, summary_cards
from mlt_dashboard.markup import Markup, el, join, short, trusted
from mlt_dashboard.queries import Source
from mlt_dashboard.ranking import metric_columns
from mlt_dashboard.tables import runs_table
from mlt_kernel.core.units import format_bytes, format_seconds
from mlt_kernel.read.experiment import Experiment

#: Rows of the runs table shown inline (the newest); the dashboard has them all.
MAX_INLINE_RUNS = 200
#: Points of a memory line in the SVG: enough for its shape, few enough for a saved notebook.
MAX_POINTS = 400

GiB = 1024**3

_MUTED = "color:#59636e"
_CELL = "padding:0.25rem 0.55rem;border-bottom:1px solid #e5e7eb;white-space:nowrap"
_TABLE = "border-collapse:collapse;font-size:0.85rem;margin:0.4rem 0"
#: Styles of the fragments' classes, written into each element: a saved notebook's HTML keeps
#: ``style`` attributes in JupyterLab, nbviewer and VS Code, where a ``<style>`` block is dropped.
_STYLES = {
    "mlt-inline": "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328",
    "mlt-cards": "display:flex;gap:0.75rem;flex-wrap:wrap;margin:0.4rem 0",
    "mlt-card": "border:1px solid #d0d7de;border-radius:8px;padding:0.5rem 0.8rem;min-width:9rem;flex:1 1 9rem",
    "mlt-card best": "border:1px solid #59a14f;border-radius:8px;padding:0.5rem 0.8rem;min-width:9rem;"
    "flex:1 1 9rem;background:#f3faf2",
    "label": f"{_MUTED};font-size:0.75rem;text-transform:uppercase;letter-spacing:0.04em",
    "value": "font-size:1.3rem;font-weight:650;line-height:1.3;overflow-wrap:anywhere",
    "sub": f"{_MUTED};font-size:0.85rem",
    "mlt-badge": "display:inline-block;padding:0.05rem 0.5rem;border-radius:999px;color:#fff;font-size:0.78rem;"
    "font-weight:600",
    "mlt-chip": "display:inline-block;padding:0.1rem 0.5rem;margin:0.15rem 0.25rem 0.15rem 0;border-radius:6px;"
    "background:#f6f8fa;border:1px solid #d0d7de;font-size:0.85rem;font-family:ui-monospace,Menlo,Consolas,monospace",
    "mlt-muted": f"{_MUTED};font-size:0.88rem",
    "mlt-empty": f"border:1px dashed #d0d7de;border-radius:8px;padding:1rem 1.2rem;{_MUTED}",
    "mlt-grid": "display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start",
    "mlt-table": _TABLE,
    "mlt-table mlt-confusion": _TABLE,
    "scroll": "overflow-x:auto;max-height:30rem;overflow-y:auto",
    "num": f"{_CELL};text-align:right;font-variant-numeric:tabular-nums",
}
_TAGS = {
    "<th>": f'<th style="{_CELL};text-align:left;background:#f6f8fa">',
    "<td>": f'<td style="{_CELL};text-align:left">',
}
_CLASS = re.compile(r'class="([^"]*)"(?: style="([^"]*)")?')
_TAG = re.compile("|".join(re.escape(t) for t in _TAGS))


def _styled(html: str) -> str:
    """*html* with the styles of its classes in ``style`` attributes.

    Only our own markup is touched: text from the folder was escaped, so a quote
    or a ``<`` in the output is always one that ``markup.el`` wrote.
    """

    def one(match: re.Match[str]) -> str:
        ours = _STYLES.get(match.group(1), "")
        theirs = match.group(2) or ""
        both = ";".join(part for part in (ours, theirs) if part)
        return f'class="{match.group(1)}"' + (f' style="{both}"' if both else "")

    return _TAG.sub(lambda m: _TAGS[m.group(0)], _CLASS.sub(one, html))


_LINES = (("rss_bytes", "kernel + children RSS", "#4e79a7"), ("children_rss_bytes", "children RSS", "#f28e2b"))
_GPU_LINE = ("gpu_bytes", "GPU memory", "#59a14f")


def _wrap(body: Markup) -> str:
    return _styled(el("div", body, class_="mlt-inline"))


def runs_html(path: str | Path) -> str:
    """The summary of the experiment at *path*: cards (best run, compute, peaks) and the runs table."""
    source = Source(Path(path))
    try:
        runs = source.runs()
        counts = source.counts()
        title = el("h3", "MLTrack · ", el("span", source.name, style="color:#4e79a7"))
        if runs.empty:
            empty = style.empty(
                "No runs yet", trusted("Tag a cell with <code># mlt: record name=…</code> to make it a run.")
            )
            return _wrap(join([title, empty]))
        metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
        shown = runs.tail(MAX_INLINE_RUNS)
        cut = f" (the newest {MAX_INLINE_RUNS}; the dashboard has them all)" if len(runs) > len(shown) else ""
        parts = [
            title,
            el("div", f"{counts['sessions']} sessions · {counts['runs']} runs{cut}", class_="mlt-muted"),
            summary_cards(runs, default_metric(metrics), counts["guarded_runs"]),
            runs_table(shown),
        ]
        return _wrap(join(parts))
    finally:
        source.close()


def run_id_of(path: str | Path, run: str) -> str:
    """The id of *run* (an id, or a name unique in the experiment); ``UnknownRunError`` otherwise."""
    experiment = Experiment(Path(path))
    try:
        return str(experiment.resolve_run(run)["run_id"])
    finally:
        experiment.close()


def run_html(path: str | Path, run: str) -> str:
    """One run's card: name, status, params, metrics, times and peaks, memory over time, confusion matrices."""
    run_id = run_id_of(path, run)
    source = Source(Path(path))
    try:
        data = RunData(source, run_id)
        if data.run is None:  # resolved a moment ago: the folder changed in between
            return _wrap(style.empty("No such run", f"{run} is not in {source.name} any more."))
        parts = [header_html(data)]
        charts = []
        if not data.timeline.empty:
            charts.append(el("div", el("h3", "Memory over time"), memory_svg(data.timeline, data.cells, data.run)))
        for split, (labels, matrix) in data.confusion.items():
            charts.append(
                el("div", el("h3", f"Confusion matrix · {short(split, 60)}"), confusion_table(labels, matrix))
            )
        if charts:
            parts.append(el("div", join(charts), class_="mlt-grid"))
        return _wrap(join(parts))
    finally:
        source.close()


def confusion_table(labels: Sequence[Any], matrix: Sequence[Sequence[Any]]) -> Markup:
    """Counts, each cell shaded by its share of the true class (the row)."""
    head = el("tr", el("th", "true ╲ predicted"), join(el("th", short(label, 30)) for label in labels))
    rows = []
    for label, counts in zip(labels, matrix, strict=False):
        total = sum(int(c) for c in counts) or 1
        cells = []
        for count in counts:
            share = int(count) / total
            ink = "#fff" if share > 0.55 else "#1f2328"
            shade = f"background:rgba(78,121,167,{share:.2f});color:{ink};padding:0.25rem 0.7rem;text-align:right"
            cells.append(el("td", f"{int(count):,}", style=shade, title=f"{share:.1%} of this class"))
        rows.append(el("tr", el("th", short(label, 30)), join(cells)))
    return el("table", el("thead", head), el("tbody", join(rows)), class_="mlt-table mlt-confusion")


def _points(t: Sequence[float], values: Sequence[float], x: Any, y: Any) -> str:
    return " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, values, strict=True) if not math.isnan(b))


def memory_svg(timeline: pd.DataFrame, cells: pd.DataFrame, run: Any, width: int = 640, height: int = 220) -> Markup:
    """The run's memory timeline (kernel + children RSS, children, GPU) as an SVG, cells shaded ``[n]``, peak marked."""
    frame = timeline.sort_values("t")
    if len(frame) > MAX_POINTS:  # every k-th reading, and the peak
        step = math.ceil(len(frame) / MAX_POINTS)
        peak_at = frame["rss_bytes"].astype(float).idxmax()
        frame = frame.iloc[::step].combine_first(frame.loc[[peak_at]]).sort_values("t")
    t = [float(v) for v in frame["t"]]
    lines = [*_LINES, _GPU_LINE] if frame["gpu_bytes"].notna().any() else list(_LINES)
    series = {col: [float(v) for v in pd.to_numeric(frame[col], errors="coerce")] for col, _, _ in lines}
    top = max((v for values in series.values() for v in values if not math.isnan(v)), default=GiB) * 1.15 or GiB
    end = max(t[-1] if t else 1.0, 1e-3)
    left, right, upper, lower = 56, 12, 10, 34
    plot_w, plot_h = width - left - right, height - upper - lower

    def x(s: float) -> float:
        return left + plot_w * max(0.0, s) / end

    def y(b: float) -> float:
        return upper + plot_h * (1 - b / top)

    parts: list[Markup] = [el("title", f"Memory over time of {short(run['name'])}")]
    started = pd.Timestamp(run["started_at"]) if not pd.isna(run["started_at"]) else None
    if started is not None and len(cells) and {"started_at", "wall_s"} <= set(cells.columns):
        for i, cell in enumerate(cells.itertuples()):
            if pd.isna(cell.started_at) or pd.isna(cell.wall_s):
                continue
            begin = (pd.Timestamp(cell.started_at) - started).total_seconds()
            span = max(x(begin + float(cell.wall_s)) - x(begin), 1.0)
            shade = "#f3f4f6" if i % 2 == 0 else "#e9ecef"
            parts.append(el("rect", x=f"{x(begin):.1f}", y=upper, width=f"{span:.1f}", height=plot_h, fill=shade))
            n = getattr(cell, "execution_count", None)
            if n is not None and not pd.isna(n) and span > 18:
                parts.append(
                    el("text", f"[{int(n)}]", x=f"{x(begin) + 3:.1f}", y=upper + 12, font_size=10, fill="#59636e")
                )
    for fraction in (0.0, 0.5, 1.0):
        value = top / 1.15 * fraction
        parts.append(
            el("line", x1=left, x2=width - right, y1=f"{y(value):.1f}", y2=f"{y(value):.1f}", stroke="#d0d7de")
        )
        parts.append(
            el("text", format_bytes(value), x=left - 4, y=f"{y(value) + 4:.1f}", font_size=10, text_anchor="end")
        )
    for fraction in (0.0, 0.5, 1.0):
        parts.append(
            el(
                "text",
                format_seconds(end * fraction) if fraction else "0 s",
                x=f"{x(end * fraction):.1f}",
                y=height - lower + 14,
                font_size=10,
                text_anchor="middle" if 0 < fraction < 1 else ("start" if fraction == 0 else "end"),
            )
        )
    for col, label, colour in lines:
        points = _points(t, series[col], x, y)
        if points:
            parts.append(el("polyline", el("title", label), points=points, fill="none", stroke=colour, stroke_width=2))
    rss = series["rss_bytes"]
    if any(not math.isnan(v) for v in rss):
        i = max(range(len(rss)), key=lambda k: -math.inf if math.isnan(rss[k]) else rss[k])
        parts.append(el("circle", cx=f"{x(t[i]):.1f}", cy=f"{y(rss[i]):.1f}", r=4, fill="#e15759"))
        anchor = "end" if x(t[i]) > width * 0.7 else "start"
        shift = -6 if anchor == "end" else 6
        label_y = max(y(rss[i]) - 6, upper + 10)
        parts.append(
            el(
                "text",
                f"peak {format_bytes(rss[i])}",
                x=f"{x(t[i]) + shift:.1f}",
                y=f"{label_y:.1f}",
                font_size=11,
                fill="#e15759",
                text_anchor=anchor,
            )
        )
    legend_x = left
    for _, label, colour in lines:
        parts.append(el("rect", x=legend_x, y=height - 12, width=10, height=3, fill=colour))
        parts.append(el("text", label, x=legend_x + 14, y=height - 8, font_size=10))
        legend_x += 14 + 6 * len(label) + 16
    return el(
        "svg",
        join(parts),
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        role="img",
        font_family="system-ui, sans-serif",
        data_testid="memory-svg",
    )


__all__ = ["MAX_INLINE_RUNS", "confusion_table", "memory_svg", "run_html", "run_id_of", "runs_html"]
