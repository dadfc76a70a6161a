"""Interactive Bokeh charts, built from the DataFrames of :mod:`mlt_dashboard.queries`.

Pure functions: data in, a Bokeh model out. The served pages put them in
``pn.pane.Bokeh`` and the export embeds them standalone, so nothing here
imports Panel or uses ``CustomJS`` (the export's CSP allows no ``eval``).
Every number a person reads (hover, labels) is formatted by ``mlt_kernel.core.units``.

Stored names are data here too (see ``markup``): tooltips take them only as
``@column`` fields (a tooltip template is HTML), titles, axis labels and
``Label`` text are plain text (never TeX), and long names are cut for display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LinearAxis, LinearColorMapper, Range1d
from bokeh.models.annotations import BoxAnnotation, Label, LabelSet, Span, Title
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import dodge

from mlt_dashboard.markup import plain, short
from mlt_dashboard.ranking import LOWER_IS_BETTER, is_missing, pareto_front
from mlt_dashboard.style import STATUS_COLOURS
from mlt_kernel.core.units import format_bytes, format_metric, format_seconds

#: Run colours (Tableau 10): the n-th run of the experiment always gets the n-th colour.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
GiB = 1024**3

#: The costs a metric can be plotted against: label -> (column, formatter, axis scale, axis label).
COSTS: dict[str, tuple[str, Any, float, str]] = {
    "wall time": ("wall_s", format_seconds, 1.0, "wall time (s)"),
    "CPU time": ("cpu_s", format_seconds, 1.0, "CPU time (s)"),
    "peak RAM": ("peak_rss_bytes", format_bytes, GiB, "peak RAM (GiB)"),
    "peak GPU": ("peak_gpu_bytes", format_bytes, GiB, "peak GPU memory (GiB)"),
}


def run_colours(run_ids: Sequence[str]) -> dict[str, str]:
    """Colour per run id, in the order the runs started (stable across pages)."""
    return {run_id: PALETTE[i % len(PALETTE)] for i, run_id in enumerate(run_ids)}


def run_labels(runs: pd.DataFrame) -> list[str]:
    """Unique display labels: the run name (cut when long), suffixed ``#2``… when labels repeat."""
    return _unique([short(name, 60) for name in runs["name"].fillna("(unnamed)").astype(str)], "{} #{}")


def _hover(renderers: list[Any], rows: Sequence[tuple[str, str]], **kwargs: Any) -> HoverTool:
    """A hover tool whose values are columns of the data source, never text put into the template.

    Bokeh shows a tooltip's label as text but parses its value as HTML; ``@{column}``
    values are escaped. A value starting with ``$`` is one of Bokeh's own
    variables (``$x``), written here, not taken from the folder.
    """
    tooltips = [(label, field if field.startswith("$") else f"@{{{field}}}") for label, field in rows]
    return HoverTool(renderers=renderers, tooltips=tooltips, **kwargs)


def _title(p: figure) -> Title:
    """The title model of *p*: ``figure`` always makes one (the property also admits text or None)."""
    return cast(Title, p.title)


def _figure(height: int = 300, **kwargs: Any) -> Any:
    kwargs.setdefault("tools", "pan,wheel_zoom,box_zoom,reset,save")
    kwargs.setdefault("toolbar_location", "right")
    title = kwargs.pop("title", None)
    x_label = kwargs.pop("x_axis_label", None)
    y_label = kwargs.pop("y_axis_label", None)
    p = figure(height=height, sizing_mode="stretch_width", **kwargs)
    if title:
        _title(p).text = plain(title)
    if x_label:
        p.xaxis.axis_label = plain(x_label)
    if y_label:
        p.yaxis.axis_label = plain(y_label)
    p.toolbar.logo = None
    p.toolbar.autohide = True
    p.outline_line_color = None
    p.grid.grid_line_color = "#e8e8e8"
    p.axis.axis_line_color = "#999999"
    p.axis.major_tick_line_color = "#999999"
    p.axis.minor_tick_line_color = None
    p.axis.major_label_text_font_size = "11px"
    _title(p).text_font_size = "13px"
    _title(p).text_font_style = "bold"
    return p


# -- summary ------------------------------------------------------------------------


