"""Documents: the Python API the notebook and the dashboard share, and its HTML export."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.core.errors import PlotPathError
from mlt_kernel.store import parquet as store
from mlt_kernel.store.journal import now_us
from mlt_kernel.tracking.documents import (
    BlockNotFoundError,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    create_document,
    list_documents,
)


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG, built with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x20\x60\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def add_note(exp: Path, note_id: str, markdown: str, plot: str | None = None) -> str:
    """A note as a teammate's kernel would have left it (another writer)."""
    store.write_records(
        exp,
        "notes",
        [
            {
                "note_id": note_id,
                "session_id": "s-other",
                "execution_count": 7,
                "plot": plot,
                "markdown": markdown,
                "created_at": now_us(),
                "deleted": False,
            }
        ],
    )
    return note_id


@pytest.fixture
def experiment(exp: Path) -> mlt.Experiment:
    layout.ensure_layout(exp)
    (exp / "plots" / "roc.png").write_bytes(_png(4, 3))
    return mlt.Experiment(exp)


def block_rows(exp: Path) -> int:
    return len(list((exp / "tables" / "blocks").glob("*.parquet")))


def test_create_open_rename_delete(experiment):
    doc = create_document(experiment, "  Findings ")
    assert doc.title == "Findings"
    with pytest.raises(DocumentExistsError, match="Findings"):
        Document.create(experiment.path, "Findings")
    with pytest.raises(DocumentNotFoundError) as missing:
        Document.open(experiment, "Results")
    assert isinstance(missing.value, KeyError) and "'Findings'" in str(missing.value)
    with pytest.raises(ValueError, match="non-empty"):
        Document.create(experiment, " ")

    other = Document.create(experiment, "Scratch")
    with pytest.raises(DocumentExistsError):
        other.rename("Findings")
    doc.rename("Results")
    assert Document.open(experiment.path, "Results").doc_id == doc.doc_id
    with pytest.raises(KeyError):
        experiment.document("Findings")
    assert list_documents(experiment)["title"].tolist() == ["Results", "Scratch"]

    other.delete()
    assert experiment.documents()["title"].tolist() == ["Results"]
    Document.create(experiment, "Scratch")  # a deleted title is free again


def test_blocks_are_added_edited_moved_and_deleted_one_row_each(experiment):
    exp = experiment.path
    doc = create_document(exp, "Findings")
    a = doc.add_markdown("A")
    c = doc.add_markdown("C")
    b = doc.add_markdown("B", after=a.block_id)
    note = doc.add_note(add_note(exp, "n-1", "The forest wins.", plot="roc.png"))
    plot = doc.add_plot("plots/roc.png")
    assert [x.content for x in doc.blocks()] == ["A", "B", "C", "n-1", "roc.png"]
    assert plot.kind == "plot" and plot.content == "roc.png"

    rows = block_rows(exp)
    doc.move(plot.block_id, -10)  # to the top
    doc.move(a.block_id, 1)
    assert block_rows(exp) == rows + 2  # one new row per move
    assert [x.content for x in doc.blocks()] == ["roc.png", "B", "A", "C", "n-1"]
    assert doc.move(note.block_id, 5) == doc.blocks()[-1]  # already last: nothing written
    assert block_rows(exp) == rows + 2

    doc.edit(c.block_id, "C, edited")
    doc.edit(note.block_id, "The forest wins by far.")  # edits the note itself
    assert experiment.notes().set_index("note_id").loc["n-1", "markdown"] == "The forest wins by far."
    with pytest.raises(ValueError, match="plot block"):
        doc.edit(plot.block_id, "x")
    doc.delete_block(b.block_id)
    assert [x.content for x in doc.blocks()] == ["roc.png", "A", "C, edited", "n-1"]
    assert experiment.documents().set_index("title").loc["Findings", "blocks"] == 4

    with pytest.raises(BlockNotFoundError):
        doc.move(b.block_id, 1)
    with pytest.raises(KeyError, match="no note"):
        doc.add_note("n-missing")
    with pytest.raises(PlotPathError):
        doc.add_plot("../secret.png")


