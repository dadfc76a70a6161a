"""HTML fragments shared by the pages and the export (no Panel here).

Every value from the folder is escaped (``markup.el``, ``style`` helpers) or
rendered through the sanitiser (``notes``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlt_dashboard import charts, style
from mlt_dashboard.markup import Markup, el, join, short
from mlt_dashboard.queries import Source
from mlt_dashboard.ranking import LOWER_IS_BETTER, best_run
from mlt_kernel.core.units import format_bytes, format_metric, format_seconds
from mlt_kernel.read.finals import METRIC_ORDER


def default_metric(metrics: list[str]) -> str | None:
    for name in ("f1", "roc_auc", "accuracy", "r2", "rmse"):
        if name in metrics:
            return name
    return metrics[0] if metrics else None


def summary_cards(runs: pd.DataFrame, metric: str | None, guarded: int = 0) -> Markup:
    """The summary's cards; *guarded* runs had a cell stopped by the memory guard."""
    counts = runs["status"].fillna("unknown").value_counts()
    order = ["finished", "running", "error", "interrupted", "killed"]
    parts = []
    for status in order:
        if status == "killed" and guarded:  # beside the killed ones: the deaths it prevented
            parts.append(f"{guarded} stopped by the memory guard")
        if status in counts:
            parts.append(f"{counts[status]} {status}")
    parts += [f"{n} {s}" for s, n in counts.items() if s not in order]
    items = [style.card("runs", str(len(runs)), " · ".join(parts), testid="card-runs")]
    best = best_run(runs, metric) if metric else None
    if best is not None and metric is not None:
        how = "lowest" if metric in LOWER_IS_BETTER else "highest"
        name = short(metric, 40)
        items.append(
            style.card(
                f"best by {name}",
                str(best["name"]),
                f"{how} {name}: {format_metric(best[metric])}",
                best=True,
                testid="card-best",
            )
        )
    else:
        items.append(style.card("best run", "—", "no metrics logged yet", testid="card-best"))
    items.append(
        style.card("compute", format_seconds(runs["wall_s"].sum()), f"CPU {format_seconds(runs['cpu_s'].sum())}")
    )
    for label, column in (("highest peak RAM", "peak_rss_bytes"), ("highest peak GPU", "peak_gpu_bytes")):
        values = pd.to_numeric(runs[column], errors="coerce")
        if values.notna().any():
            row = runs.loc[values.idxmax()]
            items.append(style.card(label, format_bytes(values.max()), str(row["name"])))
        else:
            items.append(style.card(label, "—", "no GPU used" if "GPU" in label else "not measured"))
    return style.cards(items)


def run_label(run: Any) -> str:
    started = run["started_at"].strftime("%m-%d %H:%M") if not pd.isna(run["started_at"]) else ""
    return f"{run['name']} · {run['status']} · {started}"


class RunData:
    """Everything the run page shows, read in one go (compared to redraw only on change)."""

    def __init__(self, source: Source, run_id: str) -> None:
        self.run = source.run(run_id)
        if self.run is None:
            return
        page = source.run_page(self.run)
        self.metrics, self.steps, self.timeline = page.metrics, page.steps, page.timeline
        self.cells, self.confusion, self.curves = page.cells, page.confusion, page.curves
        self.plots, self.notes = page.plots, page.notes
        self.session = source.session(self.run["session_id"])
        self.fits = source.run_fits(run_id)

    def same_as(self, other: RunData | None) -> bool:
        if other is None or self.run is None or other.run is None:
            return False
        frames = ("metrics", "cells", "timeline", "steps", "curves", "plots", "notes", "fits")
        return (
            repr(self.run) == repr(other.run)
            and self.confusion == other.confusion
            and all(getattr(self, f).equals(getattr(other, f)) for f in frames)
        )


def header_html(data: RunData) -> Markup:
    run = data.run
    assert run is not None
    cells = ", ".join(f"[{int(n)}]" for n in data.cells["execution_count"].dropna()) or "—"
    metric_bits: list[Markup] = []
    test = data.metrics[data.metrics["split"].fillna("test") == "test"] if not data.metrics.empty else data.metrics
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    test = test.sort_values("name", key=lambda names: names.map(lambda n: rank.get(n, len(rank))), kind="stable")
    for row in test.itertuples():
        metric_bits.append(el("span", f"{row.name} {format_metric(row.value)}", class_="mlt-chip"))
    items = [
        style.card("wall time", format_seconds(run["wall_s"])),
        style.card("CPU time", format_seconds(run["cpu_s"])),
        style.card("peak RAM", format_bytes(run["peak_rss_bytes"])),
        style.card(
            "peak GPU", format_bytes(run["peak_gpu_bytes"]), "" if not pd.isna(run["peak_gpu_bytes"]) else "no GPU used"
        ),
        style.card("session", str(run["session_id"])[-8:], f"cells {cells}"),
    ]
    return el(
        "div",
        el(
            "h2",
            short(run["name"], 200),
            " ",
            style.badge(run["status"]),
            data_testid="run-name",
            title=str(run["name"]),
        ),
        el("div", style.chips(run["params"])),
        el("div", join(metric_bits), style="margin:0.3rem 0 0.6rem"),
        style.cards(items),
        class_="mlt-runhead",
    )