def metrics_chart(runs: pd.DataFrame, metrics: Sequence[str], colours: Mapping[str, str], title: str = "") -> Any:
    """Lollipops: for each metric, one dot per run (zoomed on the values, not on 0–1)."""
    present = [m for m in metrics if m in runs]
    if present:
        runs = runs[runs[present].notna().any(axis=1)]
    labels = run_labels(runs)
    factors = [(short(m, 40), lab) for m in metrics for lab in labels]
    rows = []
    for m in metrics:
        for lab, (_, run) in zip(labels, runs.iterrows(), strict=True):
            value = run.get(m)
            if value is None or pd.isna(value):
                continue
            rows.append(
                {
                    "y": (short(m, 40), lab),
                    "value": float(value),
                    "text": format_metric(value),
                    "metric": m,
                    "run": lab,
                    "colour": colours.get(run["run_id"], PALETTE[0]),
                }
            )
    data = pd.DataFrame(rows, columns=["y", "value", "text", "metric", "run", "colour"])
    lo = float(data["value"].min()) if not data.empty else 0.0
    hi = float(data["value"].max()) if not data.empty else 1.0
    pad = max((hi - lo) * 0.15, 0.01)
    start = max(lo - pad, 0.0) if lo >= 0 else lo - pad
    p = _figure(
        height=max(220, 18 * len(factors) + 60),
        y_range=FactorRange(factors=list(reversed(factors))),
        x_range=Range1d(start=start, end=hi + pad),
        title=title or "Metrics per run",
        name="metrics-per-run",
    )
    data["start"] = start
    src = ColumnDataSource(data)
    p.segment(x0="start", y0="y", x1="value", y1="y", source=src, line_color="colour", line_width=2, line_alpha=0.6)
    dots = p.scatter(x="value", y="y", source=src, size=10, fill_color="colour", line_color="white")
    p.add_layout(
        LabelSet(
            x="value",
            y="y",
            text="text",
            source=src,
            x_offset=8,
            y_offset=-7,
            text_font_size="10px",
            text_color="#555555",
        )
    )
    p.add_tools(_hover([dots], [("run", "run"), ("metric", "metric"), ("value", "text")]))
    p.yaxis.group_text_font_size = "12px"
    p.yaxis.group_text_font_style = "bold"
    p.yaxis.major_label_text_font_size = "10px"
    p.ygrid.grid_line_color = None
    return p


def time_chart(runs: pd.DataFrame, colours: Mapping[str, str]) -> Any:
    """Wall and CPU time per run, side by side."""
    return _paired_bars(
        runs,
        colours,
        [("wall", "wall_s", format_seconds, 1.0), ("CPU", "cpu_s", format_seconds, 1.0)],
        "Time per run",
        "seconds",
        "time-per-run",
    )


def memory_chart(runs: pd.DataFrame, colours: Mapping[str, str]) -> Any:
    """Peak RAM and peak GPU memory per run."""
    return _paired_bars(
        runs,
        colours,
        [("RAM", "peak_rss_bytes", format_bytes, GiB), ("GPU", "peak_gpu_bytes", format_bytes, GiB)],
        "Peak memory per run",
        "GiB",
        "memory-per-run",
    )


def _paired_bars(
    runs: pd.DataFrame,
    colours: Mapping[str, str],
    series: list[tuple[str, str, Any, float]],
    title: str,
    unit: str,
    name: str,
) -> Any:
    """Two bars per run (solid, then light), the run names on the y axis."""
    labels = run_labels(runs)
    p = _figure(
        height=max(180, 38 * len(labels) + 70),
        y_range=FactorRange(factors=list(reversed(labels))),
        title=title,
        x_axis_label=unit,
        name=name,
    )
    top = 0.0
    offsets = (0.19, -0.19)  # the first series on top
    for (name, column, fmt, scale), offset, alpha in zip(series, offsets, (1.0, 0.45), strict=False):
        values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series([math.nan] * len(runs))
        data = pd.DataFrame(
            {
                "run": labels,
                "value": (values / scale).fillna(0.0).to_numpy(dtype=float),
                "text": [f"{name} {fmt(None if pd.isna(v) else v)}" for v in values],
                "colour": [colours.get(r, PALETTE[0]) for r in runs["run_id"]],
            }
        )
        top = max(top, float(data["value"].max()) if len(data) else 0.0)
        src = ColumnDataSource(data)
        bars = p.hbar(
            y=dodge("run", offset, range=p.y_range),
            right="value",
            height=0.36,
            source=src,
            fill_color="colour",
            fill_alpha=alpha,
            line_color=None,
            legend_label=name,
        )
        p.add_layout(
            LabelSet(
                x="value",
                y=dodge("run", offset, range=p.y_range),
                text="text",
                source=src,
                x_offset=4,
                y_offset=-6,
                text_font_size="10px",
                text_color="#555555",
            )
        )
        p.add_tools(_hover([bars], [("run", "run"), ("", "text")]))
    p.x_range = Range1d(start=0, end=(top or 1.0) * 1.45)
    style_bars(p)
    return p


