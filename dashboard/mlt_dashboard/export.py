"""``mlt-dashboard PATH --export FILE.html``: the whole report in one offline file.

Summary, each run's charts, confusion matrices, plots, notes, the cell ledger
and the documents, with every resource inlined: BokehJS itself, the charts'
data, plots as ``data:`` URIs. The page carries a Content-Security-Policy that
allows exactly the scripts written here (by their SHA-256 hashes) and no fetch
at all, so markup that slipped past the sanitiser still could not run or phone
home. Notes and documents go through ``mlt_kernel.tracking.render`` (sanitised); every
other value from the folder is escaped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from bokeh.embed import components
from bokeh.resources import Resources

from mlt_dashboard import charts, comparison, fragments, style
from mlt_dashboard.fragments import (
    RunData,
    default_metric,
    header_html,
    killed_html,
    ledger_frame,
    post_mortem,
    summary_cards,
)
from mlt_dashboard.markup import Markup, el, join, short, trusted
from mlt_dashboard.notes import plots_with_notes
from mlt_dashboard.policy import report_policy
from mlt_dashboard.queries import Source
from mlt_dashboard.ranking import LOWER_IS_BETTER, metric_columns
from mlt_dashboard.tables import runs_table, table_html
from mlt_kernel.read.experiment import Experiment
from mlt_kernel.tracking.documents import Document

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

    def add(self, model: Any) -> Markup:
        key = f"c{len(self.models)}"
        self.models[key] = model
        return trusted(f"<!--chart:{key}-->")

    def render(self, body: str) -> tuple[str, list[str]]:
        """*body* with the charts' divs in place, and the scripts to put in the page."""
        if not self.models:
            return body, []
        script, divs = components(self.models, wrap_script=False)
        for key, div in divs.items():
            body = body.replace(f"<!--chart:{key}-->", f'<div class="chart">{div}</div>')
        js = Resources(mode="inline", components=["bokeh"]).js_raw
        return body, [*js, script]