def timeline(data: RunData) -> Any:
    """The run's memory timeline, with how it died or where the memory guard stopped it."""
    assert data.run is not None
    s = data.session or {}
    killed = None
    if data.run["status"] == "killed":
        killed = {"cause": style.death_cause(s.get("death_cause"), s.get("oom_kill"))}
    guard = s.get("memory_guard")
    guard = float(guard) if guard is not None and not pd.isna(guard) and guard > 0 else None
    return charts.timeline_chart(data.timeline, data.cells, data.run["started_at"], killed=killed, guard=guard)


def killed_html(data: RunData) -> Markup:
    s = data.session or {}
    cause = style.death_cause(s.get("death_cause"), s.get("oom_kill"))
    last = format_bytes(s.get("last_rss_bytes"))
    limit = s.get("memory_limit_bytes")
    limit_text = f" (memory limit {format_bytes(limit)})" if limit is not None and not pd.isna(limit) else ""
    return style.banner(
        "killed",
        join(
            [
                el("b", "This run was killed"),
                f": the kernel died of {cause}. Last memory reading {last}{limit_text}. "
                "Everything up to that moment is kept.",
            ]
        ),
    )


def post_mortem(session: dict[str, Any], ledger: pd.DataFrame) -> Markup:
    """The banner of a session that died: when, why, last memory reading, the cell it was running."""
    cause = style.death_cause(session.get("death_cause"), session.get("oom_kill"))
    when = (
        session["ended_at"].strftime("%Y-%m-%d %H:%M:%S")
        if not pd.isna(session.get("ended_at"))
        else "at an unknown time"
    )
    cells = ledger[(ledger["session_id"] == session["session_id"]) & (ledger["status"] == "killed")]
    during: Markup | str = ""
    if not cells.empty:
        c = cells.iloc[-1]
        n = int(c["execution_count"]) if not pd.isna(c["execution_count"]) else int(c["cell_seq"])
        run = f" (run {c['run_name']})" if isinstance(c["run_name"], str) and c["run_name"] else ""
        during = join([" while cell ", el("b", f"[{n}]"), f"{run} was running"])
    limit = session.get("memory_limit_bytes")
    limit_text = f", memory limit {format_bytes(limit)}" if limit is not None and not pd.isna(limit) else ""
    return style.banner(
        "killed",
        join(
            [
                el("b", f"Session {str(session['session_id'])[-8:]} died"),
                f" at {when}",
                during,
                f": {cause}. Last memory reading {format_bytes(session.get('last_rss_bytes'))}{limit_text}.",
            ]
        ),
    )


MiB = 1024**2


