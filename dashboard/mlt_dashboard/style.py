"""Looks and small HTML pieces shared by the pages and the export.

Every helper builds its markup with ``markup.el``, which escapes what it is
given: run names, params and session ids come from a teammate's shared folder
and are as untrusted as notes are. Rendered Markdown comes only from
``mlt_kernel.tracking.render.markdown_to_html`` (sanitised).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlt_dashboard.markup import Markup, el, join, short

#: A run's or a cell's status, as a colour (badges, charts).
STATUS_COLOURS = {
    "ok": "#59a14f",
    "finished": "#59a14f",
    "running": "#4e79a7",
    "error": "#e15759",
    "interrupted": "#edc948",
    "killed": "#b0182b",
}

CSS = """
:host, body { --mlt-ink: #1f2328; --mlt-muted: #59636e; --mlt-line: #d0d7de; --mlt-soft: #f6f8fa;
  --mlt-accent: #4e79a7;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.mlt-header { display: flex; align-items: baseline; gap: 0.8rem; flex-wrap: wrap; color: var(--mlt-ink); }
.mlt-header h1 { font-size: 1.35rem; margin: 0; font-weight: 650; }
.mlt-header .exp { color: var(--mlt-accent); }
.mlt-header .meta { color: var(--mlt-muted); font-size: 0.9rem; }
.mlt-live { display: inline-block; width: 0.55rem; height: 0.55rem; border-radius: 50%; background: #59a14f;
  margin-right: 0.3rem; vertical-align: middle; }
.mlt-live.idle { background: #bab0ac; }
.mlt-nav { display: flex; gap: 0.2rem; border-bottom: 1px solid var(--mlt-line); margin: 0.2rem 0 0.4rem; }
.mlt-nav a { padding: 0.45rem 0.9rem; color: var(--mlt-muted); text-decoration: none; font-weight: 550;
  border-bottom: 3px solid transparent; font-size: 0.95rem; }
.mlt-nav a:hover { color: var(--mlt-ink); }
.mlt-nav a.active { color: var(--mlt-ink); border-bottom-color: var(--mlt-accent); }
.mlt-cards { display: flex; gap: 0.75rem; flex-wrap: wrap; }
.mlt-card { border: 1px solid var(--mlt-line); border-radius: 8px; padding: 0.6rem 0.9rem; min-width: 10rem;
  background: #fff; flex: 1 1 10rem; }
.mlt-card .label { color: var(--mlt-muted); font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.04em; }
.mlt-card .value { font-size: 1.45rem; font-weight: 650; color: var(--mlt-ink); line-height: 1.3;
  overflow-wrap: anywhere; }
.mlt-card .sub { color: var(--mlt-muted); font-size: 0.85rem; }
.mlt-card.best { border-color: #59a14f; background: #f3faf2; }
.mlt-badge { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 999px; color: #fff; font-size: 0.78rem;
  font-weight: 600; }
.mlt-chip { display: inline-block; padding: 0.1rem 0.55rem; margin: 0.15rem 0.25rem 0.15rem 0; border-radius: 6px;
  background: var(--mlt-soft); border: 1px solid var(--mlt-line); font-size: 0.85rem;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.mlt-banner { border-radius: 8px; padding: 0.7rem 1rem; margin: 0.3rem 0; border: 1px solid; }
.mlt-banner.killed { background: #fdecec; border-color: #e15759; color: #7a1020; }
.mlt-banner.info { background: #eef4fb; border-color: #a8c4e3; color: #1d3f66; }
.mlt-empty { border: 1px dashed var(--mlt-line); border-radius: 8px; padding: 1.2rem 1.4rem; color: var(--mlt-muted);
  background: #fbfbfc; }
.mlt-empty b { color: var(--mlt-ink); }
.mlt-empty code, .mlt-banner code { background: var(--mlt-soft); padding: 0.05em 0.3em; border-radius: 4px; }
.mlt-section { font-size: 1.05rem; font-weight: 650; margin: 0.6rem 0 0.1rem; color: var(--mlt-ink); }
.mlt-runhead h2 { margin: 0 0 0.2rem; font-size: 1.4rem; }
.mlt-runhead, .mlt-chip, .mlt-banner, .mlt-note, .mlt-doc, .mlt-empty, .mlt-muted, .mlt-header h1 {
  overflow-wrap: anywhere; }
.mlt-note { border-left: 3px solid var(--mlt-line); padding: 0 0.9rem; margin: 0.4rem 0; }
.mlt-note img, .mlt-doc img { max-width: 100%; }
.mlt-note table, .mlt-doc table { border-collapse: collapse; margin: 0.6em 0; }
.mlt-note th, .mlt-note td, .mlt-doc th, .mlt-doc td { border: 1px solid var(--mlt-line); padding: 0.25em 0.7em; }
.mlt-note th, .mlt-doc th { background: var(--mlt-soft); }
.mlt-note pre, .mlt-doc pre { background: var(--mlt-soft); padding: 0.6em 0.8em; border-radius: 6px; overflow-x: auto; }
.mlt-doc { line-height: 1.55; }
.mlt-muted, .mlt-missing { color: var(--mlt-muted); font-size: 0.88rem; }
figure.mlt-plot { margin: 0.4rem 0; }
figure.mlt-plot img { max-width: 100%; border: 1px solid var(--mlt-line); border-radius: 6px; }
figure.mlt-plot figcaption { color: var(--mlt-muted); font-size: 0.85rem; }
.mlt-scroll { overflow-x: auto; }
a.mlt-button { display: inline-block; margin-top: 1.3rem; padding: 0.3rem 0.9rem; border-radius: 6px;
  background: var(--mlt-accent); color: #fff; text-decoration: none; font-weight: 600; font-size: 0.9rem; }
a.mlt-button:hover { background: #3b6390; }
table.mlt-compare { border-collapse: collapse; font-size: 0.88rem; margin: 0.3rem 0 0.6rem; }
table.mlt-compare th, table.mlt-compare td { border: 1px solid var(--mlt-line); padding: 0.2em 0.7em;
  text-align: left; overflow-wrap: anywhere; max-width: 22rem; }
table.mlt-compare thead th { background: var(--mlt-soft); }
table.mlt-compare tbody th { font-weight: 550; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table.mlt-compare tr.differs td { background: #fff8e1; }
table.mlt-compare tr.differs th { border-left: 3px solid #f28e2b; }
pre.mlt-diff { background: #fbfbfc; border: 1px solid var(--mlt-line); border-radius: 6px; padding: 0.4rem 0;
  font-size: 12.5px; line-height: 1.45; overflow-x: auto; margin: 0.2rem 0 0.6rem; }
pre.mlt-diff > div { padding: 0 0.8rem; white-space: pre; }
pre.mlt-diff .d-add { background: #e6ffec; }
pre.mlt-diff .d-del { background: #ffebe9; }
pre.mlt-diff .d-hunk { color: #6e40c9; background: #f6f0ff; }
pre.mlt-diff .d-file { color: var(--mlt-muted); }
pre.mlt-diff .d-mark { display: inline-block; width: 1.2em; color: var(--mlt-muted); user-select: none; }
pre.mlt-diff .k, pre.mlt-diff .kn, pre.mlt-diff .kc, pre.mlt-diff .ow { color: #cf222e; }
pre.mlt-diff .s, pre.mlt-diff .s1, pre.mlt-diff .s2, pre.mlt-diff .sd { color: #0a3069; }
pre.mlt-diff .mi, pre.mlt-diff .mf { color: #0550ae; }
pre.mlt-diff .c, pre.mlt-diff .c1 { color: #6e7781; font-style: italic; }
pre.mlt-diff .nf, pre.mlt-diff .nc { color: #8250df; }
pre.mlt-diff .nb, pre.mlt-diff .bp { color: #953800; }
"""


def badge(status: Any) -> Markup:
    text = str(status) if status is not None else "—"
    colour = STATUS_COLOURS.get(text, "#8b949e")
    return el("span", short(text, 40), class_="mlt-badge", style=f"background:{colour}")


def chips(params: Mapping[str, Any]) -> Markup:
    if not params:
        return el("span", "no params", class_="mlt-muted")
    return join(el("span", f"{k}={_param(v)}", class_="mlt-chip") for k, v in params.items())


def params_of(value: Any) -> dict[str, Any]:
    """A run's decoded params: valid JSON that is not an object (``[1, 2]``, ``"abc"``) stands for none."""
    return value if isinstance(value, dict) else {}


def params_text(params: Any) -> str:
    """``n_estimators=300 max_depth=8``: params on one line, for tables (anything but an object: none)."""
    return " ".join(f"{k}={_param(v)}" for k, v in params_of(params).items())


def local_zone() -> Any:
    """The time zone runs' times are shown in: this machine's offset today, on every page."""
    from datetime import datetime

    return datetime.now().astimezone().tzinfo


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "None" if value is None else str(value)


def card(label: str, value: str, sub: str = "", *, best: bool = False, testid: str = "") -> Markup:
    """A figure with its label (and a line below); values are cut to a card's width."""
    return el(
        "div",
        el("div", label, class_="label"),
        el("div", short(value), class_="value"),
        el("div", short(sub, 120), class_="sub") if sub else "",
        class_="mlt-card best" if best else "mlt-card",
        data_testid=testid or None,
    )


def cards(items: Iterable[Markup]) -> Markup:
    return el("div", join(items), class_="mlt-cards")


def empty(title: str, what_to_do: Markup | str) -> Markup:
    """An empty state: what is missing, and what to do (Markup of ours, or text)."""
    return el("div", el("b", title), el("br"), what_to_do, class_="mlt-empty")


def banner(kind: str, content: Markup | str) -> Markup:
    return el("div", content, class_=f"mlt-banner {kind}")


def death_cause(cause: Any, oom_kill: Any = None) -> str:
    """A person's words for a session's ``death_cause``."""
    text = str(cause) if isinstance(cause, str) and cause else "unknown cause"
    if text == "oom" or oom_kill is True:
        return "out of memory (the OOM killer ended it)"
    return short(text, 120)
