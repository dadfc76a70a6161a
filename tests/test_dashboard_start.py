"""The dashboard's first second: the port answers, with the runs, before Panel is imported.

``mlt_dashboard.early`` is driven over real sockets in-process (its pages, its
refusals, the hand-over of the socket), and ``mlt-dashboard`` is polled from
the moment it is launched: it answers at once, never refuses a connection while
the server takes the socket over, and Chromium shows the run names before the
live page replaces them.
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hostile_experiment import RUN_NAMES, build_hostile_experiment
from test_dashboard import CLI, TIMEOUT_MS, _free_port

import mlt_kernel as mlt
from mlt_dashboard import early
from mlt_dashboard.early import MAX_REQUEST_BYTES, POLICY, REQUEST_TIMEOUT_S, EarlyResponder, listen, read_runs
from mlt_dashboard.policy import SECURITY_HEADERS
from mlt_dashboard.queries import Source
from mlt_dashboard.tables import runs_records_table, runs_table
from mlt_kernel.core import layout
from mlt_kernel.store.journal import JournalWriter, journal_name

TOKEN = "early-token-0123456789"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_hostile_experiment(tmp_path_factory.mktemp("early"))


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _page_when_read(base: str) -> str:
    """The early page once it carries the runs (they are read on a thread of their own)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _, body = _get(f"{base}/summary?token={TOKEN}")
        assert status == 200
        if "Starting" in body and "<table" in body:
            return body
        time.sleep(0.05)
    raise AssertionError("the early page never showed the runs")


def test_early_pages_refusals_and_the_hand_over(hostile: dict[str, Any]) -> None:
    sock = listen("127.0.0.1", None)
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with sock:
        with EarlyResponder(sock, TOKEN, [hostile["path"]]) as early:
            body = _page_when_read(base)
            # A connection that sends nothing (a browser opens one in reserve) holds up no other.
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                started = time.monotonic()
                assert _get(f"{base}/summary?token={TOKEN}")[0] == 200
                assert time.monotonic() - started < REQUEST_TIMEOUT_S / 2
            # Every run, its name as text: the payloads arrive escaped, and nothing runs on the page.
            for name in RUN_NAMES:
                assert html.escape(name[:40]) in body
            assert "<script" not in body.lower() and "<img" not in body.lower()
            assert '<meta http-equiv="refresh" content="1">' in body
            status, headers, _ = _get(f"{base}/summary?token={TOKEN}")
            assert headers["Content-Security-Policy"] == POLICY and "script-src" not in POLICY
            assert all(headers[name] == value for name, value in SECURITY_HEADERS.items())
            assert headers["Cache-Control"] == "no-store"
            # Without the token, or with a wrong one: the server's own 403 page, nothing of the folder.
            for query in ("", "?token=", "?token=early-token-012345678", f"?token={TOKEN}x"):
                status, _, body = _get(f"{base}/summary{query}")
                assert status == 403 and "admits only the person who started it" in body
                assert RUN_NAMES[0][:20] not in body
            # Scripts, the websocket and anything but GET wait for the server.
            for path, method in (("/static/js/bokeh.min.js", "GET"), ("/summary/ws", "GET"), ("/summary", "POST")):
                status, headers, _ = _get(f"{base}{path}?token={TOKEN}", method)
                assert (status, headers.get("Retry-After")) == (503, "1"), path
            # A request head that never ends is cut off.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"GET /summary HTTP/1.1\r\n" + b"X: " + b"y" * MAX_REQUEST_BYTES)
                assert c.recv(100).startswith(b"HTTP/1.1 431 ")
        served = early.served
        assert served >= 11
        # Stopped: the socket still listens, and a connection now waits for whoever accepts next.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /summary HTTP/1.1\r\n\r\n")
            c.settimeout(0.3)
            with pytest.raises(TimeoutError):
                c.recv(100)
            conn, _ = sock.accept()
            conn.close()
        assert early.served == served


def test_the_early_table_is_the_dashboards_read_without_pandas(hostile: dict[str, Any], tmp_path: Path) -> None:
    # The same table as the export's (from Source.runs() and pandas), hostile names and params included.
    runs, metrics = read_runs(hostile["path"])
    source = Source(hostile["path"])
    try:
        assert runs_records_table(list(enumerate(runs)), metrics) == runs_table(source.runs())
    finally:
        source.close()
    assert {run["name"] for run in runs} >= set(RUN_NAMES) and metrics
    # Read in a fresh process, it imports no pandas (a third of a second on the page's way).
    code = "import sys, pathlib; from mlt_dashboard.early import _runs_html; print(len(_runs_html([pathlib.Path(sys.argv[1])])) > 0, 'pandas' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(hostile["path"])], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["True", "False"], proc.stderr