def style_bars(p: Any) -> None:
    """The look of a horizontal bar chart: legend bottom right, no grid lines across the bars."""
    p.legend.location = "bottom_right"
    p.legend.label_text_font_size = "11px"
    p.legend.background_fill_alpha = 0.7
    p.yaxis.major_label_text_font_size = "11px"
    p.ygrid.grid_line_color = None


def pareto_chart(runs: pd.DataFrame, metric: str, cost: str, colours: Mapping[str, str]) -> Any:
    """*metric* against *cost* per run, the Pareto front drawn and its runs named."""
    column, fmt, scale, axis_label = COSTS[cost]
    lower = metric in LOWER_IS_BETTER
    labels = run_labels(runs)
    data = pd.DataFrame(
        {
            "x": pd.to_numeric(runs.get(column), errors="coerce") / scale if column in runs else np.nan,
            "y": pd.to_numeric(runs[metric], errors="coerce") if metric in runs else np.nan,
            "run": labels,
            "colour": [colours.get(r, PALETTE[0]) for r in runs["run_id"]],
            "cost_text": [fmt(v) for v in runs[column]] if column in runs else "—",
            "value_text": [format_metric(v) for v in runs[metric]] if metric in runs else "—",
        }
    ).dropna(subset=["x", "y"])
    better = "lower" if lower else "higher"
    name = short(metric, 40)
    p = _figure(
        height=340,
        title=f"{name} vs {cost} — {better} {name} and less {cost} is better",
        x_axis_label=axis_label,
        y_axis_label=name,
        name="pareto",
    )
    front = pareto_front(list(data["x"]), list(data["y"]), lower_is_better=lower)
    data["front"] = False
    if front:
        data.iloc[front, data.columns.get_loc("front")] = True
        f = data.iloc[front]
        p.step(
            x=list(f["x"]),
            y=list(f["y"]),
            mode="after",
            line_color="#333333",
            line_dash="dashed",
            line_width=1.5,
            legend_label="Pareto front",
        )
    if len(data):
        x0, x1 = float(data["x"].min()), float(data["x"].max())
        y0, y1 = float(data["y"].min()), float(data["y"].max())
        dx, dy = (x1 - x0) or abs(x1) or 1.0, (y1 - y0) or abs(y1) or 1.0
        p.x_range = Range1d(start=x0 - 0.08 * dx, end=x1 + 0.25 * dx)
        p.y_range = Range1d(start=y0 - 0.1 * dy, end=y1 + 0.12 * dy)
    src = ColumnDataSource(data)
    dots = p.scatter(x="x", y="y", source=src, size=13, fill_color="colour", line_color="#333333", line_width=0.5)
    named = ColumnDataSource(data[data["front"]] if len(data) > 12 else data)
    p.add_layout(LabelSet(x="x", y="y", text="run", source=named, x_offset=8, y_offset=4, text_font_size="11px"))
    p.add_tools(_hover([dots], [("run", "run"), (short(metric, 40), "value_text"), (cost, "cost_text")]))
    if p.legend:
        p.legend.location = "bottom_right" if not lower else "top_right"
        p.legend.label_text_font_size = "11px"
    return p


