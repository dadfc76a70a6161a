"""From the notebook: ``%mlt`` in a real kernel, and the MLTrack tile of a real JupyterLab, in Chromium.

JupyterLab runs as a subprocess with its own HOME, Jupyter and IPython folders,
a fixed token and a free port, with jupyter-server-proxy (the ``hub`` extra).
Every process a test starts is ended by its own pid, also when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Kernel, Reply, isolated_env
from test_dashboard_data import build_experiment

from mlt_kernel.recording.notebook import USAGE
from mlt_kernel.watcher.sampler import Sampler

TOKEN = "jupyter-test-token-3f9c"
BASE_URL = "/user/ada/"  # as JupyterHub serves a user's server
HOSTILE = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str, **headers: str) -> tuple[int, str]:
    """Status and body of a GET that follows no redirect."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError:  # not listening (yet)
        return 0, ""


def _end(pid: int, module: str) -> None:
    """End *pid* if it still runs *module* (a process a test started, never another)."""
    try:
        proc = psutil.Process(pid)
        if module in " ".join(proc.cmdline()):
            proc.kill()
            proc.wait(10)
    except psutil.Error:
        pass


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(autouse=True)
def no_dashboard_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After each test, end the dashboards it started for this run's folders (also when it failed early)."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        ours = "mlt_dashboard.cli" in argv and any(a.startswith(base) for a in argv)
        if ours and "--jupyter-server-proxy" not in argv:  # the lab's own ends with the lab
            _end(proc.pid, "mlt_dashboard")


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of experiments holding one realistic experiment, ``churn``."""
    root = tmp_path_factory.mktemp("exps")
    build_experiment(root / "churn")
    return root


class JupyterLab:
    """``jupyter lab`` in a subprocess with an isolated environment."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.origin}{BASE_URL.rstrip('/')}"  # the server's URL: its base URL is not /
        self.runtime = home / ".local/share/jupyter/runtime"
        self.log = home / "jupyterlab.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterlab",
                    "--no-browser",
                    "--allow-root",
                    f"--port={self.port}",
                    "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={TOKEN}",
                    f"--ServerApp.root_dir={home}",
                    f"--ServerApp.base_url={BASE_URL}",
                ],
                env=env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _status(f"{self.base}/api/status", Authorization=f"token {TOKEN}")[0] == 200:
                return
            time.sleep(0.3)
        self.stop()
        raise AssertionError("JupyterLab did not start:\n" + self.log.read_text())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        # The proxied dashboard is the server's child: end it with the server.
        children = psutil.Process(self.proc.pid).children(recursive=True) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in children:
            _end(child.pid, "mlt_dashboard")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, experiments: Path) -> Iterator[JupyterLab]:
    home = tmp_path_factory.mktemp("labhome")
    env = {**os.environ, **isolated_env(home), "MLT_EXP_PATH": str(experiments)}
    env.pop("MLT_DASHBOARD_TOKEN", None)
    env.pop("JUPYTERHUB_SERVICE_PREFIX", None)
    server = JupyterLab(home, env)
    yield server
    server.stop()


def _logged_in(browser: Any, lab: JupyterLab) -> Any:
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.base}/lab?token={TOKEN}")
    return ctx, page


# -- the launcher tile ----------------------------------------------------------------


@pytest.mark.browser
def test_launcher_tile_opens_the_dashboard_behind_the_jupyter_login(browser: Any, lab: JupyterLab) -> None:
    ctx, page = _logged_in(browser, lab)
    try:
        tile = page.locator('.jp-LauncherCard[title^="MLTrack"]')
        tile.wait_for()
        assert tile.locator("img, svg").count() >= 1  # the icon
        with ctx.expect_page() as opened:
            tile.click()
        dash = opened.value
        dash.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        dash.on("pageerror", lambda exc: errors.append(str(exc)))
        dash.get_by_text("random_forest_deep").first.wait_for()  # the runs table, over the proxied websocket
        assert re.search(rf"^{re.escape(lab.base)}/mltrack/", dash.url), dash.url
        assert errors == []
    finally:
        ctx.close()
    assert "MLTrack's own access token is off" in lab.output()
    # Without the Jupyter login the proxy refuses: a redirect to the login page, no data.
    status, body = _status(f"{lab.base}/mltrack/summary")
    assert status in (302, 403) and "random_forest" not in body
    status, body = _status(f"{lab.base}/mltrack/summary", Authorization="token wrong")
    assert status in (302, 403) and "random_forest" not in body


