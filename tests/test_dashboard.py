"""The dashboard, driven for real: ``mlt-dashboard`` subprocesses and headless Chromium.

One realistic experiment (``test_dashboard_data``, written with the real
writer) is served once per module; each browser test opens its own context and
fails on any page error or any request to a host other than the dashboard's.
Set ``MLT_DASHBOARD_SCREENSHOTS=docs`` to save a screenshot of each page there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_dashboard_data import GUARDED, build_experiment

from mlt_kernel.core import layout
from mlt_kernel.experiment import Experiment
from mlt_kernel.store.journal import JournalWriter, journal_name

pytestmark = pytest.mark.browser

_SCRIPT = Path(sys.executable).parent / "mlt-dashboard"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mlt_dashboard.cli"]
SCREENSHOTS = os.environ.get("MLT_DASHBOARD_SCREENSHOTS")
TIMEOUT_MS = 30_000


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_experiment(tmp_path_factory.mktemp("dash") / "churn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """One ``mlt-dashboard`` subprocess; stopped by its own pid only."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [*CLI, str(path), "--port", str(self.port), "--no-browser", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started = time.monotonic()
        self.output: list[str] = []
        self.url = self._wait_ready()
        self.base = "http://" + urllib.parse.urlsplit(self.url).netloc
        match = re.search(r"[?&]token=([^&]+)", self.url)
        self.token = match.group(1) if match else None
        self._wait_live()

    def _wait_live(self) -> None:
        """Until the server itself answers (the port answers earlier: ``mlt_dashboard.early``)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}/static/js/bokeh.min.js", timeout=5).close()
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 503:  # the early responder's answer to all but pages
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("the dashboard's server did not come up")

    def page_url(self, path: str) -> str:
        """The URL of a page, carrying the access token as the printed URL does."""
        if not self.token:
            return f"{self.base}/{path}"
        return f"{self.base}/{path}{'&' if '?' in path else '?'}token={self.token}"

    def _wait_ready(self) -> str:
        assert self.proc.stdout is not None
        lines = self.output = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"MLTrack dashboard: (http://\S+)", line)
            if match:
                return match.group(1)
        self.stop()
        raise AssertionError("the dashboard did not start:\n" + "".join(lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def dashboard(experiment: dict[str, Any]) -> Iterator[Dashboard]:
    dash = Dashboard(experiment["path"])
    yield dash
    dash.stop()


class Watched:
    """A browser page that records page errors and requests to other hosts."""

    def __init__(self, page: Any, allowed: Callable[[str], bool]) -> None:
        self.page = page
        self.errors: list[str] = []
        self.outbound: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda req: None if allowed(req.url) else self.outbound.append(req.url))

    def check(self) -> None:
        assert self.errors == [], f"page errors: {self.errors}"
        assert self.outbound == [], f"requests to other hosts: {self.outbound}"


@pytest.fixture
def open_page(browser: Any, dashboard: Dashboard) -> Iterator[Callable[..., Any]]:
    """``open_page("summary")``: a fresh context on a dashboard page; checked for errors and outbound requests."""
    contexts: list[tuple[Any, Watched]] = []
    local = (f"http://127.0.0.1:{dashboard.port}/", f"ws://127.0.0.1:{dashboard.port}/", "blob:", "data:")

    def open_(path: str, wait_text: str = "MLTrack", base: Dashboard | None = None) -> Any:
        dash = base or dashboard
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        watched = Watched(page, lambda url: url.startswith((*local, f"http://127.0.0.1:{dash.port}/")))
        contexts.append((ctx, watched))
        page.goto(dash.page_url(path))
        page.get_by_text(wait_text).first.wait_for()
        return page

    yield open_
    for ctx, watched in contexts:
        ctx.close()
        watched.check()


def _screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.wait_for_timeout(1500)  # let Bokeh finish drawing
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


_CHART_TEXTS = """() => Bokeh.documents.flatMap(d => [...d.all_models].flatMap(m => {
    const out = [];
    // A title is a string, or a PlainText model (stored names are never read as TeX).
    const title = m.title && m.title.text;
    const text = typeof title === "string" ? title : (title && typeof title.text === "string" ? title.text : null);
    if (m.name && text !== null) out.push(m.name + ": " + text);
    if (Array.isArray(m.items)) for (const it of m.items) if (it.label && it.label.value) out.push("legend: " + it.label.value);
    return out;
}))"""


def _charts(page: Any) -> list[str]:
    """Titles (``name: title``) and legend entries (``legend: …``) of the Bokeh charts on the page.

    Bokeh draws them on a canvas, so they are read from its document, not the DOM.
    """
    return list(page.evaluate(_CHART_TEXTS))


def _wait_chart(page: Any, text: str) -> None:
    _wait(lambda: any(text in t for t in _charts(page)), f"a chart showing {text!r}")


def _first_run_name(page: Any) -> str:
    return page.locator('.tabulator-row .tabulator-cell[tabulator-field="name"]').first.inner_text().strip()


# -- the command line --------------------------------------------------------------------


def test_help_reads_well() -> None:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("PATH", "--port", "--address", "--no-browser", "--export"):
        assert option in out
    assert "127.0.0.1" in out and "examples:" in out


def test_wrong_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_another_address_only_when_asked_and_with_a_warning(experiment: dict[str, Any]) -> None:
    from mlt_dashboard.cli import build_parser

    assert build_parser().parse_args(["x"]).address == "127.0.0.1"
    # 127.0.0.2 is another address that still stays on this machine.
    dash = Dashboard(experiment["path"], "--address", "127.0.0.2")
    try:
        assert dash.url.startswith("http://127.0.0.2:")
        assert "warning: listening on 127.0.0.2" in "".join(dash.output)
    finally:
        dash.stop()


# -- the server ---------------------------------------------------------------------------


def test_server_is_local_and_refuses_foreign_websockets(dashboard: Dashboard) -> None:
    assert dashboard.url.startswith(f"http://127.0.0.1:{dashboard.port}/")
    with urllib.request.urlopen(dashboard.page_url("summary"), timeout=30) as resp:
        page = resp.read().decode()
    # Scripts and styles come from this server, never from a CDN.
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(
        not s.startswith(("http:", "https:", "//")) or s.startswith(dashboard.base) for s in sources
    ), sources
    with socket.create_connection(("127.0.0.1", dashboard.port), timeout=10) as s:
        s.sendall(
            b"GET /summary/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: http://evil.example\r\n\r\n" % dashboard.port
        )
        status = s.recv(200).split(b"\r\n")[0]
    assert b" 403 " in status, status


# -- the access token (issue 8) -----------------------------------------------------------------


def _ws_status(port: int, cookie: str = "") -> bytes:
    """The status line of a websocket handshake from the right origin."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET /summary/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: http://127.0.0.1:%d\r\n%s\r\n" % (port, port, cookie.encode())
        )
        return s.recv(200).split(b"\r\n")[0]


