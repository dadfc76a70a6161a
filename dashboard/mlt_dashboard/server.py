"""Serving the app: one local Bokeh/Tornado server, nothing fetched from elsewhere.

- Binds 127.0.0.1 unless told otherwise (the CLI warns about any other address).
- Websocket connections are accepted only from the served origin.
- Bokeh's and Panel's JavaScript and CSS come from this server's ``/static``
  (``BOKEH_RESOURCES=server``; Panel serves its bundled extensions itself),
  never from a CDN: the browser makes no request to another host.

- With a token (the default of ``mlt-dashboard``), pages and websockets are
  served only to a browser that came with it (see ``mlt_dashboard.access``).
- Every response carries the security headers of ``mlt_dashboard.policy``; an HTML
  page, a Content-Security-Policy that allows exactly its own inline scripts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import urllib.parse
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlt_dashboard.policy import SECURITY_HEADERS, inline_scripts, served_policy

if TYPE_CHECKING:
    from mlt_dashboard.app import AppConfig

#: Ports tried in turn when none is given.
DEFAULT_PORTS = range(5006, 5016)


@dataclass
class ServerOptions:
    """How to serve: where, and who is let in."""

    address: str = "127.0.0.1"
    port: int | None = None
    show: bool = True
    #: The access token; None serves everyone who can reach the address.
    token: str | None = None
    #: Listen on this Unix socket instead of *address* and *port* (jupyter-server-proxy's launcher).
    unix_socket: str | None = None
    #: Extra tornado routes, ``(pattern, handler, kwargs)``.
    extra_patterns: list[tuple[Any, ...]] = field(default_factory=list)

    def origins(self, port: int) -> list[str]:
        """The websocket origins accepted: the served address (and its loopback aliases)."""
        hosts = {"127.0.0.1", "localhost"} if self.address in ("127.0.0.1", "localhost") else {self.address}
        return sorted(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)

    def url(self, port: int, path: str = "summary") -> str:
        """The URL to open (with the token, when there is one); ``unix:PATH`` on a Unix socket."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        query = f"?{urllib.parse.urlencode({'token': self.token})}" if self.token else ""
        return f"http://{host}:{port}/{path}{query}"


def _root_redirect() -> tuple[Any, ...]:
    from tornado.web import RequestHandler

    class RootRedirect(RequestHandler):
        """``/`` opens the summary (keeping ``?exp=…``)."""

        def get(self) -> None:
            query = self.request.query
            self.redirect("summary" + (f"?{query}" if query else ""))

    return (r"/", RootRedirect)


def _security_headers() -> type:
    from tornado.web import OutputTransform

    class SecurityHeaders(OutputTransform):
        """Adds ``policy.SECURITY_HEADERS`` to every response, and its CSP to every HTML page.

        Bokeh writes each page in one piece, so the first chunk is the whole page
        and its inline scripts can be hashed; a page that arrives in pieces gets
        a policy with no inline script at all (it fails closed).
        """

        def transform_first_chunk(
            self, status_code: int, headers: Any, chunk: bytes, finishing: bool
        ) -> tuple[int, Any, bytes]:
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value
            if str(headers.get("Content-Type", "")).startswith("text/html"):
                headers["Content-Security-Policy"] = served_policy(inline_scripts(chunk) if finishing else [])
            return status_code, headers, chunk

    return SecurityHeaders


@contextlib.contextmanager
def _listening_on(sock: socket.socket) -> Iterator[None]:
    """Bokeh's server, made meanwhile, listens on *sock* (bound early: see ``mlt_dashboard.early``)."""
    import bokeh.server.server as bokeh_server

    # Bokeh's Server binds through this module-level name; there is no argument for a bound socket.
    names = vars(bokeh_server)
    bind = names["bind_sockets"]

    def bound(address: str | None, port: int) -> tuple[list[socket.socket], int]:
        return [sock], int(sock.getsockname()[1])

    names["bind_sockets"] = bound
    try:
        yield
    finally:
        names["bind_sockets"] = bind