class ServerKernel:
    """A kernel the Jupyter server started (``POST /api/kernels``), driven through its connection file."""

    def __init__(self, lab: JupyterLab) -> None:
        from jupyter_client.blocking import BlockingKernelClient

        self.lab = lab
        request = urllib.request.Request(
            f"{lab.base}/api/kernels",
            data=json.dumps({"name": "mltrack"}).encode(),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            self.id = json.load(r)["id"]
        self.kc = BlockingKernelClient(connection_file=str(lab.runtime / f"kernel-{self.id}.json"))
        self.kc.load_connection_file()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> Reply:
        outputs: list[dict[str, Any]] = []
        msg = self.kc.execute_interactive(code, timeout=60, output_hook=outputs.append)
        outputs = [o for o in outputs if o["msg_type"] not in ("status", "execute_input")]
        return Reply(msg["content"]["status"], msg["content"], outputs)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        request = urllib.request.Request(
            f"{self.lab.base}/api/kernels/{self.id}", headers={"Authorization": f"token {TOKEN}"}, method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=60):
            pass


@pytest.mark.browser
@pytest.mark.parametrize("where", ["jupyterhub", "jupyter-server"])
def test_mlt_dashboard_link_works_through_the_proxy(
    browser: Any, lab: JupyterLab, experiments: Path, start_kernel: Any, where: str
) -> None:
    """The link ``%mlt dashboard`` shows behind JupyterHub, and in a kernel the Jupyter server started."""
    churn = experiments / "churn"
    kernel: Any
    if where == "jupyterhub":
        kernel = start_kernel(env={"JUPYTERHUB_SERVICE_PREFIX": BASE_URL})
    else:  # the server's info file (jpserver-PID.json) gives its base URL
        kernel = ServerKernel(lab)
    pid = None
    try:
        assert kernel.run(f"EXP_PATH = {str(churn)!r}").status == "ok"
        reply = kernel.run("%mlt dashboard")
        assert reply.status == "ok", reply.content
        text = reply.of_type("display_data")[0]["data"]["text/plain"]
        url = re.search(rf": ({re.escape(BASE_URL)}proxy/(\d+)/summary\?token=\S+)$", text)
        assert url is not None, text
        pid = int(re.search(r"pid (\d+)", text).group(1))  # type: ignore[union-attr]
        ctx, page = _logged_in(browser, lab)
        try:
            deadline = time.monotonic() + 60
            while _status(f"http://127.0.0.1:{url.group(2)}/summary")[0] == 0:  # not listening yet
                assert time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.2)
            page.goto(lab.origin + url.group(1))
            page.get_by_text("random_forest_deep").first.wait_for()
        finally:
            ctx.close()
        # The proxy path without the Jupyter login, even with MLTrack's token: refused.
        status, body = _status(lab.origin + url.group(1))
        assert status in (302, 403) and "random_forest" not in body
        assert kernel.run("%mlt dashboard stop").status == "ok"
    finally:
        if pid is not None:
            _end(pid, "mlt_dashboard")
        if isinstance(kernel, ServerKernel):
            kernel.shutdown()


# -- %mlt dashboard in a kernel -------------------------------------------------------


def _timed(kernel: Kernel, code: str) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """Seconds from the execute request to its reply, the outputs, the reply."""
    outputs: list[dict[str, Any]] = []
    kc = kernel.kc
    msg_id = kc.execute(code)
    started = time.perf_counter()
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            elapsed = time.perf_counter() - started
            break
    while True:  # the outputs, up to the kernel's idle status
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        outputs.append(msg)
    kernel.settle()
    return elapsed, outputs, reply["content"]


def _link(outputs: list[dict[str, Any]]) -> tuple[int, str]:
    text = next(o["content"]["data"]["text/plain"] for o in outputs if o["msg_type"] == "display_data")
    match = re.search(r"pid (\d+)\): (http://127\.0\.0\.1:\d+/summary\?token=\S+)$", text)
    assert match is not None, text
    return int(match.group(1)), match.group(2)