def test_without_the_token_there_is_no_data(browser: Any, dashboard: Dashboard, experiment: dict[str, Any]) -> None:
    assert dashboard.token and len(dashboard.token) >= 24
    ctx = browser.new_context()
    page = ctx.new_page()
    for path in ("summary", "run", "cells", "documents", f"summary?token={dashboard.token[:-2]}xx"):
        page.goto(f"{dashboard.base}/{path}")
        page.get_by_text("Open the URL printed in your terminal").wait_for()
        text = page.content()
        assert all(name not in text for name in experiment["run_ids"]), path
    assert ctx.cookies() == []
    assert b" 403 " in _ws_status(dashboard.port)
    assert b" 403 " in _ws_status(dashboard.port, f"Cookie: mlt_dashboard_{dashboard.port}=guess\r\n")
    # The printed URL lets the browser in, and its cookie carries it across pages.
    page.goto(dashboard.url)
    page.get_by_text("random_forest_deep", exact=True).first.wait_for()
    cookie = next(c for c in ctx.cookies() if c["name"] == f"mlt_dashboard_{dashboard.port}")
    assert cookie["httpOnly"] and cookie["value"] != dashboard.token
    page.goto(f"{dashboard.base}/cells")
    page.get_by_text("died").first.wait_for()
    ctx.close()


def test_no_token_opens_without_one(browser: Any, experiment: dict[str, Any]) -> None:
    dash = Dashboard(experiment["path"], "--no-token")
    try:
        assert dash.token is None and "access token off" in "".join(dash.output)
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{dash.base}/summary")
        page.get_by_text("random_forest_deep", exact=True).first.wait_for()
        ctx.close()
    finally:
        dash.stop()


# -- pages ------------------------------------------------------------------------------------


def test_summary_shows_the_answer_and_sorts(open_page: Callable[..., Any], experiment: dict[str, Any]) -> None:
    page = open_page("summary", "best by f1")
    for name in experiment["run_ids"]:
        page.get_by_text(name, exact=True).first.wait_for()
    assert "random_forest" in page.locator('[data-testid="card-best"]').inner_text()
    # The charts follow the table: Pareto, metrics, time, memory (+ parallel coordinates).
    _wait(lambda: page.locator(".bk-Figure").count() >= 4, "the summary's charts")
    _wait_chart(page, "legend: Pareto front")
    _wait_chart(page, "parallel-coordinates: Params against f1")
    header = page.locator('.tabulator-col[tabulator-field="f1"] .tabulator-col-title')
    header.click()
    _wait(lambda: _first_run_name(page) == "logistic_regression", "ascending F1 first")
    page.wait_for_timeout(500)
    header.click()
    _wait(lambda: _first_run_name(page) == "random_forest", f"descending F1 first, not {_first_run_name(page)}")
    _screenshot(page, "summary")