def parallel_chart(runs: pd.DataFrame, metric: str) -> Any | None:
    """Parallel coordinates: each run a line through its params, ending at *metric*.

    Params that never vary are left out (they explain nothing); text values get
    evenly spaced positions. None when no param varies.
    """
    params = pd.DataFrame(list(runs["params"]), index=runs.index) if len(runs) else pd.DataFrame()
    axes: list[tuple[str, list[float], list[tuple[float, str]]]] = []
    for name in params.columns:
        col = params[name]
        present = [v for v in col if not is_missing(v)]
        # A param that only one run has, or that never varies, explains nothing.
        if len(present) < 2 or len({_hashable(v) for v in present}) < 2:
            continue
        axes.append((name, *_axis(col)))
    if not axes or metric not in runs:
        return None
    axes.append((metric, *_axis(runs[metric], fmt=format_metric)))
    xs = list(range(len(axes)))
    lines: dict[str, list[Any]] = {"xs": [], "ys": [], "run": [], "value": [], "text": []}
    for i, (_, run) in enumerate(runs.iterrows()):
        lines["xs"].append(xs)
        lines["ys"].append([a[1][i] for a in axes])
        value = run.get(metric)
        lines["run"].append(short(run["name"]))
        lines["value"].append(float(value) if value is not None and not pd.isna(value) else math.nan)
        lines["text"].append(format_metric(value))
    values = [v for v in lines["value"] if not math.isnan(v)]
    # Viridis without its pale yellow end, which vanishes on white.
    palette = Viridis256[:215] if metric not in LOWER_IS_BETTER else tuple(reversed(Viridis256[:215]))
    mapper = LinearColorMapper(
        palette=palette, low=min(values, default=0), high=max(values, default=1), nan_color="#cccccc"
    )
    name = short(metric, 40)
    p = _figure(
        height=320,
        title=f"Params against {name} (colour: {name}; — no value)",
        x_range=Range1d(start=-0.3, end=len(axes) - 0.7),
        y_range=Range1d(start=-0.12, end=1.1),
        tools="reset,save",
        name="parallel-coordinates",
    )
    for x in xs:
        p.add_layout(Span(location=x, dimension="height", line_color="#999999", line_width=1))
    ml = p.multi_line(
        xs="xs",
        ys="ys",
        source=ColumnDataSource(lines),
        line_width=3,
        line_alpha=0.8,
        line_color={"field": "value", "transform": mapper},
        hover_line_width=5,
        hover_line_alpha=1.0,
    )
    p.add_tools(_hover([ml], [("run", "run"), (name, "text")], line_policy="interp"))
    ticks: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    for x, (name, _, tick_list) in zip(xs, axes, strict=True):
        p.add_layout(
            Label(
                x=x,
                y=1.04,
                text=plain(short(name, 30)),
                text_align="center",
                text_font_size="12px",
                text_font_style="bold",
            )
        )
        for y, text in tick_list:
            ticks["x"].append(x)
            ticks["y"].append(y)
            ticks["text"].append(text)
    p.add_layout(
        LabelSet(
            x="x",
            y="y",
            text="text",
            source=ColumnDataSource(ticks),
            x_offset=5,
            y_offset=-5,
            text_font_size="10px",
            text_color="#555555",
        )
    )
    p.axis.visible = False
    p.grid.visible = False
    return p


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _axis(col: pd.Series, fmt: Any = None) -> tuple[list[float], list[tuple[float, str]]]:
    """Positions in [0, 1] for the values of *col* (missing ones just below 0), and the ticks to label."""
    values = list(col)
    present = [v for v in values if not is_missing(v)]
    missing = len(present) < len(values)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        lo, hi = float(min(present)), float(max(present))
        span = hi - lo or 1.0
        show = fmt or _short_number
        ticks = [(0.0, show(lo)), (1.0, show(hi))] if hi != lo else [(0.0, show(lo))]
        pos = [-0.08 if is_missing(v) else (float(v) - lo) / span for v in values]
    else:
        names = sorted({str(v) for v in present})
        step = 1.0 / max(len(names) - 1, 1)
        where = {n: i * step for i, n in enumerate(names)}
        ticks = [(where[n], short(n, 30)) for n in names]
        pos = [-0.08 if is_missing(v) else where[str(v)] for v in values]
    if missing:
        ticks.append((-0.08, "—"))
    return pos, ticks


def _short_number(value: float) -> str:
    return f"{value:g}"


# -- one run ------------------------------------------------------------------------