def build_server(config: AppConfig, options: ServerOptions, sock: socket.socket | None) -> tuple[Any, int]:
    """A started-but-not-running Bokeh server for the app, and its port: on *sock* (bound by
    ``early.listen``), or on ``options.unix_socket``, which Bokeh binds."""
    os.environ["BOKEH_RESOURCES"] = "server"  # never a CDN, whatever the user's environment says
    import panel as pn

    from mlt_dashboard.app import NAV, page_classes, page_factories
    from mlt_dashboard.style import CSS

    page_classes()  # import the pages now, not during the first request

    pn.extension("tabulator", raw_css=[CSS], design="native", notifications=False)
    kwargs: dict[str, Any] = {}
    if options.unix_socket is not None:
        # Only the Jupyter server in front connects; it checked the page's origin, and a
        # browser's websocket from that page is same-origin (tornado skips check_origin).
        port = 0
        kwargs["unix_socket"] = options.unix_socket
        origins = None
    else:
        if sock is None:
            raise ValueError("a TCP dashboard is served on a socket bound beforehand (early.listen)")
        port = int(sock.getsockname()[1])
        origins = options.origins(port)
    if options.token:
        from mlt_dashboard.access import TokenAuth, redact_logs

        redact_logs()
        auth = TokenAuth(options.token, port)
        kwargs["auth_provider"] = auth
        # Bokeh copies the request's cookies and headers into the session token it
        # writes into the page; the HTTP-only session secret must not be there.
        kwargs["exclude_cookies"] = [auth.cookie_name]
        kwargs["exclude_headers"] = ["Cookie"]
    with _listening_on(sock) if sock is not None else contextlib.nullcontext():
        server = pn.io.server.get_server(
            page_factories(config),
            port=port,
            address=None if options.unix_socket is not None else options.address,
            websocket_origin=origins,
            show=False,
            start=False,
            verbose=False,
            title={slug: f"MLTrack · {label}" for slug, label in NAV},
            extra_patterns=[_root_redirect(), *options.extra_patterns],
            transforms=[_security_headers()],  # passed through Bokeh to tornado's Application
            **kwargs,
        )
    return server, port


def write_redirect_file(url: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """A page that sends the browser to *url*, readable by this account only (0600).

    The browser is started with this file's path rather than *url*, so the
    token never appears in a command line (``/proc/PID/cmdline`` is readable by
    every account), as Jupyter does. It lives in Jupyter's runtime folder.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    from mlt_dashboard.markup import el, join

    where = Path(folder) if folder is not None else Path(jupyter_runtime_dir())
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=f"mlt-dashboard-{os.getpid()}-", suffix="-open.html", dir=where)  # 0600
    page = join(
        [
            el(
                "head",
                el("meta", charset="utf-8"),
                el("meta", http_equiv="refresh", content=f"0;url={url}"),
                el("meta", name="referrer", content="no-referrer"),
                el("title", "MLTrack dashboard"),
            ),
            el(
                "body",
                el("p", "Opening the MLTrack dashboard… If nothing happens, ", el("a", "click here", href=url), "."),
            ),
        ]
    )
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"<!DOCTYPE html>\n<html>{page}</html>\n")
    return Path(name)


def open_browser(url: str) -> Path | None:
    """Open *url* in the user's browser through a redirect file; returns the file (remove it when done)."""
    try:
        redirect = write_redirect_file(url)
    except OSError:
        return None
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(redirect.as_uri())
    return redirect


def serve(config: AppConfig, options: ServerOptions, sock: socket.socket | None, handover: Callable[[], None]) -> None:
    """Serve until interrupted (on *sock*, see :func:`build_server`); *handover* runs once the server
    is made, before it accepts."""
    server, _ = build_server(config, options, sock)
    handover()  # the early responder stops accepting: what waits in the queue is the server's
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