def test_navigation_and_run_page(open_page: Callable[..., Any], experiment: dict[str, Any]) -> None:
    page = open_page("summary", "best by f1")
    page.locator('.tabulator-cell[tabulator-field="name"] a', has_text="random_forest").first.click()
    page.wait_for_url(re.compile(r"/run\?"))
    page.locator('[data-testid="run-name"]', has_text="random_forest").wait_for()
    assert experiment["run_ids"]["random_forest"] in page.url
    _wait_chart(page, "memory-timeline: Memory over time")
    _wait_chart(page, "confusion-matrix: Confusion matrix · test · counts")
    _wait_chart(page, "legend: test · class 1 — AUC 0.999")
    _wait_chart(page, "legend: test · class 1 — AP 0.999")
    page.get_by_text("normalised", exact=True).click()
    _wait_chart(page, "confusion-matrix: Confusion matrix · test · normalised by true class")
    page.locator("select").nth(1).select_option("val")
    _wait_chart(page, "confusion-matrix: Confusion matrix · val · normalised by true class")
    _wait_chart(page, "legend: val · class 1 — AUC")
    # The plot, its note rendered, and the hostile note inert.
    assert page.locator('img[src^="data:image/png"]').count() >= 1
    page.get_by_text("Random forest ROC").first.wait_for()
    page.get_by_text("bold hostile note").first.wait_for()
    assert page.evaluate("() => window.__pwned") is None
    hrefs = page.locator(".mlt-note a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert all(h is None or not h.lower().startswith("javascript") for h in hrefs)
    page.locator(".mlt-note a", has_text="me too").first.click()  # its javascript: href was removed
    assert page.locator(".mlt-note [onerror]").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__pwned") is None
    if SCREENSHOTS:  # the MLP has everything: GPU, training curves, two splits
        page.goto(f"{page.url.split('/run')[0]}/run?run={experiment['run_ids']['mlp']}")
        page.locator('[data-testid="run-name"]', has_text="mlp").wait_for()
        _screenshot(page, "run")
        page.go_back()
    page.locator('[data-testid="nav-cells"]').click()
    page.wait_for_url(re.compile(r"/cells"))
    _wait_chart(page, "heaviest-wall_s: Heaviest cells by wall time")
    _wait_chart(page, "heaviest-peak_rss_bytes: Heaviest cells by peak RAM")
    page.get_by_text("died").first.wait_for()
    assert "out of memory" in page.locator(".mlt-banner").first.inner_text()
    page.get_by_text("⚠ killed").first.wait_for()
    page.get_by_text("⚠ error").first.wait_for()
    _screenshot(page, "cells")


_LABELS = """() => Bokeh.documents.flatMap(d => [...d.all_models].flatMap(m => {
    if (!("x_units" in m) || m.text == null) return [];  // Label annotations
    const text = typeof m.text === "string" ? m.text : m.text.text;
    return typeof text === "string" ? [text] : [];
}))"""


def test_a_run_the_memory_guard_stopped_shows_the_limit_the_guard_and_the_moment(
    open_page: Callable[..., Any], experiment: dict[str, Any]
) -> None:
    page = open_page(f"run?run={experiment['run_ids'][GUARDED]}")
    page.locator('[data-testid="run-name"]', has_text=GUARDED).wait_for()
    wanted = {"memory limit 8.0 GiB", "memory guard 90 %", "stopped by the memory guard at 7.2 GiB"}
    _wait(lambda: wanted <= set(page.evaluate(_LABELS)), "the limit, the guard line and the mark on the timeline")
    summary = open_page("summary", "best by")
    runs_card = summary.locator('[data-testid="card-runs"]').first.inner_text()
    assert "1 stopped by the memory guard" in runs_card and "1 killed" in runs_card
    cells = open_page("cells", "Heaviest")
    cells.get_by_text("⛨ memory guard").first.wait_for()
    assert "cells it stopped, the kernel kept" in cells.locator(".mlt-cards").first.inner_text()


def test_killed_run_shows_its_post_mortem(open_page: Callable[..., Any], experiment: dict[str, Any]) -> None:
    page = open_page(f"run?run={experiment['run_ids']['random_forest_deep']}", "This run was killed")
    assert "7.6 GiB" in page.locator(".mlt-banner").first.inner_text()
    page.get_by_text("No predictions logged").first.wait_for()  # an empty state that says what to do


def test_document_edited_in_the_browser_is_what_the_api_sees(
    open_page: Callable[..., Any], experiment: dict[str, Any]
) -> None:
    page = open_page("documents", "Documents")
    page.get_by_text("Churn model: findings").first.wait_for()  # the fixture's document, rendered
    page.get_by_placeholder("title of a new document").fill("Friday comparison")
    page.get_by_role("button", name="Create document").click()
    page.get_by_text("This document is empty").wait_for()
    page.get_by_role("button", name="+ Markdown block").click()
    editor = page.locator("textarea")
    editor.fill("## Verdict\n\nThe **forest** wins. <script>window.__pwned='doc'</script>")
    page.locator(".mlt-doc h2", has_text="Verdict").first.wait_for()  # the live preview
    page.get_by_role("button", name="Save block").click()
    page.get_by_role("button", name="+ Add note").click()
    page.get_by_text("Markdown block").first.wait_for()
    _wait(lambda: _blocks(experiment["path"], "Friday comparison") == 2, "two blocks in the document")
    page.locator("button", has_text="↑").last.click()  # the note moves above the text
    _wait(lambda: _first_block_kind(experiment["path"], "Friday comparison") == "note", "the note first")
    page.locator(".mlt-title input").fill("Friday verdict")
    page.get_by_role("button", name="Rename").click()
    _wait(lambda: "Friday verdict" in _titles(experiment["path"]), "the renamed document")
    assert page.evaluate("() => window.__pwned") is None
    with page.expect_download() as download:
        page.get_by_text("Download HTML").click()
    html = Path(download.value.path()).read_text()
    assert "Verdict" in html and "<script>" not in html
    if SCREENSHOTS:  # the editor open: Markdown on the left, the sanitised preview on the right
        page.locator("button", has_text="Edit").last.click()
        page.locator("textarea").fill(
            "## Verdict\n\nThe **forest** wins: F1 0.979 for 25 s of training.\n\n"
            "| model | F1 |\n| --- | --- |\n| random_forest | 0.979 |\n| mlp | 0.950 |"
        )
        page.locator(".mlt-doc h2", has_text="Verdict").first.wait_for()
        _screenshot(page, "documents")


def _titles(path: Path) -> list[str]:
    with Experiment(path) as exp:
        return list(exp.documents()["title"])


def _blocks(path: Path, title: str) -> int:
    with Experiment(path) as exp:
        docs = exp.documents()
        rows = docs[docs["title"] == title]
        return int(rows["blocks"].iloc[0]) if len(rows) else -1


def _first_block_kind(path: Path, title: str) -> str:
    with Experiment(path) as exp:
        blocks = exp.document(title).blocks()
        return blocks[0].kind if blocks else ""


def test_live_refresh_keeps_the_users_place(open_page: Callable[..., Any], experiment: dict[str, Any]) -> None:
    page = open_page("summary", "best by f1")
    _wait(lambda: page.locator(".bk-Figure").count() >= 4, "the summary's charts")  # drawn after the table
    header = page.locator('.tabulator-col[tabulator-field="f1"] .tabulator-col-title')
    header.click()
    _wait(lambda: _first_run_name(page) == "logistic_regression", "ascending F1 first")
    page.wait_for_timeout(500)
    header.click()
    _wait(lambda: _first_run_name(page) == "random_forest", "descending F1 first")
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(300)
    scrolled = page.evaluate("() => window.scrollY")
    _append_run(experiment["path"], "svm_live", f1=0.5)
    page.get_by_text("svm_live", exact=True).first.wait_for(timeout=20_000)
    assert _first_run_name(page) == "random_forest"  # still sorted by F1, descending
    assert abs(page.evaluate("() => window.scrollY") - scrolled) < 50


def _append_run(path: Path, name: str, f1: float) -> None:
    """A kernel writing: a run and its metric land in a live journal."""
    writer_id = layout.new_writer_id()
    w = JournalWriter(path / layout.JOURNALS / journal_name(writer_id, "kernel"))
    now = int(time.time() * 1e6)
    w.write("sessions", {"session_id": writer_id, "started_at": now - 5_000_000, "status": "running"})
    w.write(
        "runs",
        {
            "run_id": writer_id + "-r",
            "name": name,
            "session_id": writer_id,
            "status": "finished",
            "started_at": now - 4_000_000,
            "ended_at": now,
            "wall_s": 4.0,
            "cpu_s": 3.0,
            "peak_rss_bytes": 2**30,
            "params": {"C": 2.0},
        },
    )
    w.write(
        "metrics", {"run_id": writer_id + "-r", "session_id": writer_id, "name": "f1", "value": f1, "split": "test"}
    )
    w.close()


# -- a folder of experiments, empty states ------------------------------------------------------


def test_folder_of_experiments_has_a_picker_and_empty_states(
    open_page: Callable[..., Any], experiment: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copytree(experiment["path"], tmp_path / "team" / "churn")
    layout.ensure_layout(tmp_path / "team" / "fraud")
    dash = Dashboard(tmp_path / "team")
    try:
        page = open_page("summary?exp=fraud", "No runs yet", base=dash)
        assert page.locator('[data-testid="experiment"]').inner_text() == "fraud"
        assert page.locator("select").first.locator("option").all_inner_texts() == ["churn", "fraud"]
        page.locator("select").first.select_option("churn")
        page.wait_for_url(re.compile(r"exp=churn"))
        page.get_by_text("best by f1").first.wait_for()
        page.locator('[data-testid="nav-cells"]').click()
        page.wait_for_url(re.compile(r"/cells\?exp=churn"))
        _wait_chart(page, "Heaviest cells by wall time")
    finally:
        dash.stop()


# -- the export -------------------------------------------------------------------------------


def test_export_works_offline_and_runs_nothing_hostile(
    browser: Any, experiment: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    env = {**os.environ, "MLT_DASHBOARD_TOKEN": "s3cret-t0ken-never-exported"}
    proc = subprocess.run(
        [*CLI, str(experiment["path"]), "--export", str(target)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    html = target.read_text()
    assert "s3cret-t0ken" not in html
    assert 'http-equiv="Content-Security-Policy"' in html and "'unsafe-inline'; img-src data:" in html
    # The hostile markup survives only as inert text: no script, handler or javascript: link.
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # ours: BokehJS and the charts
    assert "<script" not in markup.lower()
    for code in ("onerror=", 'href="javascript:'):
        assert code not in markup
    # The best runs compared, and each run's provenance.
    assert 'id="compare"' in html and 'data-testid="compare-params"' in html and 'class="mlt-diff"' in html
    with Experiment(experiment["path"]) as e:  # other tests may have added runs to the folder
        n_runs = len(e.runs())
    assert html.count("Provenance: machine, git, packages, environment") == n_runs
    assert 'data-testid="compare-provenance-0"' in html and "gpu-box" in html
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []
    ctx.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file://")
            else (blocked.append(route.request.url), route.abort())
        ),
    )
    page = ctx.new_page()
    watched = Watched(page, lambda url: url.startswith(("file://", "data:", "blob:")))
    page.goto(target.as_uri())
    for name in experiment["run_ids"]:
        page.get_by_text(name, exact=True).first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.bk-Figure').length >= 20", timeout=TIMEOUT_MS)
    assert page.locator('img[src^="data:image/png"]').count() >= 2  # the plot, in its run and in the document
    page.get_by_text("Random forest ROC").first.wait_for()
    page.get_by_text("bold hostile note").first.wait_for()
    page.get_by_text("Churn model: findings").first.wait_for()
    page.get_by_text("out of memory").first.wait_for()
    assert page.evaluate("() => window.__pwned") is None
    ctx.close()
    watched.check()
    assert blocked == []


# -- units without a browser -------------------------------------------------------------------


def test_queries_take_identifiers_from_the_schema_only() -> None:
    from mlt_dashboard.sql import cols as _cols
    from mlt_kernel.core.schema import RUNS

    assert _cols(RUNS, "run_id", "name") == '"run_id", "name"'
    with pytest.raises(ValueError, match="not in the schema"):
        _cols(RUNS, "name; DROP TABLE runs")


def test_pareto_front() -> None:
    from mlt_dashboard.ranking import pareto_front

    # cost, value: (1, .7) (2, .9) (3, .8) (4, .95) -> the third is dominated by the second
    assert pareto_front([1, 2, 3, 4], [0.7, 0.9, 0.8, 0.95]) == [0, 1, 3]
    assert pareto_front([1, 2, 3], [0.5, 0.4, 0.3], lower_is_better=True) == [0, 1, 2]
    assert pareto_front([1, float("nan")], [0.5, 0.9]) == [0]


def test_timeline_is_bucketed_and_keeps_the_peak(experiment: dict[str, Any]) -> None:
    from mlt_dashboard.queries import Source

    source = Source(experiment["path"])
    try:
        run = source.run(experiment["run_ids"]["random_forest"])
        assert run is not None
        full = source.run_timeline(run)
        small = source.run_timeline(run, max_points=10)
        assert len(small) <= 11 < len(full)
        assert small["rss_bytes"].max() == full["rss_bytes"].max()
        assert full["t"].min() >= 0
    finally:
        source.close()


def test_run_page_reads_what_the_tables_hold_in_order(experiment: dict[str, Any]) -> None:
    # The run page reads its small tables in one query: each part must be what
    # the table holds for the run, in the order the page shows it.
    from mlt_dashboard.queries import Source

    source = Source(experiment["path"])
    try:
        for name, run_id in experiment["run_ids"].items():
            run = source.run(run_id)
            assert run is not None
            page = source.run_page(run)
            q = source._q
            cells = q.rows("SELECT cell_seq FROM cells WHERE run_id = ? ORDER BY cell_seq", [run_id])
            assert page.cells["cell_seq"].tolist() == [c for (c,) in cells], name
            splits = [s for (s,) in q.rows("SELECT split FROM confusion WHERE run_id = ?", [run_id])]
            assert list(page.confusion) == sorted(splits, key=lambda s: (s != "test", s)), name
            curves = q.rows("SELECT split, kind, label FROM curves WHERE run_id = ? ORDER BY ALL", [run_id])
            assert list(page.curves[["split", "kind", "label"]].itertuples(index=False, name=None)) == curves, name
            assert page.plots["run_id"].eq(run_id).all() and page.plots["created_at"].is_monotonic_increasing, name
            assert page.notes["created_at"].is_monotonic_increasing, name
        forest = source.run_page(source.run(experiment["run_ids"]["random_forest"]))
        assert len(forest.plots) >= 1 and len(forest.notes) >= 2  # its own note and the one tied to its plot
    finally:
        source.close()


def test_timeline_buckets_keep_peaks_and_average_cpu_over_known_values() -> None:
    import numpy as np

    from mlt_dashboard.queries import _buckets

    us = np.array([0, 10, 20, 30, 40, 50])
    nan = float("nan")
    values = {
        "rss_bytes": np.array([1.0, 5.0, 2.0, 3.0, 9.0, 4.0]),
        "children_rss_bytes": np.array([nan, nan, 1.0, nan, nan, nan]),
        "gpu_bytes": np.full(6, nan),
        "cpu_percent": np.array([10.0, nan, 30.0, 50.0, nan, nan]),
    }
    per_sample = _buckets(us, values, None)
    assert per_sample["t"].tolist() == [0, 1e-5, 2e-5, 3e-5, 4e-5, 5e-5]
    assert per_sample["samples"].tolist() == [1] * 6
    out = _buckets(us, values, 30)  # buckets [0, 30) [30, 60)
    assert out["t"].tolist() == [0, 3e-5]
    assert out["rss_bytes"].tolist() == [5.0, 9.0]
    assert out["children_rss_bytes"].iloc[0] == 1.0 and np.isnan(out["children_rss_bytes"].iloc[1])
    assert out["gpu_bytes"].isna().all()
    assert out["cpu_percent"].tolist() == [20.0, 50.0]
    assert out["samples"].tolist() == [3, 3]


def test_dashboard_never_imports_the_kernel() -> None:
    code = (
        "import sys, mlt_dashboard.app, mlt_dashboard.export, mlt_dashboard.cli, mlt_dashboard.documents;"
        "bad = [m for m in ('mlt_kernel.recording.kernel', 'mlt_kernel.recording.recorder', 'ipykernel', 'IPython') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # the page is redrawing; look again
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- compare --------------------------------------------------------------------------------

HOSTILE_NAME = "hostile<img src=x onerror=window.__pwned=3>"
HOSTILE_CODE = "# mlt: record name=hostile\nx = '</script><img src=x onerror=\"window.__pwned=1\">'\n<b>bold</b>"


def _append_hostile_run(path: Path) -> str:
    """A run whose cell source and param are markup (a teammate's folder)."""
    writer_id = layout.new_writer_id()
    w = JournalWriter(path / layout.JOURNALS / journal_name(writer_id, "kernel"))
    now = int(time.time() * 1e6)
    run_id = writer_id + "-h"
    w.write("sessions", {"session_id": writer_id, "started_at": now - 5_000_000, "status": "ended"})
    cell = {
        "session_id": writer_id,
        "cell_seq": 1,
        "execution_count": 1,
        "code": HOSTILE_CODE,
        "code_sha1": "0" * 40,
        "run_id": run_id,
        "run_name": "hostile",
        "started_at": now - 4_000_000,
        "ended_at": now - 1_000_000,
        "wall_s": 3.0,
        "status": "ok",
    }
    w.write("cells", cell)
    w.write(
        "runs",
        {
            "run_id": run_id,
            "name": HOSTILE_NAME,
            "session_id": writer_id,
            "status": "finished",
            "started_at": now - 4_000_000,
            "ended_at": now,
            "wall_s": 3.0,
            "params": {"C": "<img src=x onerror=window.__pwned=2>", "n_estimators": 300},
            "first_cell_seq": 1,
            "last_cell_seq": 1,
        },
    )
    w.write("metrics", {"run_id": run_id, "session_id": writer_id, "name": "f1", "value": 0.5, "split": "test"})
    w.close()
    return run_id


def test_compare_page_shows_differences_code_and_charts(
    open_page: Callable[..., Any], tmp_path: Path, browser: Any
) -> None:
    exp = build_experiment(tmp_path / "cmp", documents=False)
    ids = exp["run_ids"]
    hostile = _append_hostile_run(exp["path"])
    dash = Dashboard(exp["path"])
    try:
        runs = ",".join([ids["random_forest"], ids["mlp"], hostile])
        page = open_page(f"compare?runs={runs}", "differences only", base=dash)
        params = page.locator('[data-testid="compare-params"]')
        params.wait_for()
        # Differences only: C differs (None, missing, markup) and is shown; max_depth too.
        names = params.locator("tbody th").all_inner_texts()
        assert "C" in names and "n_estimators" in names
        assert page.locator("table.mlt-compare tbody tr:not(.differs)").count() == 0
        page.locator('[data-testid="compare-code"]').first.wait_for()
        code = "\n".join(page.locator(".mlt-diff").all_inner_texts())
        assert "</script><img src=x" in code and "<b>bold</b>" in code  # shown as text
        assert page.locator("img[src=x]").count() == 0  # tables, diff, and the run picker's labels
        page.locator(".choices").first.click()  # the picker's dropdown lists every run's name
        page.wait_for_timeout(300)
        assert page.locator("img[src=x]").count() == 0
        assert (
            page.locator('[data-testid="compare-provenance"]').count()
            + page.locator('[data-testid="compare-provenance-empty"]').count()
            == 1
        )
        _wait_chart(page, "compare-memory: Memory over time")
        _wait(lambda: sum("confusion-matrix" in t for t in _charts(page)) >= 2, "two confusion matrices")
        _screenshot(page, "compare")
        # All rows: the switch off shows rows that are the same too.
        page.locator(".mlt-only").first.click()
        _wait(lambda: page.locator("table.mlt-compare tbody tr:not(.differs)").count() > 0, "rows that are the same")
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.__pwned") is None
    finally:
        dash.stop()


def test_summary_links_ticked_runs_to_compare(open_page: Callable[..., Any], experiment: dict[str, Any]) -> None:
    page = open_page("summary", "best by f1")
    boxes = page.locator(".tabulator-row input[type=checkbox]")
    boxes.nth(0).click()
    boxes.nth(1).click()
    link = page.locator('[data-testid="compare-link"]')
    link.wait_for()
    assert "Compare 2 runs" in link.inner_text()
    link.click()
    page.wait_for_url(re.compile(r"/compare\?"))
    page.locator('[data-testid="compare-params"], [data-testid="compare-params-empty"]').first.wait_for()


# -- a run still recording ---------------------------------------------------------------------

_TIMELINE = """() => {
    const m = Bokeh.documents.flatMap(d => [...d.all_models]).find(m => m.name === "memory-timeline");
    if (!m) return null;
    const src = m.renderers.map(r => r.data_source).find(s => s && s.data && s.data.rss_gib);
    return {id: m.id, x0: m.x_range.start, x1: m.x_range.end, y1: m.y_range.end, n: src ? src.data.t.length : 0};
}"""
_ZOOM = """() => {
    const m = Bokeh.documents.flatMap(d => [...d.all_models]).find(m => m.name === "memory-timeline");
    // What Bokeh's zoom tools do: mark the range as set by the reader, then set it.
    m.x_range.have_updated_interactively = true;
    m.x_range.setv({start: 2.0, end: 8.0});
    m.y_range.setv({start: 0.5, end: 1.5});
}"""


def test_live_run_page_keeps_the_readers_zoom(open_page: Callable[..., Any], tmp_path: Path) -> None:
    import threading

    root = layout.ensure_layout(tmp_path / "live")
    writer_id = layout.new_writer_id()
    w = JournalWriter(root / layout.JOURNALS / journal_name(writer_id, "kernel"))
    start = int(time.time() * 1e6) - 20_000_000
    run_id = writer_id + "-live"
    w.write("sessions", {"session_id": writer_id, "started_at": start, "status": "running"})
    w.write(
        "runs",
        {"run_id": run_id, "name": "training", "session_id": writer_id, "status": "running", "started_at": start},
    )
    w.write(
        "cells",
        {
            "session_id": writer_id,
            "cell_seq": 1,
            "execution_count": 1,
            "code": "# mlt: record start name=training\nfit()",
            "run_id": run_id,
            "run_name": "training",
            "started_at": start,
            "status": "running",
        },
    )
    stop = threading.Event()

    def sample(t_us: int) -> None:
        rss = int((1 + 0.02 * (t_us - start) / 1e6) * 2**30)
        w.write(
            "samples",
            {
                "session_id": writer_id,
                "t": t_us,
                "rss_bytes": rss,
                "cpu_percent": 100.0,
                "cell_seq": 1,
                "run_id": run_id,
            },
        )
        w.write(
            "metrics",
            {
                "run_id": run_id,
                "session_id": writer_id,
                "name": "loss",
                "step": t_us // 1_000_000 % 100000,
                "value": 1e6 / t_us,
            },
        )

    for t in range(start, start + 20_000_000, 500_000):
        sample(t)

    def kernel() -> None:  # the kernel goes on writing while the reader looks
        while not stop.wait(0.5):
            sample(int(time.time() * 1e6))

    thread = threading.Thread(target=kernel, daemon=True)
    thread.start()
    dash = Dashboard(root)
    try:
        page = open_page(f"run?run={run_id}", "peak RAM", base=dash)
        _wait(lambda: (page.evaluate(_TIMELINE) or {}).get("n", 0) > 0, "the memory timeline")
        page.evaluate(_ZOOM)
        before = page.evaluate(_TIMELINE)
        _wait(lambda: page.evaluate(_TIMELINE)["n"] > before["n"], "a refresh with new samples")
        first = page.evaluate(_TIMELINE)["n"]
        _wait(lambda: page.evaluate(_TIMELINE)["n"] > first, "a second refresh")
        after = page.evaluate(_TIMELINE)
        assert after["id"] == before["id"]  # the same figure, not a new one
        assert (after["x0"], after["x1"]) == (2.0, 8.0)
        assert after["y1"] == 1.5
    finally:
        stop.set()
        thread.join()
        w.close()
        dash.stop()


# -- fits and child runs ------------------------------------------------------------------------


def _append_fits_and_child(path: Path, parent_id: str, session_id: str) -> None:
    """What autolog writes for a search in the forest's run, and a child run of it."""
    w = JournalWriter(path / layout.JOURNALS / journal_name(layout.new_writer_id(), "kernel"))
    now = int(time.time() * 1e6)
    w.write(
        "fits",
        {
            "fit_id": "fit-1",
            "session_id": session_id,
            "run_id": parent_id,
            "estimator": "sklearn.model_selection._search.GridSearchCV",
            "method": "fit",
            "params": {"cv": 3, "estimator": "RandomForestClassifier", "<b>x</b>": "<img src=x onerror=1>"},
            "n_samples": 1000,
            "n_features": 4,
            "data_fingerprint": "0123456789abcdef0123456789abcdef",
            "started_at": now,
            "wall_s": 2.5,
            "cpu_s": 4.0,
            "peak_rss_bytes": 3 * 2**30,
            "rss_start_bytes": 2**30,
            "model_bytes": 5 * 2**20,
            "top_features": [["tenure", 0.6], ["age", 0.3]],
            "status": "ok",
            "best_params": {"max_depth": 8},
            "best_score": 0.91,
            "n_candidates": 2,
            "search_results": {
                "param_max_depth": [4, 8],
                "mean_test_score": [0.85, 0.91],
                "std_test_score": [0.01, 0.02],
                "rank_test_score": [2, 1],
            },
        },
    )
    w.write(
        "runs",
        {
            "run_id": parent_id + "-child",
            "name": "fold_1",
            "session_id": session_id,
            "status": "finished",
            "started_at": now,
            "ended_at": now + 1_000_000,
            "params": {"fold": 1, "model": "RandomForestClassifier"},
            "parent_run_id": parent_id,
        },
    )
    w.close()


def test_run_page_lists_fits_and_summary_folds_child_runs(open_page: Callable[..., Any], tmp_path: Path) -> None:
    exp = build_experiment(tmp_path / "fits", documents=False)
    forest = exp["run_ids"]["random_forest"]
    _append_fits_and_child(exp["path"], forest, exp["sessions"][0])
    dash = Dashboard(exp["path"])
    try:
        page = open_page(f"run?run={forest}", "peak RAM", base=dash)
        fits = page.locator('[data-testid="fits"]')
        fits.wait_for()
        text = fits.inner_text()
        assert "GridSearchCV" in text and "1,000 × 4" in text and "0123456789ab" in text and "tenure" in text
        assert "3.0 GiB" in text and "+2.0 GiB" in text
        page.locator('[data-testid="search-results"] summary').click()
        assert "2 candidates, best score 0.910" in page.locator('[data-testid="search-results"]').inner_text()
        assert page.locator("img[src=x]").count() == 0
        summary = open_page("summary", "best by f1", base=dash)
        summary.get_by_text("random_forest", exact=True).first.wait_for()
        assert summary.get_by_text("↳ fold_1").count() == 0  # folded under its parent
        summary.locator(".mlt-children input").click()
        summary.get_by_text("↳ fold_1").first.wait_for()
    finally:
        dash.stop()