def timeline_chart(
    timeline: pd.DataFrame,
    cells: pd.DataFrame,
    run_started: Any,
    *,
    killed: Mapping[str, Any] | None = None,
    guard: float | None = None,
) -> Any:
    """Memory (RSS, children, GPU) and CPU % over the run, its cells shaded and labelled ``[n]``.

    Where the memory guard watched the run, the memory limit and the guard's
    threshold (*guard*, a share of the limit) are drawn, and a cell it stopped
    is marked at the reading that stopped it.
    """
    p = _figure(
        height=340,
        title="Memory over time",
        x_axis_label="seconds since the run started",
        y_axis_label="GiB",
        name="memory-timeline",
    )
    df = timeline.copy()
    for col in ("rss_bytes", "children_rss_bytes", "gpu_bytes"):
        df[col.replace("_bytes", "_gib")] = pd.to_numeric(df[col], errors="coerce").astype(float) / GiB
        df[col.replace("_bytes", "_text")] = [format_bytes(None if pd.isna(v) else v) for v in df[col]]
    df["cpu_percent"] = pd.to_numeric(df["cpu_percent"], errors="coerce").astype(float)
    df["t_text"] = [format_seconds(v) for v in df["t"]]
    df["cpu_text"] = [f"{v:.0f} %" if not pd.isna(v) else "—" for v in df["cpu_percent"]]
    src = ColumnDataSource(df)
    top = (
        float(np.nanmax(df[["rss_gib", "gpu_gib"]].to_numpy(dtype=float)))
        if len(df) and df[["rss_gib", "gpu_gib"]].notna().any().any()
        else 1.0
    )
    limits = pd.to_numeric(cells["memory_limit_bytes"], errors="coerce").dropna() if len(cells) else pd.Series()
    limit = float(limits.min()) if len(limits) else None  # the tightest the run met
    if limit is not None:
        top = max(top, limit / GiB)
    p.y_range = Range1d(start=0, end=top * 1.22 or 1.0)
    p.tags = [{"y_end": p.y_range.end}]  # the end we chose: a different one is the reader's zoom
    start = pd.Timestamp(run_started)
    if limit is not None:
        _limit_lines(p, limit, guard)
    for i, cell in enumerate(cells.itertuples()):
        c0 = (pd.Timestamp(cell.started_at) - start).total_seconds()
        end = cell.ended_at if not pd.isna(cell.ended_at) else None
        c1 = (pd.Timestamp(end) - start).total_seconds() if end is not None else c0 + (cell.wall_s or 0)
        colour = "#b0182b" if cell.status == "killed" else ("#e15759" if cell.status == "error" else "#4e79a7")
        p.add_layout(
            BoxAnnotation(
                left=c0, right=c1, fill_color=colour, fill_alpha=0.06 if i % 2 == 0 else 0.11, line_color=None
            )
        )
        n = cell.execution_count if not pd.isna(cell.execution_count) else cell.cell_seq
        p.add_layout(
            Label(x=c0, y=top * 1.12, text=f"[{int(n)}]", x_offset=3, text_font_size="11px", text_color="#555555")
        )
    rss = p.line("t", "rss_gib", source=src, line_width=2, color="#4e79a7", legend_label="RSS (kernel + children)")
    p.line("t", "children_rss_gib", source=src, line_width=1.5, color="#f28e2b", legend_label="children RSS")
    if df["gpu_gib"].notna().any():
        p.line("t", "gpu_gib", source=src, line_width=2, color="#59a14f", legend_label="GPU memory")
    if df["cpu_percent"].notna().any():
        cpu_top = max(float(df["cpu_percent"].max()), 100.0) * 1.15
        p.extra_y_ranges = {"cpu": Range1d(start=0, end=cpu_top)}
        p.add_layout(
            LinearAxis(
                y_range_name="cpu",
                axis_label="CPU %",
                axis_line_color="#bbbbbb",
                major_label_text_font_size="11px",
                minor_tick_line_color=None,
            ),
            "right",
        )
        p.line(
            "t",
            "cpu_percent",
            source=src,
            y_range_name="cpu",
            line_width=1,
            color="#bab0ac",
            line_alpha=0.8,
            legend_label="CPU % (right axis)",
        )
    p.add_tools(
        _hover(
            [rss],
            [
                ("time", "t_text"),
                ("RSS", "rss_text"),
                ("children", "children_rss_text"),
                ("GPU", "gpu_text"),
                ("CPU", "cpu_text"),
            ],
            mode="vline",
        )
    )
    if len(df) and df["rss_gib"].notna().any():
        peak = df.loc[df["rss_gib"].idxmax()]
        p.scatter([peak["t"]], [peak["rss_gib"]], size=9, color="#4e79a7", line_color="white")
        p.add_layout(
            Label(
                x=peak["t"],
                y=peak["rss_gib"],
                text=f"peak {peak['rss_text']}",
                x_offset=6,
                y_offset=4,
                text_font_size="11px",
                text_font_style="bold",
                text_color="#4e79a7",
            )
        )
    _guard_stops(p, cells, start)
    if killed is not None and len(df):
        last = df.iloc[-1]
        p.scatter([last["t"]], [last["rss_gib"]], size=11, color="#b0182b", marker="x", line_width=3)
        cause = short(killed.get("cause") or "unknown cause", 60)
        p.add_layout(
            Label(
                x=last["t"],
                y=last["rss_gib"],
                text=plain(f"killed: {cause}, last reading {last['rss_text']}"),
                x_offset=-10,
                y_offset=-22,
                text_align="right",
                text_font_size="11px",
                text_font_style="bold",
                text_color="#b0182b",
            )
        )
    legend = p.legend[0]
    legend.orientation = "horizontal"
    legend.label_text_font_size = "11px"
    legend.click_policy = "hide"
    legend.border_line_color = None
    p.center = [r for r in p.center if r is not legend]
    p.add_layout(legend, "above")
    return p


