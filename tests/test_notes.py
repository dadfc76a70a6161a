"""Notes and plots, recorded by a real kernel: note cells, mlt.note(), savefig, inline figures."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import mlt_kernel as mlt
from mlt_kernel.core.errors import PlotPathError
from mlt_kernel.core.names import plot_name

NO_WATCHER = ["--MLTrackKernel.watcher=False"]  # not what these tests are about
#: Waits in the kernel for its helper processes (a doc= note's append) to finish.
HELPERS_DONE = "print(get_ipython().kernel.recorder.helpers.wait(60))"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_with_cell_id(kernel: Any, code: str, cell_id: str) -> str:
    """Execute *code* as JupyterLab does, with the cell's id in the request metadata."""
    request = kernel.kc.session.msg(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        metadata={"cellId": cell_id},
    )
    kernel.kc.shell_channel.send(request)
    while True:
        reply = kernel.kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            return reply["content"]["status"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("roc.png", "roc.png"), ("plots/roc.png", "roc.png"), (" roc curve.png ", "roc curve.png")],
)
def test_plot_names_are_files_in_the_plots_folder(name: str, expected: str) -> None:
    assert plot_name(name) == expected


def test_an_absolute_plot_name_must_lie_in_the_plots_folder(tmp_path: Path) -> None:
    assert plot_name(str(tmp_path / "plots" / "roc.png"), tmp_path) == "roc.png"
    with pytest.raises(PlotPathError, match="outside"):
        plot_name(str(tmp_path / "plots" / ".." / "secret.png"), tmp_path)


@pytest.mark.parametrize(
    "name", ["../roc.png", "plots/../../x.png", "/etc/passwd", "C:\\x.png", "sub/roc.png", "a\\b.png", "", ".."]
)
def test_bad_plot_names_are_rejected(name: str) -> None:
    with pytest.raises(PlotPathError) as info:
        plot_name(name)
    assert "\n" not in str(info.value) and repr(name) in str(info.value)


def test_note_cells_render_store_update_and_feed_their_document(start_kernel, exp):
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    cell = '# mlt: note plot=roc.png doc="Findings"\n## ROC\nThe forest wins <b>clearly</b>.\n'
    reply = k.run(cell)
    assert reply.status == "ok"
    (shown,) = reply.of_type("display_data")
    assert shown["data"]["text/markdown"] == "## ROC\nThe forest wins <b>clearly</b>.\n"
    assert not reply.of_type("execute_result") and not reply.stderr

    notes = mlt.Experiment(exp).notes()
    assert len(notes) == 1
    note = notes.iloc[0]
    assert (note["plot"], note["doc"], note["execution_count"]) == ("roc.png", "Findings", 2)
    assert note["markdown"] == "## ROC\nThe forest wins <b>clearly</b>.\n"  # verbatim
    assert pd.isna(note["plot_path"])  # no such plot yet

    # Re-running the edited cell updates the note and does not add a second block.
    assert k.run(cell.replace("clearly", "by far")).status == "ok"
    notes = mlt.Experiment(exp).notes()
    assert len(notes) == 1 and notes.iloc[0]["note_id"] == note["note_id"]
    assert "by far" in notes.iloc[0]["markdown"] and notes.iloc[0]["execution_count"] == 3
    # The document is found, or made, by a helper process: the kernel never reads.
    assert k.run(HELPERS_DONE).stdout.strip() == "True"
    document = mlt.Experiment(exp).document("Findings")
    assert [(b.kind, b.content) for b in document.blocks()] == [("note", note["note_id"])]
    # Finding the document loaded no DuckDB (nor pyarrow) into the kernel.
    loaded = k.run("import sys; print(sorted({'duckdb', 'pyarrow'} & set(sys.modules)))")
    assert loaded.stdout.strip() == "[]"

    # What another process adds to the document is what the notebook sees.
    document.add_markdown("Written in the dashboard.")
    seen = k.run("print([b.kind for b in mlt.Experiment(EXP_PATH).document('Findings').blocks()])")
    assert seen.stdout.strip() == "['note', 'markdown']"

    # mlt.note() from code: stored, not displayed, appended to its document once.
    reply = k.run("nid = mlt.note('### Tuning\\n*depth 8* is enough.', doc='Findings')")
    assert reply.status == "ok" and not reply.outputs
    k.run("nid2 = mlt.note('### Tuning\\n*depth 8* is enough; 12 overfits.', doc='Findings')")
    assert k.run("print(nid == nid2)").stdout.strip() == "True"  # same first line: same note
    assert k.run(HELPERS_DONE).stdout.strip() == "True"
    assert [b.kind for b in document.blocks()] == ["note", "markdown", "note"]

    # Bad plot names: one line, nothing shown, nothing stored.
    for bad in ("../roc.png", "/etc/passwd.png"):
        reply = k.run(f"# mlt: note plot={bad}\nnever stored")
        assert reply.status == "error" and reply.content["ename"] == "PlotPathError"
        (err,) = reply.of_type("error")
        assert len(err["traceback"]) == 1 and bad in err["traceback"][0]
        assert not reply.of_type("display_data")
    assert k.run("mlt.note('x', plot='sub/dir.png')").content["ename"] == "PlotPathError"
    assert len(mlt.Experiment(exp).notes()) == 2