def test_a_doc_note_is_appended_once_by_the_helper_command(experiment, capsys):
    from mlt_kernel.tracking.documents import main

    exp = experiment.path
    note = add_note(exp, "n-1", "## ROC\nThe forest wins.")
    command = ["append-notes", str(exp), "--", "Findings", note]
    assert main(command) == 0  # the document is created, with the note
    assert main(command) == 0  # and the note is not added twice
    document = mlt.Experiment(exp).document("Findings")
    assert [(b.kind, b.content) for b in document.blocks()] == [("note", "n-1")]
    document.delete_block(document.blocks()[0].block_id)
    assert main(command) == 0  # a block deleted in the editor does not come back
    assert document.blocks() == []

    # Titles that look like options are titles.
    for title in ("-draft", "--help"):
        assert main(["append-notes", str(exp), "--", title, add_note(exp, f"n{title}", title)]) == 0
    assert set(mlt.Experiment(exp).documents()["title"]) == {"Findings", "-draft", "--help"}

    # Bad input: one line per note, non-zero, nothing written; the good ones of the same call still land.
    before = block_rows(exp)
    for title, note_id in (("Findings", "n-missing"), ("two\nlines", note), ("", note), ("a\x00b", note)):
        capsys.readouterr()
        assert main(["append-notes", str(exp), "--", title, note_id]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "was not added to document" in err
    assert block_rows(exp) == before
    good = add_note(exp, "n-2", "Second.")
    assert main(["append-notes", str(exp), "--", "Findings", "n-missing", "Findings", good]) == 1
    assert [b.content for b in mlt.Experiment(exp).document("Findings").blocks()] == ["n-2"]


def test_notes_no_document_refers_to_are_added_by_the_pending_pass(experiment):
    from mlt_kernel.tracking.documents import main

    exp = experiment.path
    store.write_records(
        exp,
        "notes",
        [
            {"note_id": n, "session_id": "s-gone", "doc": doc, "markdown": n, "created_at": now_us(), "deleted": False}
            for n, doc in (("n-a", "Findings"), ("n-b", "Findings"), ("n-c", "Other"), ("n-d", None))
        ],
    )
    assert main(["append-notes", str(exp), "--", "Findings", "n-a"]) == 0  # this one reached its document
    findings = mlt.Experiment(exp).document("Findings")
    findings.delete_block(findings.blocks()[0].block_id)  # and the user deleted its block
    assert main(["append-notes", "--pending", str(exp)]) == 0
    e = mlt.Experiment(exp)
    assert [b.content for b in e.document("Findings").blocks()] == ["n-b"]  # n-a stays deleted
    assert [b.content for b in e.document("Other").blocks()] == ["n-c"]
    assert main(["append-notes", "--pending", str(exp)]) == 0  # idempotent
    assert len(mlt.Experiment(exp).document("Findings").blocks()) == 1


def test_positions_never_run_out(experiment):
    doc = create_document(experiment, "Dense")
    first = doc.add_markdown("0")
    doc.add_markdown("end")
    for i in range(1, 61):  # always right after the first block: halves the same gap
        doc.add_markdown(str(i), after=first.block_id)
    contents = [b.content for b in doc.blocks()]
    assert contents == ["0", *[str(i) for i in range(60, 0, -1)], "end"]


CONCURRENT_WRITER = """
import sys, time
from mlt_kernel.tracking.documents import Document
exp, who, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
doc = Document.open(exp, "Shared")
time.sleep(max(0.0, go - time.time()))
for i in range(15):
    doc.add_markdown(f"{who}-{i}")
"""


def test_two_processes_adding_blocks_at_once_lose_nothing(experiment, tmp_path):
    create_document(experiment, "Shared")
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(CONCURRENT_WRITER))
    go = time.time() + 3.0  # both start adding at the same moment, imports done
    writers = [
        subprocess.Popen([sys.executable, str(script), str(experiment.path), who, str(go)], stderr=subprocess.PIPE)
        for who in ("notebook", "dashboard")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    contents = [b.content for b in experiment.document("Shared").blocks()]
    assert sorted(contents) == sorted(f"{who}-{i}" for who in ("notebook", "dashboard") for i in range(15))
    for who in ("notebook", "dashboard"):  # each writer's own order is kept
        mine = [c for c in contents if c.startswith(who)]
        assert mine == [f"{who}-{i}" for i in range(15)]


def test_html_shows_notes_under_their_plots_and_embeds_images(experiment, tmp_path):
    exp = experiment.path
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(1, 1))
    (exp / "plots" / "leak.png").symlink_to(secret)
    doc = create_document(exp, "Findings")
    doc.add_markdown("# Findings\n![ROC](roc.png) ![leak](leak.png) ![far](../secret.png)")
    doc.add_note(add_note(exp, "n-roc", "**Forest** beats the baseline.", plot="roc.png"))
    doc.add_plot("later.png")

    html = doc.to_html()
    png_uri = "data:image/png;base64,"
    assert html.count(png_uri) == 2  # the Markdown image and the note's plot; no leak
    assert 'alt="leak"' not in html and "secret" not in html
    figure = html.index('<figure class="mlt-plot">')
    assert figure < html.index("<strong>Forest</strong> beats the baseline.")
    assert "Plot later.png is not available." in html

    page = doc.export_html(tmp_path / "findings.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h1>Findings</h1>" in page
    assert "Content-Security-Policy" in page and "@media print" in page


HOSTILE_NOTE = """\
## Results <script>window.__pwned = 'script'; alert(1)</script>

Safe **finding** stays.

<img src=x onerror="window.__pwned = 'onerror'; alert(2)">
[click](javascript:window.__pwned='link';alert(3))
<a href="javascript:alert(4)">raw link</a>
![remote](https://evil.example/x.png)
<iframe src="https://evil.example/frame"></iframe>
<svg onload="window.__pwned='svg'"><circle r="4"/></svg>
<style>body { background: url(https://evil.example/bg.png) }</style>
"""


def test_exported_document_with_hostile_notes_runs_and_fetches_nothing(browser: Any, experiment, tmp_path):
    exp = experiment.path
    doc = create_document(exp, "Hostile <script>alert(5)</script>")
    doc.add_note(add_note(exp, "n-evil", HOSTILE_NOTE, plot="roc.png"))
    doc.add_markdown('<a href="https://example.org" onclick="alert(6)">fine link</a>')
    report = doc.export_html(tmp_path / "report.html")

    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:")) else route.abort()
    )
    try:
        page.goto(report.as_uri(), wait_until="load")
        for link in page.locator("a:not([href^='http'])").all():
            link.click()
        page.wait_for_timeout(300)
        assert dialogs == [] and requests == []
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.url == report.as_uri()
        assert page.get_by_text("Safe finding stays.").is_visible()
        assert page.get_by_role("heading", name="Hostile <script>alert(5)</script>").is_visible()
        plot = page.get_by_role("img", name="roc.png")
        assert plot.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [4, 3]
        assert page.locator("img").count() == 1 and page.locator("iframe, svg, script").count() == 0
    finally:
        context.close()