@pytest.mark.browser
def test_mlt_dashboard_starts_once_reuses_and_stops(
    browser: Any, experiments: Path, start_kernel: Any, isolated_jupyter: Path
) -> None:
    churn = experiments / "churn"
    kernel = start_kernel(env={"MLT_EXP_PATH": str(churn)})
    kernel.run("x = 1")
    pids: set[int] = set()
    try:
        _timed(kernel, "%mlt")  # IPython's first magic call: not the dashboard's cost
        elapsed, outputs, reply = _timed(kernel, "%mlt dashboard")
        assert reply["status"] == "ok", reply
        pid, url = _link(outputs)
        pids.add(pid)
        # The kernel's child, in a session of its own, and not the user's memory for the watcher.
        assert pid in {c.pid for c in psutil.Process(kernel.pid).children()} and os.getsid(pid) == pid
        sampler = Sampler(kernel.pid)
        try:
            sampler.rescan()
            assert pid not in sampler.children
        finally:
            sampler.close()
        print(f"%mlt dashboard: cell reply {elapsed * 1000:.1f} ms")
        assert elapsed < 0.1, f"the cell took {elapsed * 1000:.0f} ms"
        token = re.search(r"token=(\S+)", url).group(1)  # type: ignore[union-attr]
        cmdline = " ".join(psutil.Process(pid).cmdline())
        assert "mlt_dashboard.cli" in cmdline and token not in cmdline
        states = list((isolated_jupyter / ".local/share/jupyter/runtime").glob("mlt-dashboard-*.json"))
        assert len(states) == 1 and states[0].stat().st_mode & 0o777 == 0o600
        assert json.loads(states[0].read_text())["pid"] == pid

        started = time.monotonic()
        while _status(url)[0] != 200:
            assert time.monotonic() - started < 60, "the dashboard did not answer"
            time.sleep(0.05)
        print(f"%mlt dashboard: the URL answers {time.monotonic() - started:.2f} s after the cell")
        page = browser.new_page()
        try:
            page.goto(url)
            page.get_by_text("random_forest_deep").first.wait_for(timeout=TIMEOUT_MS)
        finally:
            page.close()

        again = kernel.run("%mlt dashboard")
        assert _link(again.outputs)[0] == pid and "already running" in again.outputs[0]["content"]["data"]["text/plain"]
        # A restarted kernel finds it too (the state file, not the kernel's memory).
        kernel.km.restart_kernel(now=True)
        kernel.kc.wait_for_ready(timeout=60)
        assert _link(kernel.run("%mlt dashboard").outputs)[0] == pid

        stopped = kernel.run("%mlt dashboard stop")
        assert stopped.stdout == f"MLTrack: stopped the dashboard of {churn} (pid {pid})\n"
        deadline = time.monotonic() + 10
        while not _gone(pid):
            assert time.monotonic() < deadline, "the dashboard is still running"
            time.sleep(0.05)
        assert not states[0].exists()
        assert kernel.run("%mlt dashboard stop").stdout == f"MLTrack: no dashboard of {churn} is running\n"
        # Gone: the next call starts a new one.
        fresh = kernel.run("%mlt dashboard")
        new_pid = _link(fresh.outputs)[0]
        pids.add(new_pid)
        assert new_pid != pid and "started" in fresh.outputs[0]["content"]["data"]["text/plain"]
        assert kernel.run("%mlt dashboard stop").status == "ok"
    finally:
        for p in pids:
            _end(p, "mlt_dashboard")


# -- %mlt runs / %mlt run NAME --------------------------------------------------------

RUNS = f"""
import time, numpy as np, mlt_kernel as mlt
with mlt.run({HOSTILE!r}, lr=0.1):
    mlt.log_metric("accuracy_extra", 0.5)
with mlt.run("forest", n_estimators=300):
    ballast = np.ones(40_000_000)  # 320 MB, so the memory line has a shape
    time.sleep(0.6)
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    mlt.log_predictions(y, np.array([0, 1, 0, 0, 1, 0, 1, 1]))
    del ballast
"""


def _parsed(html: str) -> tuple[set[str], set[str]]:
    """The tags and attribute names of *html*, as a browser's parser sees them."""
    from html.parser import HTMLParser

    tags: set[str] = set()
    attributes: set[str] = set()

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            attributes.update(name for name, _ in attrs)

    Parser().feed(html)
    return tags, attributes


