"""``mlt-dashboard PATH --export FILE.html``: the whole report in one offline file.

Summary, each run's charts, confusion matrices, plots, notes, the cell ledger
and the documents, with every resource inlined: BokehJS itself, the charts'
data, plots as ``data:`` URIs. The page carries a Content-Security-Policy that
allows exactly the scripts written here (by their SHA-256 hashes) and no fetch
at all, so markup that slipped past the sanitiser still could not run or phone
home. Notes and documents go through ``mlt_kernel.render`` (sanitised); every
other value from the folder is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from bokeh.embed import components
from bokeh.resources import Resources

from mlt_kernel.documents import Document
from mlt_kernel.experiment import Experiment
from mlt_kernel.units import format_bytes, format_metric, format_seconds

from . import charts, style
from .fragments import RunData, default_metric, header_html, killed_html, ledger_frame, post_mortem, summary_cards
from .notes import plots_with_notes
from .queries import LOWER_IS_BETTER, Source, metric_columns

#: Runs that get a section of their own (the best ones by the summary metric); all are in the table.
MAX_RUN_SECTIONS = 200
#: Rows of the cell ledger in the report (heaviest first).
MAX_LEDGER_ROWS = 500

_REPORT_CSS = """
body { margin: 0; background: #fff; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 82rem; margin: 0 auto; padding: 1.2rem 1.5rem 4rem; }
h1 { font-size: 1.6rem; margin: 0.2rem 0; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.25rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1rem; margin: 1.4rem 0 0.4rem; }
nav.toc { font-size: 0.92rem; margin: 0.6rem 0 1rem; }
nav.toc a { margin-right: 0.9rem; color: #0969da; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(30rem, 1fr)); gap: 1rem; }
.grid3 { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 1rem; align-items: start; }
table.mlt-table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; width: 100%; }
table.mlt-table th, table.mlt-table td { border-bottom: 1px solid #e5e7eb; padding: 0.3rem 0.55rem; text-align: left;
  white-space: nowrap; }
table.mlt-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.mlt-table th { background: #f6f8fa; position: sticky; top: 0; }
.scroll { overflow-x: auto; max-height: 36rem; overflow-y: auto; }
section.run { border-top: 3px solid #4e79a7; margin-top: 2.5rem; padding-top: 0.4rem; }
.doc { border: 1px solid #d0d7de; border-radius: 8px; padding: 0.4rem 1.4rem 1rem; margin: 1rem 0; }
figure.mlt-plot { margin: 1em 0; }
@media print { .scroll { max-height: none; overflow: visible; } section.run { break-before: page; } }
"""


class Charts:
    """Collects Bokeh models and hands out the placeholder ``<div>`` of each."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    def add(self, model: Any) -> str:
        key = f"c{len(self.models)}"
        self.models[key] = model
        return f"<!--chart:{key}-->"

    def render(self, body: str) -> tuple[str, list[str]]:
        """*body* with the charts' divs in place, and the scripts to put in the page."""
        if not self.models:
            return body, []
        script, divs = components(self.models, wrap_script=False)
        for key, div in divs.items():
            body = body.replace(f"<!--chart:{key}-->", f'<div class="chart">{div}</div>')
        js = Resources(mode="inline", components=["bokeh"]).js_raw
        return body, [*js, script]


def _csp(scripts: Sequence[str]) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    allowed = hashes or "'none'"
    return (
        f"default-src 'none'; script-src {allowed}; style-src 'unsafe-inline'; img-src data:; "
        "font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def _page(title: str, body: str, scripts: Sequence[str]) -> str:
    tags = "".join(f"<script>{s}</script>\n" for s in scripts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(scripts)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{style.CSS}{_REPORT_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n{tags}</body>\n</html>\n"
    )


# -- sections -------------------------------------------------------------------------


def _runs_table(runs: pd.DataFrame) -> str:
    metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
    head = ["run", "status", *metrics, "wall", "CPU", "peak RAM", "peak GPU", "params", "started"]
    rows = []
    for i, r in runs.iterrows():
        cells = [f'<td><a href="#run-{i}">{escape(str(r["name"]))}</a></td>', f"<td>{style.badge(r['status'])}</td>"]
        cells += [f'<td class="num">{format_metric(r[m])}</td>' for m in metrics]
        cells += [f'<td class="num">{escape(v)}</td>' for v in (format_seconds(r["wall_s"]), format_seconds(r["cpu_s"]),
                                                               format_bytes(r["peak_rss_bytes"]), format_bytes(r["peak_gpu_bytes"]))]  # fmt: skip
        cells.append(f"<td>{escape(style.params_text(r['params']))}</td>")
        started = r["started_at"].strftime("%Y-%m-%d %H:%M") if not pd.isna(r["started_at"]) else ""
        cells.append(f"<td>{escape(started)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<div class="scroll"><table class="mlt-table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _summary(source: Source, runs: pd.DataFrame, out: Charts) -> str:
    if runs.empty:
        return style.empty("No runs yet", "Tag a cell with <code># mlt: record name=…</code> to make it a run.")
    metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
    metric = default_metric(metrics)
    colours = charts.run_colours(list(runs["run_id"]))
    parts = [summary_cards(runs, metric), "<h3>Runs</h3>", _runs_table(runs)]
    grid = []
    if metric:
        cost = next((c for c, spec in charts.COSTS.items() if runs[spec[0]].notna().any()), "wall time")
        grid.append(out.add(charts.pareto_chart(runs, metric, cost, colours)))
        shown = [m for m in ("accuracy", "precision", "recall", "f1", "roc_auc") if m in metrics] or metrics[:5]
        grid.append(out.add(charts.metrics_chart(runs.head(40), shown, colours)))
    grid.append(out.add(charts.time_chart(runs.head(40), colours)))
    grid.append(out.add(charts.memory_chart(runs.head(40), colours)))
    parts.append(f'<div class="grid2">{"".join(grid)}</div>')
    if metric:
        parallel = charts.parallel_chart(runs.head(500), metric)
        if parallel is not None:
            parts.append(out.add(parallel))
    return "".join(parts)


def _run_section(source: Source, index: int, run_id: str, out: Charts) -> str:
    data = RunData(source, run_id)
    if data.run is None:
        return ""
    parts = [f'<section class="run" id="run-{index}">', header_html(data)]
    if data.run["status"] == "killed":
        parts.append(killed_html(data))
    if not data.timeline.empty:
        killed = None
        if data.run["status"] == "killed":
            s = data.session or {}
            killed = {"cause": style.death_cause(s.get("death_cause"), s.get("oom_kill"))}
        parts.append(out.add(charts.timeline_chart(data.timeline, data.cells, data.run["started_at"], killed=killed)))
    curves = charts.training_charts(data.steps)
    if curves:
        parts.append("<h3>Training curves</h3>" + f'<div class="grid2">{"".join(out.add(c) for c in curves)}</div>')
    for split, (labels, matrix) in data.confusion.items():
        split_curves = data.curves[data.curves["split"] == split] if not data.curves.empty else data.curves
        row = [out.add(charts.confusion_chart(labels, matrix, False, split)),
               out.add(charts.confusion_chart(labels, matrix, True, split))]  # fmt: skip
        if not split_curves.empty:
            row += [out.add(charts.curve_chart(split_curves, "roc")), out.add(charts.curve_chart(split_curves, "pr"))]
        parts.append(f"<h3>Predictions · {escape(split)}</h3><div class=\"grid3\">{''.join(row)}</div>")
    blocks = plots_with_notes(source, data.plots, data.notes)
    if blocks:
        parts.append("<h3>Plots and notes</h3>" + "".join(blocks))
    parts.append("</section>")
    return "".join(parts)


def _cells(source: Source, out: Charts) -> str:
    ledger = source.ledger()
    if ledger.empty:
        return style.empty("No cells recorded", "Run cells with the Python (MLTrack) kernel.")
    sessions = source.sessions()
    parts = [post_mortem(s.to_dict(), ledger) for _, s in sessions.iterrows() if s["status"] == "killed"]
    parts.append('<div class="grid2">' + out.add(charts.heaviest_chart(ledger, "wall_s"))
                 + out.add(charts.heaviest_chart(ledger, "peak_rss_bytes")) + "</div>")  # fmt: skip
    frame = ledger_frame(ledger).sort_values("wall_s", ascending=False, na_position="last").head(MAX_LEDGER_ROWS)
    cols = [("[n]", "n"), ("session", "session"), ("run", "run_name"), ("code", "code_line"), ("started", "started"),
            ("wall", "wall_text"), ("CPU", "cpu_text"), ("peak RAM", "peak_text"), ("Δ RSS", "delta_text"),
            ("peak GPU", "gpu_text"), ("status", "status"), ("error", "error_name")]  # fmt: skip
    rows = []
    for _, r in frame.iterrows():
        tds = []
        for _, key in cols:
            value = escape(str(r[key]))
            if key == "status" and r[key] in ("error", "killed"):
                value = f'<b style="color:{style.STATUS_COLOURS[r[key]]}">⚠ {value}</b>'
            tds.append(f"<td>{value}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    header = "".join(f"<th>{escape(label)}</th>" for label, _ in cols)
    note = f" (the {MAX_LEDGER_ROWS} heaviest of {len(ledger)})" if len(ledger) > MAX_LEDGER_ROWS else ""
    parts.append(f"<h3>Cells, heaviest first{note}</h3>")
    parts.append(f'<div class="scroll"><table class="mlt-table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    return "".join(parts)


def _documents(source: Source) -> str:
    titles = source.document_titles()
    if titles.empty:
        return style.empty("No documents", "Create one on the Documents page of the dashboard.")
    experiment = Experiment(source.path)
    parts = []
    try:
        for title in titles["title"]:
            doc = Document.open(experiment, str(title))
            parts.append(f'<div class="doc"><h3>{escape(doc.title)}</h3>{doc.to_html()}</div>')
    finally:
        experiment.close()
    return "".join(parts)


def experiment_html(path: Path, out: Charts) -> str:
    """The report's sections for one experiment."""
    source = Source(path)
    try:
        runs = source.runs()
        counts = source.counts()
        metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
        metric = default_metric(metrics)
        order = list(runs.index)
        if metric and len(runs) > MAX_RUN_SECTIONS:
            order = list(runs.sort_values(metric, ascending=metric in LOWER_IS_BETTER).index[:MAX_RUN_SECTIONS])
        toc = " ".join(f'<a href="#run-{i}">{escape(str(runs.loc[i, "name"]))}</a>' for i in order[:60])
        parts = [
            f'<h1>MLTrack report · <span class="exp">{escape(source.name)}</span></h1>',
            f'<div class="mlt-muted">{counts["sessions"]} sessions · {counts["runs"]} runs · '
            f'written {escape(time.strftime("%Y-%m-%d %H:%M"))} from {escape(str(path))}</div>',
            f'<nav class="toc"><a href="#summary">Summary</a> <a href="#cells">Cells</a> '
            f'<a href="#documents">Documents</a> · runs: {toc}</nav>',
            '<h2 id="summary">Summary</h2>', _summary(source, runs, out),
            '<h2 id="runs">Runs</h2>',
        ]  # fmt: skip
        if len(order) < len(runs):
            parts.append(f'<p class="mlt-muted">The {len(order)} best runs by {escape(str(metric))} have a section; '
                         "every run is in the summary table.</p>")  # fmt: skip
        parts += [_run_section(source, i, runs.loc[i, "run_id"], out) for i in order]
        parts += ['<h2 id="cells">Cells</h2>', _cells(source, out), '<h2 id="documents">Documents</h2>', _documents(source)]
        return "\n".join(parts)
    finally:
        source.close()


def report_html(experiments: Sequence[Path]) -> str:
    """The whole report: one page, every experiment in turn."""
    out = Charts()
    body = "\n<hr>\n".join(experiment_html(Path(p), out) for p in experiments)
    body, scripts = out.render(body)
    title = "MLTrack report · " + ", ".join(Path(p).name for p in experiments)
    return _page(title, body, scripts)


def write_report(experiments: Sequence[Path], target: str | os.PathLike[str]) -> Path:
    """Write the report to *target* (a temporary file renamed into place)."""
    path = Path(target).expanduser()
    html = report_html(experiments)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