def update_in_place(old: Any, new: Any) -> bool:
    """Give the shown figure *old* the data and annotations of *new*, built the same way from newer data.

    The renderers, their hover tools and the ranges stay the same models, so
    the reader's zoom and pan stay (a replaced figure starts over), and new points
    arrive as a stream where the old ones are a prefix. Returns False, changing
    nothing, when *new* is drawn differently (another line, another axis): the
    caller shows *new* instead.
    """
    pairs = list(zip(old.renderers, new.renderers, strict=False))
    if (
        len(old.renderers) != len(new.renderers)
        or any(type(a.glyph) is not type(b.glyph) for a, b in pairs)
        or set(old.extra_y_ranges) != set(new.extra_y_ranges)
    ):
        return False
    for a, b in pairs:
        _move_data(a.data_source, b.data_source)
    keep = [m for m in old.center if not isinstance(m, BoxAnnotation | Label | Span)]
    old.center = keep + [m for m in new.center if isinstance(m, BoxAnnotation | Label | Span)]
    for m in list(new.center):  # out of the new figure: a model lives in one place
        new.center.remove(m)
    chosen = old.tags[0].get("y_end") if old.tags and isinstance(old.tags[0], dict) else None
    if chosen is not None and isinstance(old.y_range, Range1d) and old.y_range.end == chosen and new.tags:
        old.y_range.end = new.tags[0]["y_end"]  # the reader has not zoomed: follow the data
        old.tags = list(new.tags)
    return True


def _move_data(old: ColumnDataSource, new: ColumnDataSource) -> None:
    """*old* gets *new*'s columns: the rows added, as a stream, when the old rows are unchanged."""
    a, b = old.data, new.data
    if set(a) == set(b):
        n = len(next(iter(a.values()), []))
        m = len(next(iter(b.values()), []))
        if m >= n and all(_same_prefix(a[k], b[k], n) for k in a):
            if m > n:
                old.stream({k: list(b[k][n:]) for k in b})
            return
    old.data = dict(b)


def _same_prefix(a: Any, b: Any, n: int) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b[:n], dtype=object)))
    except (TypeError, ValueError):
        return False


def _limit_lines(p: Any, limit: float, guard: float | None) -> None:
    """The memory limit, and the memory guard's threshold below it."""
    lines = [(limit, "#b0182b", "dashed", f"memory limit {format_bytes(limit)}")]
    if guard is not None and 0 < guard < 1:
        lines.append((guard * limit, "#f28e2b", "dotted", f"memory guard {100 * guard:.0f} %"))
    for value, colour, dash, text in lines:
        p.add_layout(Span(location=value / GiB, dimension="width", line_color=colour, line_dash=dash, line_width=1.5))
        p.add_layout(
            Label(
                x=6,
                x_units="screen",
                y=value / GiB,
                text=plain(text),
                y_offset=3,
                text_font_size="11px",
                text_color=colour,
            )
        )


def _guard_stops(p: Any, cells: pd.DataFrame, start: pd.Timestamp) -> None:
    """A mark where the memory guard stopped a cell, at the reading that stopped it."""
    if not len(cells) or "guard_rss_bytes" not in cells:
        return
    stopped = cells[pd.to_numeric(cells["guard_rss_bytes"], errors="coerce").notna() & cells["guard_at"].notna()]
    for cell in stopped.itertuples():
        x = (pd.Timestamp(cell.guard_at) - start).total_seconds()
        y = float(cell.guard_rss_bytes) / GiB
        p.scatter([x], [y], size=12, color="#f28e2b", marker="triangle", line_color="white")
        p.add_layout(
            Label(
                x=x,
                y=y,
                text=plain(f"stopped by the memory guard at {format_bytes(cell.guard_rss_bytes)}"),
                x_offset=-10,
                y_offset=8,
                text_align="right",
                text_font_size="11px",
                text_font_style="bold",
                text_color="#c46a00",
            )
        )


