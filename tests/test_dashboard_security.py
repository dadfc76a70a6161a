"""A shared folder is hostile input: the dashboard and the export keep every string text.

The experiment of ``hostile_experiment`` carries a payload in every field a
teammate chooses. Served in a real ``mlt-dashboard`` and opened in headless
Chromium, every page is visited, every run selected, every chart hovered on a
grid (so that tooltips render), every split and view switched and every
document opened: no payload may run, no dialog open, no page error or
Content-Security-Policy violation occur. The same holds for the export.
The server's headers, its origin check with a valid cookie, and the token's
absence from command lines are tested here too.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_experiment import DOC_TITLE, RUN_NAMES, build_hostile_experiment
from test_dashboard import CLI, TIMEOUT_MS, Dashboard

from mlt_dashboard import charts
from mlt_dashboard.markup import el, header, join, short, text, trusted
from mlt_dashboard.policy import inline_scripts, report_policy, script_hash, served_policy

pytestmark = pytest.mark.browser

#: Records what must never happen on a page: a payload running, a CSP report.
_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
    [e.violatedDirective, e.blockedURI, e.sourceFile, e.sample].join(' ')));
"""


def _violations(page: Any) -> list[str]:
    """CSP reports on *page*, less es-module-shims' probe: Panel's loader tries a ``blob:`` import once."""
    reports = page.evaluate("() => window.__csp") or []
    return [r for r in reports if not (r.startswith("script-src-elem blob ") and "es-module-shims" in r)]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_hostile_experiment(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def served(hostile: dict[str, Any]) -> Iterator[Dashboard]:
    dash = Dashboard(hostile["path"])
    yield dash
    dash.stop()


class Guarded:
    """A browser page that fails the test on a page error, a dialog or a CSP report."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.add_init_script(_WATCH)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def check(self, where: str) -> None:
        page = self.page
        page.wait_for_timeout(300)  # an <img onerror> fires once its request has failed
        assert page.evaluate("() => window.__pwned") is None, f"{where}: a stored string ran as script"
        assert _violations(page) == [], f"{where}: CSP reports {_violations(page)}"
        assert self.errors == [], f"{where}: page errors {self.errors}"
        assert self.dialogs == [], f"{where}: dialogs {self.dialogs}"


@pytest.fixture
def guarded(browser: Any) -> Iterator[Guarded]:
    g = Guarded(browser)
    yield g
    g.context.close()


def hover_charts(page: Any, columns: int = 14, rows: int = 9) -> int:
    """Move the mouse over a grid on every chart of the page, so that every tooltip renders; returns the charts.

    A chart redrawn while it is hovered (a selection redraws the page's charts) detaches its canvas:
    the pass starts again over the charts as they are then.
    """
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(4):
        try:
            return _hover_once(page, columns, rows)
        except PlaywrightError as exc:
            if "not attached" not in str(exc):
                raise
            page.wait_for_timeout(500)
    return _hover_once(page, columns, rows)


def _hover_once(page: Any, columns: int, rows: int) -> int:
    hovered = 0
    for canvas in page.locator(".bk-Canvas").all():
        canvas.scroll_into_view_if_needed(timeout=5_000)
        box = canvas.bounding_box()
        if box is None or box["width"] < 40 or box["height"] < 40:
            continue
        hovered += 1
        for i in range(1, columns):
            for j in range(1, rows):
                x, y = box["x"] + box["width"] * i / columns, box["y"] + box["height"] * j / rows
                if 0 <= x < 1400 and 0 <= y < 1000:
                    page.mouse.move(x, y)
    return hovered


# -- served pages ------------------------------------------------------------------------


def test_every_page_keeps_every_hostile_string_text(
    guarded: Guarded, served: Dashboard, hostile: dict[str, Any]
) -> None:
    page = guarded.page
    page.goto(served.page_url("summary"))
    page.locator(".tabulator-row").first.wait_for()
    page.get_by_text(short(RUN_NAMES[0]), exact=True).first.wait_for()  # the name shows, as text
    for i in range(len(hostile["run_ids"])):  # select every run (Tabulator redraws the rows as it goes)
        page.locator(".tabulator-row input[type=checkbox]").nth(i).click()
        page.get_by_text(f"{i + 1} selected run(s)").first.wait_for()
    assert hover_charts(page) >= 4
    guarded.check("summary")

    for run_id in hostile["run_ids"]:
        page.goto(served.page_url(f"run?run={run_id}"))
        page.locator('[data-testid="run-name"]').wait_for()
        for split in page.locator("select").nth(1).locator("option").all_inner_texts():
            page.locator("select").nth(1).select_option(label=split)
            page.get_by_text("normalised", exact=True).click()
            page.wait_for_timeout(300)
            assert hover_charts(page, 12, 8) >= 5
            page.get_by_text("counts", exact=True).click()
        guarded.check(f"run {run_id}")

    page.goto(served.page_url("cells"))
    page.get_by_text("died").first.wait_for()
    assert hover_charts(page) >= 2
    guarded.check("cells")

    page.goto(served.page_url("documents"))
    page.locator("select").first.wait_for()
    for option in page.locator("select").first.locator("option").all():
        page.locator("select").first.select_option(value=option.get_attribute("value"))
        page.get_by_text("Document text survives").first.wait_for()
    page.get_by_text("bold hostile note").first.wait_for()
    guarded.check("documents")


def test_every_response_carries_the_security_headers(served: Dashboard) -> None:
    for path in ("summary", "run", "cells", "documents"):
        with urllib.request.urlopen(served.page_url(path), timeout=30) as resp:
            headers, page = resp.headers, resp.read()
        policy = headers["Content-Security-Policy"]
        assert policy == served_policy(inline_scripts(page)), path
        script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        assert "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        # Every inline script of the page is allowed by its hash; nothing else is.
        for body in inline_scripts(page):
            assert script_hash(body) in script_src
    # The page for visitors without the token, and static files, get the headers too.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{served.base}/summary", timeout=30)
    assert refused.value.code == 403
    assert "default-src 'self'" in refused.value.headers["Content-Security-Policy"]
    assert refused.value.headers["Referrer-Policy"] == "no-referrer"
    with urllib.request.urlopen(f"{served.base}/static/js/bokeh.min.js", timeout=30) as resp:
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def _handshake(port: int, origin: str, cookie: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET /summary/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: %s\r\nCookie: %s\r\n\r\n" % (port, origin.encode(), cookie.encode())
        )
        return s.recv(200).split(b"\r\n")[0]


def _session_token_payload(page: str) -> str:
    """The context Bokeh wrote into a served page's session token (headers, cookies, arguments), as JSON."""
    import json

    from bokeh.util.token import get_token_payload

    token = re.search(r'"token":\s*"([^"]+)"', page)
    assert token is not None, "no session token in the page"
    return json.dumps(get_token_payload(token.group(1)), default=str)


def test_a_valid_cookie_from_a_foreign_origin_gets_no_websocket(browser: Any, served: Dashboard) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(served.url)
    page.locator(".tabulator-row").first.wait_for()
    cookie = next(c for c in ctx.cookies() if c["name"] == f"mlt_dashboard_{served.port}")
    page.reload()
    page.locator(".tabulator-row").first.wait_for()
    assert cookie["value"] not in _session_token_payload(page.content())  # the page's scripts never see it
    ctx.close()
    jar = f"{cookie['name']}={cookie['value']}"
    # The same cookie from the dashboard's own origin opens a websocket: it is valid.
    assert b" 101 " in _handshake(served.port, f"http://127.0.0.1:{served.port}", jar)
    for origin in ("http://evil.example", f"http://127.0.0.1:{served.port + 1}", "null"):
        assert b" 403 " in _handshake(served.port, origin, jar), origin


# -- the export -------------------------------------------------------------------------------


def test_the_export_keeps_every_hostile_string_text(guarded: Guarded, hostile: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    proc = subprocess.run([*CLI, str(hostile["path"]), "--export", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    html = target.read_text()
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # ours: BokehJS and the charts' data
    for tag in ("<script", "<img src=x", "<svg"):
        assert tag not in markup.lower()
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 3 and f'content="{report_policy(scripts)}"' in html  # no stored string split a script
    page = guarded.page
    guarded.context.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort()
    )
    page.goto(target.as_uri())
    page.get_by_text(short(RUN_NAMES[2], 60), exact=True).first.wait_for()
    page.get_by_text("Document text survives").first.wait_for()
    assert hover_charts(page, 9, 6) >= 15
    guarded.check("export")


def test_export_writes_through_no_planted_link(hostile: dict[str, Any], tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    target = tmp_path / "report.html"
    (tmp_path / ".report.html.tmp").symlink_to(outside)  # the name the export used to write first
    proc = subprocess.run([*CLI, str(hostile["path"]), "--export", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert outside.read_text() == "keep me"
    assert target.is_file() and not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.html.tmp", "report.html", "victim.txt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- the token ---------------------------------------------------------------------------------


def _cmdlines_holding(secret: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if secret.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_the_token_is_in_no_command_line(
    hostile: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "browser" that records what it was started with.
    seen = tmp_path / "browser-args"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n')
    browser.chmod(0o755)
    secret = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("BROWSER", str(browser))
    monkeypatch.setenv("MLT_DASHBOARD_TOKEN", secret)
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, str(hostile["path"]), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while "MLTrack dashboard:" not in line and line:
            line = proc.stdout.readline()
        assert f"token={secret}" in line
        deadline = time.monotonic() + 30
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        opened = seen.read_text().strip()
        assert opened.startswith("file://") and secret not in opened
        redirect = Path(urllib.request.url2pathname(opened.removeprefix("file://")))
        assert stat.S_IMODE(redirect.stat().st_mode) == 0o600
        assert f"token={secret}" in redirect.read_text()
        assert _cmdlines_holding(secret) == []
    finally:
        proc.send_signal(2)
        proc.wait(timeout=20)
    assert not redirect.exists()  # removed when the server stops


def test_token_file_and_the_warning_for_token_on_the_command_line(hostile: dict[str, Any], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789abcdef\n")
    token_file.chmod(0o600)
    dash = Dashboard(hostile["path"], "--token-file", str(token_file))
    try:
        assert dash.token == "from-a-file-0123456789abcdef"
        assert "warning" not in "".join(dash.output)
    finally:
        dash.stop()
    dash = Dashboard(hostile["path"], "--token", "on-the-command-line-0123456789")
    try:
        assert dash.token == "on-the-command-line-0123456789"
        assert "--token puts the token in this process's command line" in "".join(dash.output)
    finally:
        dash.stop()
    for bad, reason in ((tmp_path / "missing", "No such file"), (tmp_path / "empty", "holds no token")):
        if bad.name == "empty":
            bad.write_text("\n")
        proc = subprocess.run(
            [*CLI, str(hostile["path"]), "--token-file", str(bad), "--no-browser"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and reason in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- without a browser -----------------------------------------------------------------------


def test_markup_escapes_text_and_attributes_and_drops_foreign_urls() -> None:
    assert text('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert el("b", "<i>", class_='x" onclick="y') == '<b class="x&quot; onclick=&quot;y">&lt;i&gt;</b>'
    assert el("b", trusted("<i>ours</i>")) == "<b><i>ours</i></b>"
    assert el("a", "x", href="javascript:alert(1)") == '<a href="#">x</a>'
    assert el("a", "x", href=" JavaScript:alert(1)") == '<a href="#">x</a>'
    assert el("a", "x", href="run?run=a&b=1") == '<a href="run?run=a&amp;b=1">x</a>'
    assert el("img", src="data:image/png;base64,AAAA", alt="<") == '<img src="data:image/png;base64,AAAA" alt="&lt;">'
    assert el("img", src="data:text/html,<script>") == '<img src="#">'
    assert el("div", None, data_testid="t", hidden=True, title=None) == '<div data-testid="t" hidden></div>'
    assert join(["<", trusted("<br>")], "&") == "&lt;&amp;<br>"
    assert header("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert short("a\nb  c") == "a b c" and short("x" * 100, 10) == "x" * 9 + "…"


def test_inline_scripts_are_found_and_hashed() -> None:
    page = (
        b'<script type="text/javascript">A()</script><script src="static/x.js"></script>'
        b'<script type="application/json" id="d">{"a": 1}</script><script>\nB()\n</script >'
        b'<script type="module">C()</script>'
    )
    assert inline_scripts(page) == [b"A()", b"\nB()\n", b"C()"]
    assert script_hash("alert(1)") == "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
    script_src = next(d for d in served_policy([b"A()"]).split("; ") if d.startswith("script-src"))
    assert script_src == f"script-src 'self' {script_hash(b'A()')}"


def test_chart_tooltips_take_stored_strings_only_as_fields(hostile: dict[str, Any]) -> None:
    """Every tooltip value of every chart is a ``@{column}`` or one of Bokeh's ``$`` variables: never stored text."""
    from bokeh.models import HoverTool

    from mlt_dashboard.fragments import RunData
    from mlt_dashboard.queries import Source

    source = Source(hostile["path"])
    try:
        runs = source.runs()
        colours = charts.run_colours(list(runs["run_id"]))
        figures = [
            charts.metrics_chart(runs, ["accuracy", "f1"], colours),
            charts.time_chart(runs, colours),
            charts.memory_chart(runs, colours),
            charts.pareto_chart(runs, "f1", "wall time", colours),
            charts.heaviest_chart(source.ledger(), "wall_s"),
        ]
        parallel = charts.parallel_chart(runs, "f1")
        assert parallel is not None
        figures.append(parallel)
        data = RunData(source, hostile["run_ids"][0])
        figures += charts.training_charts(data.steps)
        figures.append(
            charts.timeline_chart(data.timeline, data.cells, data.run["started_at"], killed={"cause": RUN_NAMES[0]})
        )
        for split, (labels, matrix) in data.confusion.items():
            figures.append(charts.confusion_chart(labels, matrix, True, split))
            figures += [charts.curve_chart(data.curves, kind) for kind in ("roc", "pr")]
    finally:
        source.close()
    tools = [t for f in figures for t in f.select({"type": HoverTool})]
    assert len(tools) >= 15
    for tool in tools:
        for _, value in tool.tooltips:
            assert re.fullmatch(r"@\{[a-z_]+\}|\$[xy]\{0\.000\}", value), value


def test_a_document_title_is_escaped_in_its_download(hostile: dict[str, Any]) -> None:
    from mlt_kernel.experiment import Experiment
    from mlt_kernel.tracking.documents import Document

    with Experiment(hostile["path"]) as exp:
        page = Document.open(exp, DOC_TITLE).html_page()
    body = page.split("</head>", 1)[1]
    assert "<script" not in body.lower() and "onerror=" not in body.replace("onerror=&quot;", "")