def ledger_frame(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger as the table shows it: numbers to sort by, text to read."""
    out = pd.DataFrame(
        {
            "n": [
                int(v) if not pd.isna(v) else int(s)
                for v, s in zip(ledger["execution_count"], ledger["cell_seq"], strict=True)
            ],
            "session_id": ledger["session_id"],
            "session": [str(s)[-8:] for s in ledger["session_id"]],
            "run_name": [short(r, 60) for r in ledger["run_name"].fillna("")],
            "code_line": [_first_line(c) for c in ledger["code"]],
            "started": [t.strftime("%H:%M:%S") if not pd.isna(t) else "" for t in ledger["started_at"]],
        }
    )
    for column, text, fmt in (
        ("wall_s", "wall_text", format_seconds),
        ("cpu_s", "cpu_text", format_seconds),
        ("peak_rss_bytes", "peak_text", format_bytes),
        ("delta_rss_bytes", "delta_text", _signed_bytes),
        ("peak_gpu_bytes", "gpu_text", format_bytes),
    ):
        out[column] = pd.to_numeric(ledger[column], errors="coerce").astype(float)
        out[text] = [fmt(None if pd.isna(v) else v) for v in ledger[column]]
        if column == "delta_rss_bytes":  # the browser formats bytes with a unit only when they are positive
            out["delta_rss_mib"] = out[column] / MiB
    state = [short(s, 40) for s in ledger["status"].fillna("")]
    guarded = ledger["error_name"].fillna("") == "MemoryGuardInterrupt"
    out["status"] = [
        "⛨ memory guard" if g else f"⚠ {s}" if s in ("error", "killed") else s
        for s, g in zip(state, guarded, strict=True)
    ]
    out["state"] = state
    out["status_colour"] = [style.STATUS_COLOURS.get(s, "#1f2328") if s != "ok" else "#1f2328" for s in state]
    out["status_style"] = ["normal" if s == "ok" else "bold" for s in state]
    out["error_name"] = [short(e, 60) for e in ledger["error_name"].fillna("")]
    return out


def _first_line(code: Any) -> str:
    if not isinstance(code, str):
        return ""
    lines = [ln for ln in code.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return first[:80] + ("…" if len(first) > 80 or len(lines) > 1 else "")


def _signed_bytes(value: Any) -> str:
    if value is None or pd.isna(value):
        return "—"
    return ("+" if value > 0 else "−" if value < 0 else "") + format_bytes(abs(value))


# -- scikit-learn fits (autolog) ------------------------------------------------------------

#: Candidates of a search shown on a run page (the best ones by rank).
MAX_SEARCH_ROWS = 100
#: Top features shown per fit.
FIT_FEATURES = 5


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if pd.isna(number) else number


def _features(top: Any) -> Markup:
    pairs = [p for p in top if isinstance(p, list | tuple) and len(p) == 2] if isinstance(top, list) else []
    bits = [el("span", f"{short(name, 30)} {format_metric(_number(v))}", class_="mlt-chip") for name, v in pairs]
    return join(bits[:FIT_FEATURES]) if bits else el("span", "—", class_="mlt-muted")


def _search_table(fit: Any) -> Markup:
    """The candidates of a search, best first: their params, mean and spread of the test score, rank."""
    results = fit.search_results if isinstance(fit.search_results, dict) else {}
    columns = {str(k): v for k, v in results.items() if isinstance(v, list)}
    if not columns:
        return Markup()
    n = max(len(v) for v in columns.values())
    shown = [k for k in columns if k.startswith("param_")] + [
        k for k in ("mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time") if k in columns
    ]
    ranks = [_number(v) for v in columns.get("rank_test_score", [])] or [float(i) for i in range(n)]
    order = sorted(range(n), key=lambda i: (ranks[i] if i < len(ranks) and ranks[i] is not None else float("inf"), i))
    head = el("tr", *(el("th", short(k.removeprefix("param_"), 40), title=k) for k in shown))
    body = []
    for i in order[:MAX_SEARCH_ROWS]:
        cells = []
        for k in shown:
            value = columns[k][i] if i < len(columns[k]) else None
            number = _number(value) if not isinstance(value, str | bool) else None
            text = format_metric(number) if number is not None and not float(number).is_integer() else value
            cells.append(el("td", short("—" if text is None else text, 60)))
        body.append(el("tr", *cells))
    best = fit.best_params if isinstance(fit.best_params, dict) else {}
    candidates = int(_number(fit.n_candidates) or n)
    summary = el(
        "summary",
        f"Search: {candidates} candidates, best score {format_metric(_number(fit.best_score))}",
        " — best ",
        style.chips(best),
    )
    note = f" (the best {MAX_SEARCH_ROWS} of {n})" if n > MAX_SEARCH_ROWS else ""
    return el(
        "details",
        summary,
        el("div", el("table", el("thead", head), el("tbody", *body), class_="mlt-compare"), class_="mlt-scroll"),
        el("div", f"Candidates by rank{note}.", class_="mlt-muted"),
        data_testid="search-results",
    )


def fits_html(fits: pd.DataFrame) -> Markup:
    """A run's scikit-learn fits: estimator, params, data, time, exact peak, size, what it learned."""
    if fits.empty:
        return style.empty(
            "No scikit-learn fits recorded",
            "Fits of scikit-learn estimators in the run's cells appear here with their params, data "
            "fingerprint, time and exact peak memory (autolog; MLTrackKernel.autolog turns it off).",
        )
    head = el(
        "tr",
        *(
            el("th", h)
            for h in ("estimator", "params", "data", "wall", "CPU", "peak RAM", "model", "top features", "status")
        ),
    )
    rows = []
    searches = []
    for fit in fits.itertuples():
        estimator = str(fit.estimator or "—")
        n, d = _number(fit.n_samples), _number(fit.n_features)
        shape = f"{int(n):,} × {int(d)}" if n is not None and d is not None else (f"{int(n):,}" if n else "—")
        fingerprint = str(fit.data_fingerprint)[:12] if isinstance(fit.data_fingerprint, str) else "—"
        peak, start = _number(fit.peak_rss_bytes), _number(fit.rss_start_bytes)
        above = f" (+{format_bytes(peak - start)})" if peak is not None and start is not None else ""
        params = fit.params if isinstance(fit.params, dict) else {}
        rows.append(
            el(
                "tr",
                el("td", el("b", short(estimator.rsplit(".", 1)[-1], 60)), f" .{fit.method}", title=estimator),
                el("td", style.chips(params) if params else el("span", "defaults", class_="mlt-muted")),
                el("td", shape, el("div", el("code", fingerprint), class_="mlt-muted", title="data fingerprint")),
                el("td", format_seconds(_number(fit.wall_s))),
                el("td", format_seconds(_number(fit.cpu_s))),
                el("td", format_bytes(peak), el("span", above, class_="mlt-muted")),
                el("td", format_bytes(_number(fit.model_bytes))),
                el("td", _features(fit.top_features)),
                el(
                    "td",
                    style.badge("finished" if fit.status == "ok" else "error"),
                    " ",
                    short(fit.error_name or "", 40),
                ),
            )
        )
        searches.append(_search_table(fit))
    table = el("table", el("thead", head), el("tbody", *rows), class_="mlt-compare", data_testid="fits")
    return join([el("div", table, class_="mlt-scroll"), *searches])