def training_charts(steps: pd.DataFrame) -> list[Any]:
    """Training curves: losses in one chart, everything else in another (steps on x)."""
    if steps.empty:
        return []
    names = list(dict.fromkeys(steps["name"]))
    # Legend entries are keyed by their label: two names cut alike must stay two entries.
    legends = dict(zip(names, _unique([short(n, 60) for n in names]), strict=True))
    groups = [
        ("Losses", [n for n in names if "loss" in n.lower()]),
        ("Other metrics", [n for n in names if "loss" not in n.lower()]),
    ]
    charts = []
    for title, group in groups:
        if not group:
            continue
        p = _figure(
            height=280, title=title, x_axis_label="step", name=f"training-{'losses' if title == 'Losses' else 'other'}"
        )
        for i, name in enumerate(group):
            d = steps[steps["name"] == name].copy()
            d["text"] = [format_metric(v) for v in d["value"]]
            d["metric"] = name
            colour = PALETTE[(i + (0 if title == "Losses" else 4)) % len(PALETTE)]
            src = ColumnDataSource(d)
            legend = legends[name]
            r = p.line("step", "value", source=src, line_width=2, color=colour, legend_label=legend)
            p.scatter("step", "value", source=src, size=4, color=colour, legend_label=legend)
            p.add_tools(_hover([r], [("metric", "metric"), ("step", "step"), ("value", "text")]))
        p.legend.click_policy = "hide"
        p.legend.label_text_font_size = "11px"
        p.legend.location = "top_right" if title == "Losses" else "bottom_right"
        charts.append(p)
    return charts


def confusion_chart(
    labels: Sequence[str], matrix: Sequence[Sequence[int]], normalized: bool, split: str = "test"
) -> Any:
    """A confusion-matrix heatmap: rows true, columns predicted; hover gives counts and rates."""
    m = np.asarray(matrix, dtype=float).reshape(len(labels), len(labels)) if labels else np.zeros((0, 0))
    row_tot = m.sum(axis=1, keepdims=True)
    col_tot = m.sum(axis=0, keepdims=True)
    row_rate = np.divide(m, row_tot, out=np.zeros_like(m), where=row_tot > 0)
    col_rate = np.divide(m, col_tot, out=np.zeros_like(m), where=col_tot > 0)
    labs = _unique([short(x, 40) for x in labels])
    rows = []
    for i, t in enumerate(labels):
        for j, pr in enumerate(labels):
            rows.append(
                {
                    "true": labs[i],
                    "pred": labs[j],
                    "true_label": str(t),
                    "pred_label": str(pr),
                    "count": int(m[i, j]),
                    "rate": float(row_rate[i, j]),
                    "row_text": f"{row_rate[i, j]:.1%}",
                    "col_text": f"{col_rate[i, j]:.1%}",
                    "text": f"{row_rate[i, j]:.2f}" if normalized else f"{int(m[i, j])}",
                    "text_colour": "white" if row_rate[i, j] > 0.55 else "#1f2328",
                }
            )
    columns = [
        "true",
        "pred",
        "true_label",
        "pred_label",
        "count",
        "rate",
        "row_text",
        "col_text",
        "text",
        "text_colour",
    ]
    src = ColumnDataSource(pd.DataFrame(rows, columns=columns))
    size = min(max(300, 120 + 80 * len(labs)), 560)
    p = figure(
        height=size,
        width=size + 90,
        x_range=FactorRange(factors=list(labs)),
        y_range=FactorRange(factors=list(reversed(labs))),
        tools="save",
        toolbar_location=None,
        x_axis_label="predicted",
        y_axis_label="true",
        name="confusion-matrix",
    )
    _title(p).text = plain(
        f"Confusion matrix · {short(split, 40)} · {'normalised by true class' if normalized else 'counts'}"
    )
    _title(p).text_font_size = "13px"
    mapper = LinearColorMapper(palette=tuple(reversed(_blues())), low=0, high=1)
    cells = p.rect(
        x="pred",
        y="true",
        width=0.96,
        height=0.96,
        source=src,
        line_color=None,
        fill_color={"field": "rate", "transform": mapper},
    )
    p.text(
        x="pred",
        y="true",
        text="text",
        source=src,
        text_align="center",
        text_baseline="middle",
        text_font_size="15px",
        text_font_style="bold",
        text_color="text_colour",
    )
    p.add_tools(
        _hover(
            [cells],
            [
                ("true", "true_label"),
                ("predicted", "pred_label"),
                ("count", "count"),
                ("share of its true class", "row_text"),
                ("share of its predicted class", "col_text"),
            ],
        )
    )
    p.grid.visible = False
    p.axis.major_label_text_font_size = "12px"
    p.axis.axis_line_color = None
    p.axis.major_tick_line_color = None
    p.outline_line_color = None
    return p


