"""The dashboard's first second: answering on its port before Panel and Bokeh are imported.

Importing Panel takes most of a second, and building the server more. So
``mlt-dashboard`` binds its socket first (:func:`listen`) and hands it to an
:class:`EarlyResponder`, a thread that accepts meanwhile and answers each
connection on a thread of its own (a browser's spare connection, which sends
nothing, holds up no page):

- a page, with the token (or with none needed): plain HTML with the runs of the
  experiment, read by a thread of its own (``Starting…`` until they are, and the
  server waits for them before it imports Panel), that reloads itself every
  second (every quarter second until the runs are there), so the browser shows
  the live dashboard as soon as it answers;
- a page without the token: the server's own 403 page (``tokens.LOGIN_PAGE``);
- anything else (scripts, the websocket, a POST): 503 with ``Retry-After``.

The server then takes the socket over: :meth:`EarlyResponder.stop` ends the
accepting, and Bokeh's HTTP server accepts on the same socket, so a connection
that arrives in between waits in the listen queue and is never refused. These
pages run no script (their policy allows none) and escape every value read
from the folder, like the rest of the dashboard.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from mlt_dashboard.markup import el, join
from mlt_dashboard.policy import SECURITY_HEADERS
from mlt_dashboard.tokens import LOGIN_PAGE, same

#: Bytes of a request's head read at most; a longer one gets 431.
MAX_REQUEST_BYTES = 16 * 1024
#: Seconds a connection may take to send its request.
REQUEST_TIMEOUT_S = 2.0
#: Connections answered at once, each on a thread of its own: a browser opens a spare connection
#: that sends nothing, and waiting on it would hold up the page (it closes after REQUEST_TIMEOUT_S).
MAX_CONNECTIONS = 32
#: How often the accepting thread looks whether it must stop.
POLL_S = 0.02
#: These pages run nothing, fetch nothing, and are framed by nobody.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_CSS = """
body { margin: 0; color: #1f2328; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
main { max-width: 82rem; margin: 0 auto; padding: 1.2rem 1.5rem 4rem; }
h1 { font-size: 1.5rem; margin: 0.2rem 0; }
.mlt-starting { color: #59636e; }
"""


def listen(address: str, port: int | None) -> socket.socket:
    """A listening socket on *address*: *port*, or the first free default port (from 5006).

    It is non-blocking, as Tornado's servers want theirs.
    """
    from mlt_dashboard.server import DEFAULT_PORTS  # light: Panel is imported inside its functions

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    candidates = [port] if port is not None else [*DEFAULT_PORTS, 0]
    error: OSError | None = None
    for candidate in candidates:
        try:
            sock = socket.create_server((address, candidate), family=family, backlog=128)
        except OSError as exc:
            error = exc
            continue
        sock.setblocking(False)
        return sock
    assert error is not None
    raise error


def _response(status: str, body: str, content_type: str = "text/html; charset=utf-8", **headers: str) -> bytes:
    data = body.encode("utf-8")
    lines = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
        "Cache-Control: no-store",
        "Connection: close",
        f"Content-Security-Policy: {POLICY}",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _runs_html(experiments: Sequence[Path]) -> str:
    """The page's body: the runs of the one experiment, or the experiments of the folder."""
    if len(experiments) != 1:
        names = el("ul", join(el("li", p.name) for p in experiments)) if experiments else el("p", "No experiment yet.")
        return join([el("h1", "MLTrack"), el("p", "Experiments in this folder:"), names])
    from mlt_dashboard.tables import runs_records_table

    runs, metrics = read_runs(experiments[0])
    title = el("h1", f"MLTrack · {experiments[0].name}")
    if not runs:
        return join([title, el("p", "No runs yet.")])
    return join([title, el("p", f"{len(runs)} runs"), runs_records_table(list(enumerate(runs)), metrics)])


def read_runs(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of ``Source.runs()`` as dictionaries (``started_at`` local), and the metrics that
    have a value: read with DuckDB alone, before pandas is imported (a third of a second)."""
    from mlt_dashboard import sql, style
    from mlt_kernel.core.schema import RUNS
    from mlt_kernel.read.finals import FINAL_METRICS_SQL, final_metrics
    from mlt_kernel.read.query import Query, json_value

    query = Query(path)
    try:
        query.prepare(sql.RUNS_SQL, FINAL_METRICS_SQL)
        runs = [dict(zip(sql.RUNS_COLUMNS, row, strict=True)) for row in query.rows(sql.RUNS_SQL)]
        finals = final_metrics(query, RUNS.names)  # none named like a column, as the dashboard's
    finally:
        query.close()
    zone = style.local_zone()
    for run in runs:
        run["params"] = style.params_of(json_value(run["params"]))
        if isinstance(run["started_at"], datetime):
            run["started_at"] = run["started_at"].astimezone(zone)
        for name, values in finals.items():
            run[name] = values.get(run["run_id"]) if run["run_id"] is not None else None
    shown = [name for name in finals if any(_number(run[name]) for run in runs)]
    return runs, shown


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and value == value  # NaN is no value


class EarlyResponder:
    """Answers on *sock* until :meth:`stop`; see the module's documentation.

    *token* None admits everyone (``--no-token``). *experiments* are read for
    the page (``[]``: nothing to read yet). Use it as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, sock: socket.socket, token: str | None, experiments: Sequence[Path]) -> None:
        self.sock = sock
        self.token = token
        self.experiments = list(experiments)
        self._stop = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="mlt-early-accept", daemon=True)
        self._reading = threading.Thread(target=self._read, name="mlt-early-read", daemon=True)
        self._body: str | None = None
        self._open = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._counting = threading.Lock()
        self.served = 0  #: responses given (pages, refusals, 503s)

    def __enter__(self) -> EarlyResponder:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._accepting.start()
        self._reading.start()

    def stop(self) -> None:
        """Accept no more (the socket stays open, for the server); returns once the accepting thread
        is done. Connections accepted before are still answered, each on its own thread."""
        self._stop.set()
        if self._accepting.is_alive():
            self._accepting.join()

    def wait_read(self, timeout: float) -> None:
        """Wait (at most *timeout* s) until the page has its runs: importing Panel meanwhile would
        hold the GIL for most of the time the reading needs, and the data comes first."""
        self._reading.join(timeout)

    def _read(self) -> None:
        try:
            self._body = _runs_html(self.experiments)
        except Exception as exc:  # noqa: BLE001 - the page then says the runs come with the dashboard
            self._body = join([el("h1", "MLTrack"), el("p", f"The runs show once the dashboard is up ({exc}).")])

    def _accept(self) -> None:
        while not self._stop.is_set():
            # A free answering thread first: while all are busy, connections wait in the listen queue.
            if not self._open.acquire(timeout=POLL_S):
                continue
            handed = False
            try:
                handed = self._accept_one()
            finally:
                if not handed:
                    self._open.release()

    def _accept_one(self) -> bool:
        """Accept a connection and hand it to a thread of its own; False when none was handed."""
        readable, _, _ = select.select([self.sock], [], [], POLL_S)
        if not readable or self._stop.is_set():
            return False
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return False  # another waiter took it
        except OSError:
            self._stop.set()  # the socket was closed
            return False
        try:
            threading.Thread(target=self._serve, args=(conn,), name="mlt-early-answer", daemon=True).start()
        except RuntimeError:  # no thread to be had
            conn.close()
            return False
        return True

    def _serve(self, conn: socket.socket) -> None:
        try:
            with contextlib.closing(conn), contextlib.suppress(OSError):
                self._answer(conn)
        finally:
            self._open.release()

    def _answer(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        deadline = time.monotonic() + REQUEST_TIMEOUT_S  # for the whole head, however it trickles in
        head = b""
        while b"\r\n\r\n" not in head:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            conn.settimeout(left)
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > MAX_REQUEST_BYTES:
                break
        if b"\r\n\r\n" in head:
            response = self.respond(head.split(b"\r\n\r\n", 1)[0])
        else:
            response = _response("431 Request Header Fields Too Large", "", "text/plain")
        with self._counting:
            self.served += 1
        conn.sendall(response)

    def respond(self, head: bytes) -> bytes:
        """The response to a request's *head* (request line and headers)."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET":
            return _response("503 Service Unavailable", "starting\n", "text/plain", Retry_After="1")
        try:
            url = urllib.parse.urlsplit(parts[1])
        except ValueError:  # an URL that cannot be parsed ("http://[/")
            return _response("400 Bad Request", "bad request\n", "text/plain")
        page = "." not in url.path and not url.path.endswith("/ws") and not url.path.startswith("/static")
        if not page:
            return _response("503 Service Unavailable", "starting\n", "text/plain", Retry_After="1")
        if self.token is not None:
            given = urllib.parse.parse_qs(url.query).get("token", [""])[-1]
            if not same(given, self.token):
                return _response("403 Forbidden", LOGIN_PAGE)
        return _response("200 OK", self.page())

    def page(self) -> str:
        """The whole page, as it stands: the runs once read, and a note that the dashboard is starting."""
        body = self._body
        starting = el("p", "Starting the interactive dashboard…", class_="mlt-starting")
        content = join([starting, body]) if body is not None else join([el("h1", "MLTrack"), starting])
        from mlt_dashboard.style import CSS

        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="refresh" content="{1 if body is not None else 0.25}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>MLTrack dashboard</title>\n<style>{CSS}{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{content}\n</main>\n</body>\n</html>\n"
        )
