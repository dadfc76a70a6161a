"""An experiment folder in which every string a teammate chooses is hostile.

Written with the real writer, like ``test_dashboard_data``: run names, params
(keys and values), metric names, split names, class labels, plot file names,
note text, document titles and Markdown, session fields, cell code and error
names each carry markup that would run if it were ever treated as HTML or
script (``<img onerror>``, ``</script>``, ``javascript:``, template syntax of
Bokeh tooltips and of Tabulator's formatters, quotes, TeX delimiters) and a
10,000-character name. Every payload pushes its own tag onto
``window.__pwned``, so a test that finds the array set knows which field ran.

Imported by the dashboard's security tests; it holds no tests itself.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from test_dashboard_data import Clock, Session

from mlt_kernel.core import layout
from mlt_kernel.store import parquet as store
from mlt_kernel.tracking.documents import create_document
from mlt_kernel.tracking.metrics import evaluate

GiB = 1024**3


def payload(tag: str) -> str:
    """A string that runs ``window.__pwned.push(tag)`` wherever it is taken for markup or script."""
    js = f"(window.__pwned=window.__pwned||[]).push('{tag}')"
    return (
        f'<img src=x onerror="{js}">'
        f"</script><script>{js}</script>"
        f'<svg onload="{js}"></svg>'
        f"'\"`${{{js}}}"
        f"<%= {js} %>"
        f"@{{x}} $x {{{{{js}}}}}"
        f"javascript:{js}"
        f"$${tag}$$"
    )


def short_payload(tag: str) -> str:
    """A payload that fits in a file name (255 bytes, no slash)."""
    return f"<img src=x onerror=\"(window.__pwned=window.__pwned||[]).push('{tag}')\">'\"`$$x$$"


#: A name longer than any layout expects.
LONG = "L" * 10_000

#: Which payload goes where (the tag names the field).
RUN_NAMES = [payload("run-name-0"), payload("run-name-1") + LONG, payload("run-name-2")]
PARAM_KEY = payload("param-key")
PARAM_VALUE = payload("param-value")
METRIC = payload("metric-name")
CURVE_METRIC = payload("curve-metric") + "_loss"  # "loss" puts it in the losses chart
SPLIT = payload("split")
#: Metric names that are also columns of ``Experiment.runs()``.
SHADOWING_METRICS = ["name", "status", "run_id", "params"]
LABELS = [payload("label-a"), payload("label-b")]
PLOT_FILE = "roc-" + short_payload("plot-file") + ".png"
DOC_TITLE = short_payload("doc-title") + "</script><script>window.__pwned=['doc-title-script']</script>"
NOTE = (
    "# Hostile note\n\n" + payload("note-html") + "\n\n[link](javascript:window.__pwned=['note-link'])\n\n"
    "Plain text survives: **bold hostile note**."
)
FIELDS = {
    "hostname": payload("hostname"),
    "user": payload("user"),
    "notebook": payload("notebook"),
    "python": payload("python"),
    "death_cause": payload("death-cause"),
}
CODE = payload("cell-code") + "\nmodel.fit(X, y)"
ERROR_NAME = payload("error-name")


def _png(path: Path) -> None:
    """A tiny valid PNG (2×2 grey), written without matplotlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80\x80\x80" * 2 for _ in range(2))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def _predictions(s: Session, run_id: str, rng: np.random.Generator, split: str) -> None:
    y = (rng.random(200) < 0.4).astype(int)
    proba = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
    ev = evaluate(y, y_proba=np.column_stack([1 - proba, proba]), labels=[0, 1])
    for name, value in ev.metrics.items():
        s.write(
            "metrics",
            {"run_id": run_id, "session_id": s.session_id, "name": name, "step": None, "value": value, "split": split},
        )
    s.write(
        "metrics",
        {
            "run_id": run_id,
            "session_id": s.session_id,
            "name": METRIC,
            "step": None,
            "value": 0.5 + 0.1 * rng.random(),
            "split": split,
        },
    )
    for shadow in SHADOWING_METRICS:
        s.write(
            "metrics",
            {"run_id": run_id, "session_id": s.session_id, "name": shadow, "step": None, "value": 0.25, "split": split},
        )
    s.write("confusion", {"run_id": run_id, "split": split, "labels": LABELS, "matrix": ev.confusion})
    for c in ev.curves:
        label = LABELS[int(c.label)] if str(c.label).isdigit() else c.label
        s.write(
            "curves",
            {"run_id": run_id, "split": split, "kind": c.kind, "label": label, "x": c.x, "y": c.y, "auc": c.auc},
        )


