"""Notes from Markdown cells: a real Jupyter server saves the notebook, the kernel records its tagged cells."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from jupyter_client.blocking import BlockingKernelClient

import mlt_kernel as mlt
from mlt_kernel.core.errors import DirectiveError
from mlt_kernel.recording import notebook_notes
from mlt_kernel.recording.directives import parse_markdown_note
from mlt_kernel.recording.notebook_notes import (
    MarkdownNote,
    NotebookError,
    NotebookNotes,
    notebook_path,
    scan_notebook,
)
from mlt_kernel.tracking.notes import markdown_note_id, note_digest

NO_WATCHER = ["--MLTrackKernel.watcher=False"]  # not what these tests are about
HELPERS_DONE = "print(get_ipython().kernel.recorder.helpers.wait(60))"
TAG = '<!-- mlt: note plot=roc.png doc="Findings" -->'
NOTE = "## ROC\nThe forest wins <b>clearly</b>.\n"
TOKEN = "md-notes-test-token-0123456789abcdef"


def markdown_cell(source: str, cell_id: str | None = "findings-1") -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": "markdown", "metadata": {}, "source": source}
    if cell_id is not None:
        cell["id"] = cell_id
    return cell


def code_cell(source: str, cell_id: str = "code-1") -> dict[str, Any]:
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def notebook(*cells: dict[str, Any], minor: int = 5) -> dict[str, Any]:
    return {"nbformat": 4, "nbformat_minor": minor, "metadata": {}, "cells": list(cells)}


def note_lines(exp: Path) -> int:
    """How many ``notes`` rows the folder holds: every version, in journals and compacted files."""
    import pyarrow.parquet as pq

    in_journals = sum(
        line.startswith(b'{"table":"notes"')
        for journal in (exp / "journals").glob("*")
        for line in journal.read_bytes().splitlines()
    )
    return in_journals + sum(pq.ParquetFile(f).metadata.num_rows for f in (exp / "tables" / "notes").glob("*.parquet"))


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "the notes") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None and value is not False:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def notes_where(exp: Path, column: str, value: Any) -> Any:
    if not (exp / "journals").is_dir():
        return None
    notes = mlt.Experiment(exp).notes()
    return notes if (notes[column] == value).any() else None


# -- the tag and the scan ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "options", "markdown"),
    [
        (f"{TAG}\n{NOTE}", {"plot": "roc.png", "doc": "Findings"}, NOTE),
        ("\n\n  <!--mlt:note-->\nJust text.", {}, "Just text."),
        ("<!-- mlt: note doc='A --> B' -->\r\nx", {"doc": "A --> B"}, "x"),
        ("<!-- mlt: note plot=roc.png   # a comment -->", {"plot": "roc.png"}, ""),
    ],
)
def test_a_markdown_tag_is_parsed_as_the_note_directive(source: str, options: dict[str, str], markdown: str) -> None:
    parsed = parse_markdown_note(source)
    assert parsed is not None
    directive, body = parsed
    assert (directive.verb, directive.options, body) == ("note", options, markdown)


@pytest.mark.parametrize(
    "source",
    ["Text first\n<!-- mlt: note -->", "<!-- a comment -->\n<!-- mlt: note -->", "# mlt: note\nx", "<!-- mlt: note"],
)
def test_only_a_tag_on_the_first_line_counts(source: str) -> None:
    assert parse_markdown_note(source) is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<!-- mlt: record name=x -->", "a Markdown cell can only be a note, not 'record'"),
        ("<!-- mlt: note colour=red -->", "'note' takes plot= and doc=, not colour"),
        ('<!-- mlt: note doc="unclosed -->', "unclosed quote"),
        ("<!-- mlt: note plot= -->", "plot= is empty"),
        ("<!-- mlt: note roc.png -->", "expected key=value"),
    ],
)
def test_a_bad_tag_is_a_one_line_directive_error(source: str, message: str) -> None:
    with pytest.raises(DirectiveError, match=message) as info:
        parse_markdown_note(source)
    assert "\n" not in str(info.value)


def test_scanning_finds_tagged_markdown_cells_and_names_the_bad_ones() -> None:
    nb = notebook(
        markdown_cell(f"{TAG}\n{NOTE}", "a"),
        code_cell("# mlt: note\nnot a Markdown note"),
        markdown_cell("An untagged cell mentioning mlt.", "b"),
        markdown_cell(["<!-- mlt: note plot=pr.png -->\n", "PR ", "curve."], "c"),
        markdown_cell("<!-- mlt: note colour=red -->\nbad", "d"),
        markdown_cell("<!-- mlt: note -->\nsame id", "a"),
        {"cell_type": "markdown", "source": 42},
        "not a cell",
        {"cell_type": "markdown", "id": ["x"], "source": "<!-- mlt: note -->\nbad id"},
    )
    scan = scan_notebook(json.dumps(nb).encode())
    assert scan.notes == (
        MarkdownNote("a", "a", NOTE, "roc.png", "Findings"),
        MarkdownNote("c", "c", "PR curve.", "pr.png", None),
    )
    assert scan.problems == (
        "cell 5: line 1: 'note' takes plot= and doc=, not colour",
        "cell 6: cell id 'a' is already another note's",
        "cell 9: the cell id \"['x']\" is not an nbformat cell id",
    )


def test_without_cell_ids_a_note_is_known_by_its_first_line() -> None:
    nb = notebook(markdown_cell("<!-- mlt: note -->\n\n  First line \nmore", None), minor=4)
    (note,) = scan_notebook(json.dumps(nb).encode()).notes
    assert (note.key, note.cell_id) == ("line:First line", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"cells": [ {"cell_type": "markdown", "source": "<!-- mlt: note -->"', "not JSON (Expecting"),
        (b'\xff\xfe{"mlt"}', "not UTF-8 text (byte 0)"),
        (b'["mlt"]', "not a notebook (no list of cells)"),
        (b'{"cells": {"mlt": 1}}', "not a notebook (no list of cells)"),
        (b'{"mlt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not a notebook JSON can read (RecursionError)"),
        (b'{"mlt": ' + b"9" * 5000 + b"}", "not a notebook JSON can read (ValueError)"),
    ],
)
def test_a_file_that_is_no_notebook_is_one_line(data: bytes, message: str) -> None:
    with pytest.raises(NotebookError) as info:
        scan_notebook(data)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_file_without_the_mark_is_not_parsed() -> None:
    assert scan_notebook(b"\x00 not even JSON") == notebook_notes.Scan()


@pytest.mark.parametrize(
    ("ns", "env", "expected"),
    [
        ({}, {"JPY_SESSION_NAME": "/srv/work/analysis.ipynb"}, "/srv/work/analysis.ipynb"),
        ({"__session__": "/srv/a.ipynb"}, {}, "/srv/a.ipynb"),
        ({}, {"JPY_SESSION_NAME": "work/analysis.ipynb"}, "/start/analysis.ipynb"),
        ({"__vsc_ipynb_file__": "/home/u/b.ipynb"}, {}, "/home/u/b.ipynb"),
        ({}, {"JPY_SESSION_NAME": "console-1-0a2f"}, None),
        ({"__vsc_ipynb_file__": 3}, {}, None),
        ({}, {}, None),
    ],
)
def test_where_the_notebook_is(ns: dict[str, Any], env: dict[str, str], expected: str | None) -> None:
    found = notebook_path(ns, env, Path("/start"))
    assert (str(found) if found else None) == expected


# -- the watcher, with a small session standing in for the recorder -----------------------


class Recorded:
    """A ``Session`` that keeps what is written (the recorder's journal is tested through real kernels)."""

    def __init__(self, folder: Path) -> None:
        self.session_id = "s-1"
        self.notebook = None
        self.log = logging.getLogger("mlt-test")
        self.run = None
        self.pending_cell = None
        self._folder = folder
        self.rows: list[dict[str, Any]] = []
        self.documents: list[tuple[str, str]] = []

    def wanted_path(self) -> Path:
        return self._folder

    def folder(self) -> Path:
        return self._folder

    def write(self, table: str, record: Mapping[str, Any]) -> Path:
        self.rows.append({"table": table, **record})
        return self._folder

    def add_to_document(self, title: str, note_id: str) -> None:
        self.documents.append((title, note_id))


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[NotebookNotes, Recorded, Path, list[str]]]:
    path = tmp_path / "analysis.ipynb"
    session = Recorded(tmp_path / "exp")
    said: list[str] = []
    notes = NotebookNotes(session, lambda: path, lambda: None, said.append, recorded=lambda folder, ids: {})
    yield notes, session, path, said
    notes.close()


