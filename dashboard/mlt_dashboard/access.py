"""Only the person who started the dashboard gets in: an access token, as Jupyter does.

Binding 127.0.0.1 keeps the network out, but on a shared machine (a JupyterHub
node, a team's GPU server) every other account can open 127.0.0.1:PORT. So the
server makes a random token at start (or takes ``MLT_DASHBOARD_TOKEN``,
``--token-file`` or, with a warning, ``--token``) and prints the URL that
carries it; a browser it opens gets the URL through a 0600 file, never on a
command line. The first request
with the token gets an HTTP-only, same-site cookie holding a separate random
session secret (never the token), so that links inside the app keep working.
Pages and websockets without a valid token or cookie get no data: a page gets
a short "open the URL printed in your terminal" note, a websocket a 403.
Tokens are compared in constant time and never logged after the start line.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from typing import Any

from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler

from mlt_kernel.core.children import DASHBOARD_TOKEN_ENV

#: Environment variable holding a token chosen by the user (or by ``%mlt dashboard``).
TOKEN_ENV = DASHBOARD_TOKEN_ENV
LOGIN_PATH = "/mlt-access"
_USER = "owner"
_TOKEN_IN_URL = re.compile(r"(token=)[^&\s]+")

_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MLTrack dashboard</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:4rem auto;max-width:36rem;color:#1f2328}
code{background:#f6f8fa;padding:.1em .3em;border-radius:4px}</style></head>
<body><h1>MLTrack dashboard</h1>
<p>This dashboard admits only the person who started it.
Open the URL printed in your terminal by <code>mlt-dashboard</code>
(it ends with <code>?token=…</code>).</p></body></html>
"""


#: A token file larger than this is not a token.
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in the file at *path* (its first line, stripped).

    Raises:
        OSError: the file cannot be read.
        ValueError: it is empty or larger than ``MAX_TOKEN_FILE_BYTES``.
    """
    with open(path, "rb") as f:
        data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValueError(f"larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token file")
    lines = data.decode("utf-8", "replace").splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError("the file holds no token")
    return token


def new_token() -> str:
    """A random token, URL-safe, 192 bits."""
    return secrets.token_urlsafe(24)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class _AccessPage(RequestHandler):
    """What a visitor without the token sees."""

    def get(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(_LOGIN_PAGE)


class TokenAuth(AuthProvider):
    """A Bokeh auth provider: the token in the URL once, then a session cookie."""

    def __init__(self, token: str, port: int) -> None:
        super().__init__()
        if not token:
            raise ValueError("the access token must not be empty")
        self._token = token
        self._secret = secrets.token_urlsafe(32)
        # Browsers share cookies between the ports of one host: one name per dashboard.
        self.cookie_name = f"mlt_dashboard_{port}"

    @property
    def get_user(self) -> Any:
        return self._user

    @property
    def login_url(self) -> str:
        return LOGIN_PATH

    @property
    def login_handler(self) -> type[RequestHandler]:
        return _AccessPage

    def _user(self, handler: RequestHandler) -> str | None:
        given = handler.get_query_argument("token", None)
        if given is not None and _same(given, self._token):
            if not hasattr(handler, "ws_connection"):  # a page: remember the visitor
                handler.set_cookie(self.cookie_name, self._secret, httponly=True, samesite="Strict", path="/")
            return _USER
        cookie = handler.get_cookie(self.cookie_name)
        if cookie is not None and _same(cookie, self._secret):
            return _USER
        return None


class RedactTokens(logging.Filter):
    """Removes ``token=…`` from log records (tornado logs the URI of failed requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_TOKEN_IN_URL.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1…", record.msg)
        return True


def redact_logs() -> None:
    """Keep tokens out of the server's logs."""
    for name in ("tornado.access", "tornado.application", "tornado.general"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