def _blues() -> tuple[str, ...]:
    from bokeh.palettes import Blues256

    return Blues256


def curve_chart(curves: pd.DataFrame, kind: str) -> Any:
    """ROC (``kind="roc"``) or precision-recall curves, with the area in the legend."""
    roc = kind == "roc"
    p = _figure(
        height=320,
        title="ROC curve" if roc else "Precision-recall curve",
        x_axis_label="false positive rate" if roc else "recall",
        y_axis_label="true positive rate" if roc else "precision",
        x_range=Range1d(start=-0.02, end=1.02),
        y_range=Range1d(start=-0.02, end=1.04),
        name=f"{kind}-curve",
    )
    if roc:
        p.line([0, 1], [0, 1], line_dash="dashed", color="#aaaaaa")
    area = "AUC" if roc else "AP"
    for i, row in enumerate(curves[curves["kind"] == kind].itertuples()):
        colour = PALETTE[i % len(PALETTE)]
        curve = f"{row.split} · class {row.label} — {area} {format_metric(row.auc)}"
        src = ColumnDataSource({"x": list(row.x), "y": list(row.y), "curve": [curve] * len(row.x)})
        legend = f"{short(row.split, 30)} · class {short(row.label, 30)} — {area} {format_metric(row.auc)}"
        r = p.line("x", "y", source=src, line_width=2.5, color=colour, legend_label=legend)
        p.add_tools(_hover([r], [("curve", "curve"), ("x", "$x{0.000}"), ("y", "$y{0.000}")]))
    if p.legend:
        p.legend.location = "bottom_right" if roc else "bottom_left"
        p.legend.label_text_font_size = "11px"
        p.legend.click_policy = "hide"
    return p


# -- cells --------------------------------------------------------------------------


def heaviest_chart(ledger: pd.DataFrame, by: str, n: int = 10) -> Any:
    """The *n* heaviest cells by ``wall_s`` or ``peak_rss_bytes``, errors and killed cells in red."""
    time_axis = by == "wall_s"
    d = ledger.dropna(subset=[by]).nlargest(n, by).copy()
    d["label"] = [
        " ".join(
            part
            for part in (
                f"[{int(r.execution_count) if not pd.isna(r.execution_count) else r.cell_seq}]",
                short(r.run_name, 40) if isinstance(r.run_name, str) else "",
                f"· session …{str(r.session_id)[-4:]}",
            )
            if part
        )
        for r in d.itertuples()
    ]
    d["label"] = _unique(list(d["label"]))
    d["value"] = d[by].astype(float) / (1.0 if time_axis else GiB)
    fmt = format_seconds if time_axis else format_bytes
    d["text"] = [fmt(v) for v in d[by]]
    d["colour"] = [
        STATUS_COLOURS.get(s, "#4e79a7") if s in ("error", "killed", "interrupted") else "#4e79a7" for s in d["status"]
    ]
    d["status_text"] = d["status"].fillna("")
    p = _figure(
        height=max(180, 26 * len(d) + 60),
        y_range=FactorRange(factors=list(reversed(list(d["label"])))),
        title="Heaviest cells by " + ("wall time" if time_axis else "peak RAM"),
        x_axis_label="seconds" if time_axis else "GiB",
        name=f"heaviest-{by}",
    )
    p.x_range = Range1d(start=0, end=(float(d["value"].max()) if len(d) else 1.0) * 1.18 or 1.0)
    src = ColumnDataSource(d[["label", "value", "text", "colour", "status_text"]])
    bars = p.hbar(y="label", right="value", height=0.75, source=src, fill_color="colour", line_color=None)
    p.add_layout(
        LabelSet(
            x="value",
            y="label",
            text="text",
            source=src,
            x_offset=4,
            y_offset=-6,
            text_font_size="10px",
            text_color="#555555",
        )
    )
    p.add_tools(_hover([bars], [("cell", "label"), ("value", "text"), ("status", "status_text")]))
    p.ygrid.grid_line_color = None
    return p


def _unique(labels: list[str], pattern: str = "{} ({})") -> list[str]:
    """*labels* made distinct: a repeated label gets its count (``pattern`` of the label and the count)."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else pattern.format(lab, seen[lab]))
    return out