def _odd_runs_folder(root: Path) -> Path:
    """Runs the two readers could tell apart: params that are not an object, a name and a status
    that are NULL, a run started in summer (a time-zone offset other than today's), a run started
    past pandas' range, a metric named like a run column, and metrics of runs that are not there."""
    exp = root / "odd"
    layout.ensure_layout(exp)
    j = JournalWriter(exp / "journals" / journal_name("s-odd"))
    summer = 1_751_360_400_000_000  # 2025-07-01 09:00 UTC, in µs
    for run_id, name, status, started, params in (
        ("r1", "listed params", "finished", summer, "[1, 2]"),
        ("r2", None, None, summer + 60_000_000, '"abc"'),
        ("r3", "far future", "finished", 400_000_000_000_000_000, "true"),
        ("r4", "plain", "finished", summer + 120_000_000, '{"n_estimators": 300}'),
        ("r5", "deep params", "finished", summer + 180_000_000, "[" * 100_000 + "]" * 100_000),
    ):
        j.write(
            "runs",
            {
                "run_id": run_id,
                "name": name,
                "session_id": "s-odd",
                "status": status,
                "started_at": started,
                "params": params,
            },
        )
    for run_id, metric, value in (
        ("r1", "accuracy", 0.9),
        ("r4", "recorded_at", 1.0),
        ("ghost", "orphan", 0.5),
        (None, "nullrun", 0.25),
        ("r4", "f1", None),
    ):
        j.write("metrics", {"run_id": run_id, "name": metric, "value": value, "split": "test"})
    j.close()
    return exp


def test_the_early_table_and_the_dashboards_agree_on_odd_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # in December +01:00; the summer run was at +02:00
    time.tzset()
    try:
        exp = _odd_runs_folder(tmp_path)
        runs, metrics = read_runs(exp)
        source = Source(exp)
        try:
            theirs = runs_table(source.runs())
        finally:
            source.close()
        ours = runs_records_table(list(enumerate(runs)), metrics)
        assert ours == theirs
        assert metrics == ["accuracy"]  # not the column-named, orphan, NULL-run or value-less metrics
        assert "n_estimators=300" in ours and "[1, 2]" not in ours and "abc" not in ours
        # The read API too: JSON nested deeper than Python's stack is no value, not an error.
        assert mlt.Experiment(exp).runs().set_index("run_id")["params"].to_dict() == {
            "r1": [1, 2],
            "r2": "abc",
            "r3": True,
            "r4": {"n_estimators": 300},
            "r5": None,
        }
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_busy_or_slow_connections_keep_no_one_out(hostile: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(early, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(early, "REQUEST_TIMEOUT_S", 0.6)
    sock = listen("127.0.0.1", None)
    port = sock.getsockname()[1]
    with sock, EarlyResponder(sock, None, []):
        # Every answering thread busy: the next connection waits in the listen queue, never reset.
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            time.sleep(0.1)
            assert _get(f"http://127.0.0.1:{port}/summary")[0] == 200
        finally:
            for c in idle:
                c.close()
        # A head sent a byte at a time is cut off after REQUEST_TIMEOUT_S in all, not per byte.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for byte in b"GET /summary HTTP/1.1\r\nX: " + b"y" * 100:
                    c.sendall(bytes([byte]))
                    time.sleep(0.1)
            assert time.monotonic() - started < 3
        # A request line whose URL cannot be parsed: 400, and the next one is answered.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET http://[/ HTTP/1.1\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 400 ")
        assert _get(f"http://127.0.0.1:{port}/summary")[0] == 200


def test_an_early_page_without_experiments_or_token(tmp_path: Path) -> None:
    sock = listen("127.0.0.1", None)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with sock, EarlyResponder(sock, None, []):
        deadline = time.monotonic() + 30
        while True:
            status, _, body = _get(f"{base}/summary")
            assert status == 200
            if "No experiment yet" in body or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "No experiment yet" in body


def test_a_port_in_use_is_a_one_line_error(hostile: dict[str, Any]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run([*CLI, str(hostile["path"]), "--port", str(port)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"mlt-dashboard: cannot listen on 127.0.0.1:{port}: ")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.browser
def test_the_port_answers_at_once_and_is_never_refused(browser: Any, hostile: dict[str, Any]) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, str(hostile["path"]), "--port", str(port), "--no-browser", "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    answers: list[tuple[float, int | str]] = []  # (seconds after launch, status or error)
    stop = threading.Event()

    def poll() -> None:
        # The server's own static files answer 200 only once it runs; before, 503.
        while not stop.is_set():
            try:
                status, _, _ = _get(f"{base}/static/js/bokeh.min.js")
                answers.append((time.monotonic() - started, status))
            except OSError as exc:
                answers.append((time.monotonic() - started, type(exc).__name__))
            if answers[-1][1] == 200:
                return
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"MLTrack dashboard: (\S+)", line)
        assert url is not None, line
        context = browser.new_context()
        page = context.new_page()
        page.goto(url.group(1))
        # The run names show in the early page or the live one, whichever comes first, and the
        # live page follows on its own (the early one reloads itself).
        page.get_by_text(RUN_NAMES[0][:12]).first.wait_for(timeout=TIMEOUT_MS)
        page.locator('.tabulator-row .tabulator-cell[tabulator-field="name"]').first.wait_for(timeout=TIMEOUT_MS)
        context.close()
        poller.join(timeout=60)
        stop.set()
        statuses = [status for _, status in answers]
        first = next(i for i, status in enumerate(statuses) if isinstance(status, int))
        # From the first answer on, every connection was answered: 503 while the server is built, then 200.
        assert set(statuses[first:]) <= {503, 200}, statuses[first:]
        assert statuses[-1] == 200 and 503 in statuses[first:]
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=10)