def build_hostile_experiment(parent: Path) -> dict[str, Any]:
    """Write the experiment into a folder of *parent* whose own name is hostile; returns what tests look for."""
    root = layout.ensure_layout(parent / short_payload("experiment"))
    rng = np.random.default_rng(11)
    clock = Clock(int((__import__("time").time() - 3600) * 1e6))
    session = Session(root, "20260101T090000Z-h0st1le1", clock)
    started = clock.now_us
    session.session_record("running", started_at=started, **{k: v for k, v in FIELDS.items() if k != "death_cause"})
    run_ids = []
    for i, name in enumerate(RUN_NAMES):
        run_id = f"{layout.new_writer_id()}-{i}"
        run_ids.append(run_id)
        params = {PARAM_KEY: PARAM_VALUE, "depth": i + 2, "kind": payload(f"param-value-{i}")}
        base = {"run_id": run_id, "name": name, "session_id": session.session_id, "params": params}
        session.write("runs", {**base, "status": "running", "started_at": clock.now_us + 1})
        status = "error" if i == 1 else "ok"
        rec = session.cell(
            CODE,
            2.0 + i,
            peak=int((1 + i) * GiB),
            run=(run_id, name),
            status=status,
            error_name=ERROR_NAME if status == "error" else None,
        )
        for step in range(1, 6):
            session.write(
                "metrics",
                {
                    "run_id": run_id,
                    "session_id": session.session_id,
                    "name": CURVE_METRIC,
                    "step": step,
                    "value": math.exp(-step / 3) + 0.1 * i,
                },
            )
            session.write(
                "metrics",
                {
                    "run_id": run_id,
                    "session_id": session.session_id,
                    "name": METRIC,
                    "step": step,
                    "value": 0.5 + 0.05 * step,
                },
            )
        _predictions(session, run_id, rng, SPLIT)
        _predictions(session, run_id, rng, "test")
        session.write(
            "runs",
            {
                **base,
                "status": "finished",
                "started_at": rec["started_at"],
                "ended_at": rec["ended_at"],
                "wall_s": 2.0 + i,
                "cpu_s": 1.5 + i,
                "peak_rss_bytes": int((1 + i) * GiB),
                "peak_gpu_bytes": int(0.5 * GiB) if i == 2 else None,
                "first_cell_seq": rec["cell_seq"],
                "last_cell_seq": rec["cell_seq"],
            },
        )
    plot = root / layout.PLOTS / PLOT_FILE
    _png(plot)
    session.write(
        "plots",
        {
            "plot_id": "plot-hostile",
            "file": PLOT_FILE,
            "path": f"plots/{PLOT_FILE}",
            "size_bytes": plot.stat().st_size,
            "sha256": "0" * 64,
            "session_id": session.session_id,
            "cell_seq": session.cell_seq,
            "run_id": run_ids[0],
            "source": "savefig",
            "created_at": clock.now_us,
        },
    )
    session.write(
        "notes",
        {
            "note_id": "note-hostile",
            "session_id": session.session_id,
            "execution_count": session.cell_seq,
            "run_id": run_ids[0],
            "plot": PLOT_FILE,
            "doc": DOC_TITLE,
            "markdown": NOTE,
            "created_at": clock.advance(1),
            "deleted": False,
        },
    )
    # The session died: its post-mortem banner carries the hostile cause.
    session.watcher.write(
        "sessions",
        {
            "session_id": session.session_id,
            "started_at": started,
            "status": "killed",
            "ended_at": clock.advance(5),
            "death_cause": FIELDS["death_cause"],
            "memory_limit_bytes": 8 * GiB,
            "last_rss_bytes": 3 * GiB,
            **{k: v for k, v in FIELDS.items() if k != "death_cause"},
        },
    )
    session.close()
    store.compact_writer(root, session.session_id)
    doc = create_document(root, DOC_TITLE)
    doc.add_markdown("## " + payload("doc-markdown") + "\n\nDocument text survives.")
    doc.add_note("note-hostile")
    doc.add_plot(PLOT_FILE)
    return {"path": root, "run_ids": run_ids, "session": session.session_id}