def _html(reply: Any) -> str:
    assert reply.status == "ok", reply.content
    return str(reply.of_type("display_data")[0]["data"]["text/html"])


def test_two_callers_at_once_start_one_dashboard(experiments: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlt_kernel.recording import dashboards

    churn = experiments / "churn"
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: dashboards.start(churn), range(4)))
    try:
        assert len({d.pid for d in found}) == 1 and sum(d.new for d in found) == 1
        again = dashboards.running(churn)
        assert again is not None and (again.pid, again.token, again.new) == (found[0].pid, found[0].token, False)
    finally:
        ended = dashboards.stop(churn)
        for d in found:
            _end(d.pid, "mlt_dashboard")
    assert ended is not None and ended.pid == found[0].pid and _gone(ended.pid)
    assert dashboards.running(churn) is None and dashboards.stop(churn) is None


def test_a_first_cell_mlt_dashboard_makes_its_experiment(exp: Path, start_kernel: Any) -> None:
    kernel = start_kernel(env={"MLT_EXP_PATH": str(exp)})
    pid = None
    try:
        reply = kernel.run("%mlt dashboard")
        assert reply.status == "ok", reply.content
        pid = _link(reply.outputs)[0]
        assert (exp / "mlt-experiment.json").is_file()
        assert kernel.run("%mlt dashboard stop").stdout == f"MLTrack: stopped the dashboard of {exp} (pid {pid})\n"
    finally:
        if pid is not None:
            _end(pid, "mlt_dashboard")


@pytest.mark.browser
def test_mlt_runs_is_static_html_and_a_hostile_name_stays_text(browser: Any, exp: Path, start_kernel: Any) -> None:
    kernel = start_kernel(env={"MLT_EXP_PATH": str(exp)})
    assert kernel.run(RUNS).status == "ok"
    time.sleep(1.0)  # the watcher's samples of the run reach the journal
    runs = _html(kernel.run("%mlt runs"))
    card = _html(kernel.run("%mlt run forest"))
    hostile_card = _html(kernel.run(f"%mlt run '{HOSTILE}'"))
    for html in (runs, card, hostile_card):
        tags, attributes = _parsed(html)
        assert not tags & {"script", "img", "iframe", "object"} and not {a for a in attributes if a.startswith("on")}
    assert "&lt;img src=x onerror=alert(1)&gt;" in runs and "&lt;img src=x onerror=alert(1)&gt;" in hostile_card
    assert 'data-testid="memory-svg"' in card and "mlt-confusion" in card

    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.set_content(f"<!DOCTYPE html><html><body>{runs}{card}</body></html>")
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0
        assert page.get_by_text(HOSTILE, exact=True).first.is_visible()
        assert page.get_by_text("forest", exact=True).first.is_visible()
        assert page.locator("svg[data-testid=memory-svg] polyline").count() >= 1
        assert page.locator("table.mlt-confusion td").all_inner_texts() == [
            "3",
            "0",
            "1",
            "4",
        ]  # true 0: 3 right; true 1: 1 missed, 4 right
        assert dialogs == []
    finally:
        page.close()

    for line, expected in (("%mlt", USAGE), ("%mlt bogus", f"%mlt bogus: not understood; {USAGE}")):
        bad = kernel.run(line)
        assert bad.status == "error" and bad.content["ename"] == "UsageError"
        assert bad.content["evalue"] == expected
    unknown = kernel.run("%mlt run nosuch")
    assert unknown.status == "error" and unknown.content["evalue"].startswith("MLTrack: ")
    assert "nosuch" in unknown.content["evalue"] and "\n" not in unknown.content["evalue"]


# -- mlt-dashboard's jupyter-server-proxy mode ----------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["--jupyter-server-proxy"],
        ["--jupyter-server-proxy", "--unix-socket", "s.sock", "--token-file", "t.txt"],
        ["--unix-socket", "s.sock", "--port", "5006"],
    ],
)
def test_the_proxy_mode_never_serves_a_port_without_a_token(
    experiments: Path, tmp_path: Path, extra: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlt_dashboard.cli", str(experiments), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("mlt-dashboard: --") and done.stderr.count("\n") == 1
    assert not (tmp_path / "s.sock").exists()
