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

import logging
import re
import secrets
from typing import Any

from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler

from mlt_dashboard.tokens import LOGIN_PAGE, same

LOGIN_PATH = "/mlt-access"
_USER = "owner"
_TOKEN_IN_URL = re.compile(r"(token=)[^&\s]+")


class _AccessPage(RequestHandler):
    """What a visitor without the token sees."""

    def get(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(LOGIN_PAGE)


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
        if given is not None and same(given, self._token):
            if not hasattr(handler, "ws_connection"):  # a page: remember the visitor
                handler.set_cookie(self.cookie_name, self._secret, httponly=True, samesite="Strict", path="/")
            return _USER
        cookie = handler.get_cookie(self.cookie_name)
        if cookie is not None and same(cookie, self._secret):
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