def _page(title: str, body: str, scripts: Sequence[str]) -> str:
    tags = "".join(f"<script>{s}</script>\n" for s in scripts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{report_policy(scripts)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{el('title', title)}\n<style>{style.CSS}{_REPORT_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n{tags}</body>\n</html>\n"
    )


# -- sections -------------------------------------------------------------------------


def _summary(source: Source, runs: pd.DataFrame, out: Charts) -> Markup:
    if runs.empty:
        return style.empty(
            "No runs yet", trusted("Tag a cell with <code># mlt: record name=…</code> to make it a run.")
        )
    metrics = [m for m in metric_columns(runs) if runs[m].notna().any()]
    metric = default_metric(metrics)
    colours = charts.run_colours(list(runs["run_id"]))
    parts = [
        summary_cards(runs, metric, source.counts()["guarded_runs"]),
        el("h3", "Runs"),
        runs_table(runs, link=True),
    ]
    grid = []
    if metric:
        cost = next((c for c, spec in charts.COSTS.items() if runs[spec[0]].notna().any()), "wall time")
        grid.append(out.add(charts.pareto_chart(runs, metric, cost, colours)))
        shown = [m for m in ("accuracy", "precision", "recall", "f1", "roc_auc") if m in metrics] or metrics[:5]
        grid.append(out.add(charts.metrics_chart(runs.head(40), shown, colours)))
    grid.append(out.add(charts.time_chart(runs.head(40), colours)))
    grid.append(out.add(charts.memory_chart(runs.head(40), colours)))
    parts.append(el("div", join(grid), class_="grid2"))
    if metric:
        parallel = charts.parallel_chart(runs.head(500), metric)
        if parallel is not None:
            parts.append(out.add(parallel))
    return join(parts)


def _run_section(source: Source, index: int, run_id: str, out: Charts) -> Markup:
    data = RunData(source, run_id)
    if data.run is None:
        return Markup()
    parts = [header_html(data)]
    if data.run["status"] == "killed":
        parts.append(killed_html(data))
    if not data.timeline.empty:
        parts.append(out.add(fragments.timeline(data)))
    if not data.fits.empty:
        parts += [el("h3", "Model fits"), fragments.fits_html(data.fits)]
    curves = charts.training_charts(data.steps)
    if curves:
        parts += [el("h3", "Training curves"), el("div", join(out.add(c) for c in curves), class_="grid2")]
    for split, (labels, matrix) in data.confusion.items():
        split_curves = data.curves[data.curves["split"] == split] if not data.curves.empty else data.curves
        row = [
            out.add(charts.confusion_chart(labels, matrix, False, split)),
            out.add(charts.confusion_chart(labels, matrix, True, split)),
        ]
        if not split_curves.empty:
            row += [out.add(charts.curve_chart(split_curves, "roc")), out.add(charts.curve_chart(split_curves, "pr"))]
        parts += [el("h3", f"Predictions · {short(split, 60)}"), el("div", join(row), class_="grid3")]
    blocks = plots_with_notes(source, data.plots, data.notes)
    if blocks:
        parts += [el("h3", "Plots and notes"), *blocks]
    provenance = source.compare((run_id,)).provenance
    if not provenance.empty:
        table = comparison.table_html(
            "Provenance", provenance, [str(data.run["name"])], only_differences=False, slug=f"provenance-{index}"
        )
        parts.append(el("details", el("summary", "Provenance: machine, git, packages, environment"), table))
    return el("section", join(parts), class_="run", id=f"run-{index}")


def _compare(source: Source, run_ids: Sequence[str], out: Charts) -> Markup:
    """The compare view of *run_ids* (the best runs): what differs, the code, memory and curves overlaid."""
    view = comparison.Comparison.load(source, run_ids)
    parts = [
        el("p", f"The {len(run_ids)} best runs side by side; only what differs between them.", class_="mlt-muted"),
        comparison.tables_html(view.diff, only_differences=True),
        comparison.code_html(view.diff),
    ]
    memory = comparison.memory_chart(view)
    if memory is not None:
        parts.append(out.add(memory))
    curves = comparison.curve_charts(view)
    if curves:
        parts += [el("h3", "Training curves"), el("div", join(out.add(c) for c in curves), class_="grid2")]
    confusions = comparison.confusion_charts(view)
    if confusions:
        cells = [el("div", el("b", short(label, 60)), out.add(chart)) for label, chart in confusions]
        parts += [el("h3", "Confusion matrices"), el("div", join(cells), class_="grid3")]
    return join(parts)


def _cells(source: Source, out: Charts) -> Markup:
    ledger = source.ledger()
    if ledger.empty:
        return style.empty("No cells recorded", "Run cells with the Python (MLTrack) kernel.")
    sessions = source.sessions()
    parts = [post_mortem(s.to_dict(), ledger) for _, s in sessions.iterrows() if s["status"] == "killed"]
    heaviest = [
        out.add(charts.heaviest_chart(ledger, "wall_s")),
        out.add(charts.heaviest_chart(ledger, "peak_rss_bytes")),
    ]
    parts.append(el("div", join(heaviest), class_="grid2"))
    frame = ledger_frame(ledger).sort_values("wall_s", ascending=False, na_position="last").head(MAX_LEDGER_ROWS)
    cols = [
        ("[n]", "n"),
        ("session", "session"),
        ("run", "run_name"),
        ("code", "code_line"),
        ("started", "started"),
        ("wall", "wall_text"),
        ("CPU", "cpu_text"),
        ("peak RAM", "peak_text"),
        ("Δ RSS", "delta_text"),
        ("peak GPU", "gpu_text"),
        ("status", "status"),
        ("error", "error_name"),
    ]
    rows = []
    for _, r in frame.iterrows():
        row: list[Markup | str] = [short(r[key], 120) for _, key in cols]
        if r["state"] in ("error", "killed"):
            row[-2] = el("b", r["status"], style=f"color:{style.STATUS_COLOURS[r['state']]}")
        rows.append(row)
    note = f" (the {MAX_LEDGER_ROWS} heaviest of {len(ledger)})" if len(ledger) > MAX_LEDGER_ROWS else ""
    parts += [
        el("h3", f"Cells, heaviest first{note}"),
        table_html([label for label, _ in cols], rows, [False] * len(cols)),
    ]
    return join(parts)


def documents_html(source: Source) -> Markup:
    titles = source.document_titles()
    if titles.empty:
        return style.empty("No documents", "Create one on the Documents page of the dashboard.")
    experiment = Experiment(source.path)
    parts = []
    try:
        for title in titles["title"]:
            doc = Document.open(experiment, str(title))
            # to_html(): sanitised Markdown and escaped names, from mlt_kernel.tracking.documents.
            parts.append(el("div", el("h3", doc.title), trusted(doc.to_html()), class_="doc"))
    finally:
        experiment.close()
    return join(parts)


def experiment_html(path: Path, out: Charts) -> Markup:
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
        toc = join((el("a", short(runs.loc[i, "name"], 60), href=f"#run-{i}") for i in order[:60]), " ")
        links = join(
            [
                el("a", "Summary", href="#summary"),
                el("a", "Compare", href="#compare"),
                el("a", "Cells", href="#cells"),
                el("a", "Documents", href="#documents"),
            ],
            " ",
        )
        written = f"written {time.strftime('%Y-%m-%d %H:%M')} from {path}"
        parts = [
            el("h1", "MLTrack report · ", el("span", source.name, class_="exp")),
            el("div", f"{counts['sessions']} sessions · {counts['runs']} runs · {written}", class_="mlt-muted"),
            el("nav", links, " · runs: ", toc, class_="toc"),
            el("h2", "Summary", id="summary"),
            _summary(source, runs, out),
        ]
        if metric and runs[metric].notna().sum() >= 2:
            best = runs.dropna(subset=[metric]).sort_values(metric, ascending=metric in LOWER_IS_BETTER)
            ids = list(best["run_id"].head(comparison.MAX_RUNS))
            parts += [
                el("h2", f"The best runs compared (by {short(metric, 60)})", id="compare"),
                _compare(source, ids, out),
            ]
        parts.append(el("h2", "Runs", id="runs"))
        if len(order) < len(runs):
            parts.append(
                el(
                    "p",
                    f"The {len(order)} best runs by {short(metric, 60)} have a section; every run is "
                    "in the summary table.",
                    class_="mlt-muted",
                )
            )
        parts += [_run_section(source, i, runs.loc[i, "run_id"], out) for i in order]
        parts += [
            el("h2", "Cells", id="cells"),
            _cells(source, out),
            el("h2", "Documents", id="documents"),
            documents_html(source),
        ]
        return join(parts, "\n")
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
    """Write the report to *target*: a new temporary file in its folder, renamed into place.

    The temporary file gets an unpredictable name and is created exclusively
    (``mkstemp``), so a link planted at a guessable name cannot redirect the
    write; the rename replaces *target* itself, never a file a link there
    points to. The report gets the permissions of a new file (umask applied).
    """
    path = Path(target).expanduser()
    html = report_html(experiments)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