def flush(notes: NotebookNotes) -> None:
    """Write what was found, once the folder has said what it holds (the first time, a helper's answer)."""
    notes.flush()
    wait_for(lambda: not notes.asking, what="the folder's answer")
    notes.flush()


def save(path: Path, nb: dict[str, Any] | bytes) -> None:
    """Save as jupyter_server does: a new file renamed over the old one."""
    tmp = path.with_name(f".~{path.name}")
    tmp.write_bytes(nb if isinstance(nb, bytes) else json.dumps(nb).encode())
    os.replace(tmp, path)


def test_a_saved_note_is_written_once_and_updated_when_edited(watched) -> None:
    notes, session, path, said = watched
    assert notes.check() is False  # not saved yet
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}")))
    assert notes.check() is True and notes.check() is False  # unchanged since
    flush(notes)
    (row,) = session.rows
    assert (row["table"], row["markdown"], row["plot"], row["doc"], row["cell_id"]) == (
        "notes",
        NOTE,
        "roc.png",
        "Findings",
        "findings-1",
    )
    assert row["run_id"] is None and row["execution_count"] is None and row["deleted"] is False
    assert session.documents == [("Findings", row["note_id"])]

    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}"), code_cell("x = 1")))  # only a code cell changed
    assert notes.check() is True
    flush(notes)
    assert len(session.rows) == 1  # the note is the same: nothing written

    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE.replace('clearly', 'by far')}")))
    assert notes.check() is True
    flush(notes)
    assert [r["note_id"] for r in session.rows] == [row["note_id"]] * 2
    assert "by far" in session.rows[-1]["markdown"] and not said

    save(path, notebook(code_cell("x = 1")))  # the cell deleted: its note stays as it was
    assert notes.check() is False
    flush(notes)
    assert len(session.rows) == 2