def test_note_cells_with_a_cell_id_are_updated_even_when_rewritten(start_kernel, exp):
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    assert run_with_cell_id(k, "# mlt: note\nFirst draft.", "cell-1") == "ok"
    assert run_with_cell_id(k, "# mlt: note\nA rewritten note.", "cell-1") == "ok"
    two = "mlt.note('about a', plot='a.png')\nmlt.note('about b', plot='b.png')"
    assert run_with_cell_id(k, two, "cell-2") == "ok"
    assert run_with_cell_id(k, two.replace("about", "more about"), "cell-2") == "ok"
    notes = mlt.Experiment(exp).notes()
    assert sorted(notes["markdown"].str.strip()) == ["A rewritten note.", "more about a", "more about b"]
    assert set(notes["cell_id"]) == {"cell-1", "cell-2"}


def test_savefig_anywhere_and_plots_folder_files_are_recorded(start_kernel, exp, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    # A note naming a plot that does not exist yet is kept…
    k.run("mlt.note('The ROC curve of the forest.', plot='roc.png')")
    assert k.run("import matplotlib.pyplot as plt").status == "ok"
    reply = k.run(
        "# mlt: record name=forest\n"
        "fig, ax = plt.subplots(); ax.plot([0, 1], [0, 1])\n"
        f"fig.savefig({str(exp / 'plots' / 'roc.png')!r})\n"
        f"plt.savefig({str(elsewhere / 'curve.png')!r})\n"
        f"fig.savefig({str(elsewhere / 'noext')!r})\n"
        "plt.close('all')"
    )
    assert reply.status == "ok" and not reply.outputs
    k.run(f"open({str(exp / 'plots' / 'hand.png')!r}, 'wb').write(b'\\x89PNG not really')")
    k.run(f"open({str(exp / 'plots' / 'roc.txt')!r}, 'w').write('# ROC\\nFrom the text file.')")
    k.run(f"open({str(exp / 'plots' / 'roc.txt')!r}, 'w').write('# ROC\\nEdited in place.')")
    k.run("x = 1")  # a cell that saves nothing records nothing

    e = mlt.Experiment(exp)
    plots = e.plots().set_index("path")
    forest = e.runs().set_index("name").loc["forest", "run_id"]
    roc, curve = plots.loc["plots/roc.png"], plots.loc[str(elsewhere / "curve.png")]
    assert roc["file"] == "roc.png" and curve["file"] == str(elsewhere / "curve.png")
    assert str(elsewhere / "noext.png") in plots.index
    for row, path in ((roc, exp / "plots" / "roc.png"), (curve, elsewhere / "curve.png")):
        assert row["run_id"] == forest and row["source"] == "savefig" and row["cell_seq"] == 4
        assert row["size_bytes"] == path.stat().st_size
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    hand = plots.loc["plots/hand.png"]
    assert hand["cell_seq"] == 5 and pd.isna(hand["run_id"])
    assert len(plots) == 4

    notes = e.notes().set_index("markdown")
    # …and linked once the plot appears.
    assert notes.loc["The ROC curve of the forest.", "plot_path"] == "plots/roc.png"
    # plots/roc.txt is the note of plots/roc.png; edited in place, it stays one note.
    assert "# ROC\nFrom the text file." not in notes.index
    text_note = notes.loc["# ROC\nEdited in place."]
    assert text_note["plot"] == "roc.png" and text_note["execution_count"] == 7


def test_inline_figures_are_saved_into_plots_named_after_the_run(start_kernel, exp):
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("%matplotlib inline\nimport matplotlib.pyplot as plt\nfrom IPython.display import display")
    reply = k.run("# mlt: record name=mlp\nplt.plot([3, 2, 1]);")
    assert reply.status == "ok"
    (shown,) = reply.of_type("display_data")
    assert "image/png" in shown["data"]  # the output itself is untouched
    k.run("fig, ax = plt.subplots(); ax.bar([1, 2], [3, 4]); display(fig); display(fig); plt.close(fig)")

    e = mlt.Experiment(exp)
    plots = e.plots().set_index("file")
    assert set(plots.index) == {"mlp-3-1.png", "cell-4-1.png"}  # the same figure twice is saved once
    mlp = plots.loc["mlp-3-1.png"]
    assert mlp["source"] == "inline" and mlp["path"] == "plots/mlp-3-1.png"
    assert mlp["run_id"] == e.runs()["run_id"].iloc[0]
    saved = (exp / "plots" / "mlp-3-1.png").read_bytes()
    assert saved.startswith(PNG_MAGIC) and mlp["sha256"] == hashlib.sha256(saved).hexdigest()
    assert plots.loc["cell-4-1.png", "cell_seq"] == 4


def test_doc_notes_survive_odd_titles_and_a_quick_shutdown(start_kernel, exp):
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    bad = k.run("mlt.note('bad', doc='a\\x00b')")  # refused in the cell, in one line
    assert bad.content["ename"] == "ValueError" and "printable" in bad.content["evalue"]
    assert k.run("mlt.note('draft', doc='-draft')\nmlt.note('help', doc='--help')").status == "ok"
    assert k.run(HELPERS_DONE).stdout.strip() == "True"
    assert {"-draft", "--help"} <= set(mlt.Experiment(exp).documents()["title"])
    # Eight notes, and the kernel shut down at once: what its helpers had no time for,
    # the next session on the folder adds.
    k.run("for i in range(8):\n    mlt.note(f'note {i}', doc='Many')")
    t0 = time.monotonic()
    k.shutdown()
    assert time.monotonic() - t0 < 5  # within Jupyter's patience: no SIGTERM
    assert mlt.Experiment(exp).sessions()["status"].tolist() == ["ended"]
    nxt = start_kernel(extra_arguments=NO_WATCHER)
    nxt.run(f"EXP_PATH = {str(exp)!r}\nx = 1")
    assert nxt.run(HELPERS_DONE).stdout.strip() == "True"
    many = mlt.Experiment(exp).document("Many").blocks()
    notes = mlt.Experiment(exp).notes().set_index("note_id")
    assert sorted(notes.loc[[b.content for b in many], "markdown"]) == [f"note {i}" for i in range(8)]


def test_savefig_in_the_cell_that_first_imports_matplotlib(start_kernel, exp, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    k = start_kernel(extra_arguments=NO_WATCHER)
    k.run(f"EXP_PATH = {str(exp)!r}")
    reply = k.run(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        f"plt.plot([0, 1], [1, 0]); plt.savefig({str(elsewhere / 'first.png')!r}); plt.close('all')"
    )
    assert reply.status == "ok"
    plots = mlt.Experiment(exp).plots()
    assert plots["path"].tolist() == [str(elsewhere / "first.png")]
    assert plots["source"].tolist() == ["savefig"] and plots["cell_seq"].tolist() == [2]