def test_what_the_folder_already_holds_is_not_written_again(tmp_path: Path) -> None:
    path = tmp_path / "analysis.ipynb"
    session = Recorded(tmp_path / "exp")
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}", "a"), markdown_cell("<!-- mlt: note -->\nnew text", "b")))
    asked: list[tuple[Path, list[str]]] = []

    def recorded(folder: Path, ids: list[str]) -> dict[str, str]:
        asked.append((folder, ids))  # "a" as stored (plot and title as written), "b" with another text
        if folder != tmp_path / "exp":
            return {}
        return {ids[0]: note_digest(NOTE, "roc.png", "Findings"), ids[1]: note_digest("old text", None, None)}

    notes = NotebookNotes(session, lambda: path, lambda: None, lambda line: None, recorded=recorded)
    assert notes.check() is True
    flush(notes)
    assert asked == [(tmp_path / "exp", [markdown_note_id(str(path), "a"), markdown_note_id(str(path), "b")])]
    assert [r["markdown"] for r in session.rows] == ["new text"]
    save(path, notebook(markdown_cell(f"{TAG}\nEdited.", "a")))
    assert notes.check() is True
    flush(notes)
    assert [r["markdown"] for r in session.rows] == ["new text", "Edited."] and len(asked) == 1  # asked once

    session._folder = tmp_path / "other"  # the notebook set another EXP_PATH: the next save writes there too
    save(path, notebook(markdown_cell(f"{TAG}\nEdited.", "a"), code_cell("EXP_PATH = 'other'")))
    assert notes.check() is True
    flush(notes)
    assert [r["markdown"] for r in session.rows] == ["new text", "Edited.", "Edited."]
    assert [folder for folder, _ in asked] == [tmp_path / "exp", tmp_path / "other"]


def test_a_bad_option_value_is_one_line_and_the_other_notes_are_written(watched) -> None:
    notes, session, path, said = watched
    save(
        path,
        notebook(
            markdown_cell("<!-- mlt: note plot=../../etc/passwd -->\nx", "a"),
            markdown_cell(f"<!-- mlt: note doc={'x' * 201} plot=ok.png -->\ny", "b"),
            markdown_cell("<!-- mlt: note plot=roc.png -->\n<script>alert(1)</script>", "c"),
        ),
    )
    assert notes.check() is True
    flush(notes)
    assert [(r["cell_id"], r["markdown"]) for r in session.rows] == [("c", "<script>alert(1)</script>")]  # verbatim
    (line,) = said
    assert line.startswith("MLTrack: Markdown notes of analysis.ipynb not recorded: cell id 'a': ")
    assert "'../../etc/passwd'" in line and line.endswith("(and 1 more)") and "\n" not in line


@pytest.mark.parametrize("hostile", ["malformed", "link", "huge", "fifo", "directory"])
def test_a_hostile_notebook_is_one_line_and_loses_nothing(watched, tmp_path: Path, hostile: str) -> None:
    notes, session, path, said = watched
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}")))
    assert notes.check() is True
    flush(notes)
    assert len(session.rows) == 1
    path.unlink()
    if hostile == "malformed":
        path.write_bytes(b'{"cells": [{"cell_type": "markdown", "source": "<!-- mlt: note -->\\nnew"')
    elif hostile == "link":
        secret = tmp_path / "secret.ipynb"
        secret.write_text(json.dumps(notebook(markdown_cell("<!-- mlt: note -->\nsecret"))))
        path.symlink_to(secret)
    elif hostile == "huge":
        with path.open("wb") as f:
            f.truncate(notebook_notes.MAX_NOTEBOOK_BYTES + 1)  # sparse: nothing is written to the disk
    elif hostile == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    assert notes.check() is False and not said  # perhaps a save in progress: looked at again first
    for _ in range(3):  # said once, however often it is looked at
        assert notes.check() is False
    flush(notes)
    assert len(session.rows) == 1  # the note recorded before is untouched
    (line,) = said
    assert line.startswith("MLTrack: Markdown notes of analysis.ipynb not read: ") and "\n" not in line
    expected = {
        "malformed": "not JSON",
        "link": "a symbolic link",
        "huge": f"notebook larger than {notebook_notes.MAX_NOTEBOOK_BYTES} bytes",
        "fifo": "not a regular file (a FIFO, socket or device)",
        "directory": "a folder, not a regular file",
    }[hostile]
    assert expected in line


def test_a_file_being_written_is_read_again_without_a_warning(watched, monkeypatch) -> None:
    notes, _session, path, said = watched
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}")))
    real_read = notebook_notes.read_notebook

    def read_while_it_grows(p: Path) -> bytes:
        data = real_read(p)
        with p.open("ab") as f:
            f.write(b" ")  # the writer was not done
        return data[: len(data) // 2]

    monkeypatch.setattr(notebook_notes, "read_notebook", read_while_it_grows)
    assert notes.check() is False and not said
    monkeypatch.setattr(notebook_notes, "read_notebook", real_read)
    assert notes.check() is True and not said


def test_a_save_in_place_seen_half_done_is_no_warning(watched) -> None:
    notes, _session, path, said = watched
    data = json.dumps(notebook(markdown_cell(f"{TAG}\n{NOTE}"))).encode()
    with path.open("wb") as f:  # as jupyter_server saves: the same file, truncated and rewritten
        f.write(data[:40])
        f.flush()
        assert notes.check() is False and not said
        f.write(data[40:])
    assert notes.check() is True and not said


def test_too_many_notes_are_cut_with_one_line(watched, monkeypatch) -> None:
    notes, session, path, said = watched
    monkeypatch.setattr(notebook_notes, "MAX_MARKDOWN_NOTES", 2)
    save(path, notebook(*(markdown_cell(f"<!-- mlt: note -->\nnote {i}", f"c{i}") for i in range(4))))
    assert notes.check() is True
    flush(notes)
    assert [r["markdown"] for r in session.rows] == ["note 0", "note 1"]
    assert said == ["MLTrack: Markdown notes of analysis.ipynb not read: cell 3 and later: more than 2 Markdown notes"]


# -- a real kernel, told its notebook like jupyter_server tells it ------------------------


def stderr_lines(reply: Any) -> list[str]:
    return [line for line in reply.stderr.splitlines() if line.strip()]


def test_a_kernel_records_markdown_notes_and_says_what_it_cannot_read(start_kernel, exp, tmp_path):
    path = tmp_path / "analysis.ipynb"
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}")))
    k = start_kernel(extra_arguments=NO_WATCHER, env={"JPY_SESSION_NAME": str(path), "MLT_EXP_PATH": str(exp)})
    # Saved before the first cell: written once that cell has chosen the folder.
    assert k.run("import mlt_kernel as mlt").status == "ok"
    notes = wait_for(lambda: notes_where(exp, "markdown", NOTE))
    assert len(notes) == 1 and notes.iloc[0]["plot"] == "roc.png"
    # Saved while the kernel is idle: written within about a second, no cell needed.
    save(path, notebook(markdown_cell(f"{TAG}\nEdited while idle.")))
    notes = wait_for(lambda: notes_where(exp, "markdown", "Edited while idle."))
    assert len(notes) == 1 and note_lines(exp) == 2

    save(path, b'{"cells": ["<!-- mlt: note -->"')  # broken: one line under the next cell, nothing lost
    assert wait_for(lambda: stderr_lines(k.run("pass")) or None, what="the warning") == [
        "MLTrack: Markdown notes of analysis.ipynb not read: not JSON (Expecting ',' delimiter at line 1 column 32)"
    ]
    assert stderr_lines(k.run("pass")) == []  # said once
    assert list(mlt.Experiment(exp).notes()["markdown"]) == ["Edited while idle."]
    assert note_lines(exp) == 2

    # A new kernel on the same notebook: what the folder holds is not written again, an edit is.
    k.shutdown()
    save(path, notebook(markdown_cell(f"{TAG}\nEdited while idle."), markdown_cell("<!-- mlt: note -->\nNew.", "b")))
    k = start_kernel(extra_arguments=NO_WATCHER, env={"JPY_SESSION_NAME": str(path), "MLT_EXP_PATH": str(exp)})
    k.run("pass")
    wait_for(lambda: notes_where(exp, "markdown", "New."))
    assert note_lines(exp) == 3


def test_markdown_notes_can_be_turned_off(start_kernel, exp, tmp_path):
    path = tmp_path / "analysis.ipynb"
    save(path, notebook(markdown_cell(f"{TAG}\n{NOTE}")))
    k = start_kernel(
        extra_arguments=[*NO_WATCHER, "--MLTrackKernel.markdown_notes=False"],
        env={"JPY_SESSION_NAME": str(path), "MLT_EXP_PATH": str(exp)},
    )
    threads = k.run("import threading; print(sorted(t.name for t in threading.enumerate()))").stdout
    assert "mlt-notebook-notes" not in threads
    time.sleep(2.5)
    k.run("pass")
    assert note_lines(exp) == 0


# -- a real Jupyter server: the sessions API tells the kernel its notebook, the contents API saves it ------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    """JupyterLab's server in a subprocess, in the test's isolated environment, on a free port, with a fixed token."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / "server.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",  # CI containers run as root
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={TOKEN}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, timeout=60, what="the Jupyter server")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            return self.api("GET", "status") is not None
        except OSError:
            return False

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def save(self, path: str, nb: dict[str, Any]) -> None:
        """What JupyterLab's save does: PUT the notebook model to the contents API."""
        self.api("PUT", f"contents/{path}", {"type": "notebook", "format": "json", "content": nb})

    def connect(self, session: dict[str, Any]) -> BlockingKernelClient:
        """A client of the kernel the server started for *session*, through its connection file."""
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{session['kernel']['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        return client

    def stop(self) -> None:
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def execute(client: BlockingKernelClient, code: str) -> str:
    """Run *code*, which must succeed; what it printed (stdout and stderr)."""
    shown: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            shown.append(msg["content"]["text"])

    reply = client.execute_interactive(code, timeout=60, output_hook=keep)
    assert reply["content"]["status"] == "ok"
    return "".join(shown)


@pytest.fixture
def jupyter_server(tmp_path: Path, isolated_jupyter: Path, exp: Path) -> Iterator[JupyterServer]:
    # The MLTrack kernelspec, installed into the isolated Jupyter data folder under its own name.
    subprocess.run(
        [sys.executable, "-m", "mlt_kernel.cli", "install", "--user", "--name", "mlt-md-test"],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "root"
    (root / "work").mkdir(parents=True)
    server = JupyterServer(root, {**os.environ, "MLT_EXP_PATH": str(exp)})
    yield server
    server.stop()


def test_a_notebook_saved_through_jupyter_gets_its_markdown_notes_recorded(jupyter_server, exp, tmp_path):
    server = jupyter_server
    nb = notebook(code_cell("import mlt_kernel as mlt"), markdown_cell("Nothing tagged yet."))
    server.save("work/analysis.ipynb", nb)
    # As JupyterLab opens a notebook: a session with the notebook's path and name.
    session = server.api(
        "POST",
        "sessions",
        {
            "path": "work/analysis.ipynb",
            "name": "analysis.ipynb",
            "type": "notebook",
            "kernel": {"name": "mlt-md-test"},
        },
    )
    client = server.connect(session)
    try:
        # The server told the kernel where its notebook is: the absolute path.
        where = tmp_path / "root" / "work" / "analysis.ipynb"
        assert execute(client, "print(__session__)").strip() == str(where)
        execute(client, "import mlt_kernel as mlt")  # the first cell chooses the experiment folder (MLT_EXP_PATH)

        tagged = markdown_cell(f"{TAG}\n{NOTE}", "findings-1")
        server.save("work/analysis.ipynb", notebook(code_cell("import mlt_kernel as mlt"), tagged))
        notes = wait_for(lambda: notes_where(exp, "cell_id", "findings-1"))
        assert len(notes) == 1
        note = notes.iloc[0]
        assert (note["markdown"], note["plot"], note["doc"]) == (NOTE, "roc.png", "Findings")
        assert pd.isna(note["run_id"]) and pd.isna(note["execution_count"])  # no run, no execution
        # Tied to its plot once it exists, and appended to its document once.
        execute(
            client,
            f"import matplotlib.pyplot as plt\nplt.plot([0, 1], [0, 1])\nplt.savefig({str(exp / 'plots' / 'roc.png')!r})",
        )
        assert execute(client, HELPERS_DONE).strip() == "True"
        notes = mlt.Experiment(exp).notes()
        assert notes.iloc[0]["plot_path"] == "plots/roc.png"
        document = mlt.Experiment(exp).document("Findings")
        assert [(b.kind, b.content) for b in document.blocks()] == [("note", note["note_id"])]
        assert note_lines(exp) == 1

        # Saved unchanged (the code cell edited only): nothing new in the journal.
        server.save("work/analysis.ipynb", notebook(code_cell("import mlt_kernel as mlt  # edited"), tagged))
        time.sleep(2.5)
        assert note_lines(exp) == 1

        # Edited and saved again: the same note, updated, not duplicated; the document keeps one block.
        edited = markdown_cell(f"{TAG}\n## ROC\nThe forest wins by far.\n", "findings-1")
        server.save("work/analysis.ipynb", notebook(code_cell("import mlt_kernel as mlt"), edited))
        notes = wait_for(lambda: notes_where(exp, "markdown", "## ROC\nThe forest wins by far.\n"))
        assert len(notes) == 1 and notes.iloc[0]["note_id"] == note["note_id"] and note_lines(exp) == 2
        assert execute(client, HELPERS_DONE).strip() == "True"
        assert [b.kind for b in mlt.Experiment(exp).document("Findings").blocks()] == ["note"]

        # A hostile save: a bad plot name is one line under the next cell; the note keeps its last version.
        bad = markdown_cell("<!-- mlt: note plot=../../outside.png -->\nMoved?", "findings-1")
        server.save("work/analysis.ipynb", notebook(bad))
        out = wait_for(lambda: execute(client, "pass").split("\n")[:-1] or None, what="the warning")
        assert out == [
            "MLTrack: Markdown notes of analysis.ipynb not recorded: cell id 'findings-1': "
            "plot='../../outside.png': '..' is not allowed; name a file in the plots/ folder"
        ]
        assert execute(client, "pass") == ""  # said once
        notes = mlt.Experiment(exp).notes()
        assert list(notes["markdown"]) == ["## ROC\nThe forest wins by far.\n"] and note_lines(exp) == 2
    finally:
        client.stop_channels()


def test_a_session_without_a_name_gives_a_relative_path_found_from_the_kernels_folder(jupyter_server, tmp_path):
    # A client that creates its session without a name: the server passes the path relative to its root.
    jupyter_server.save("work/other.ipynb", notebook(markdown_cell("<!-- mlt: note -->\nx")))
    session = jupyter_server.api(
        "POST", "sessions", {"path": "work/other.ipynb", "type": "notebook", "kernel": {"name": "mlt-md-test"}}
    )
    client = jupyter_server.connect(session)
    try:
        code = (
            "import os, pathlib\nfrom mlt_kernel.recording.notebook_notes import notebook_path\n"
            "print(__session__)\nprint(notebook_path(get_ipython().user_ns, os.environ, pathlib.Path.cwd()))"
        )
        told, found = execute(client, code).split()
        assert told == "work/other.ipynb"
        assert found == str(tmp_path / "root" / "work" / "other.ipynb")
    finally:
        client.stop_channels()
