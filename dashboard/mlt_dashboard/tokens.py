"""The access token's plain parts: made, read from a file, compared. Imports nothing heavy.

``mlt-dashboard`` answers on its port before Bokeh and Panel are imported
(``mlt_dashboard.early``), and checks the token there too; ``access`` builds the
server's auth provider on the same rules.
"""

from __future__ import annotations

import hmac
import os
import secrets

from mlt_kernel.core.children import DASHBOARD_TOKEN_ENV

#: Environment variable holding a token chosen by the user (or by ``%mlt dashboard``).
TOKEN_ENV = DASHBOARD_TOKEN_ENV
#: A token file larger than this is not a token.
MAX_TOKEN_FILE_BYTES = 4096

#: What a visitor without the token sees (status 403).
LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MLTrack dashboard</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:4rem auto;max-width:36rem;color:#1f2328}
code{background:#f6f8fa;padding:.1em .3em;border-radius:4px}</style></head>
<body><h1>MLTrack dashboard</h1>
<p>This dashboard admits only the person who started it.
Open the URL printed in your terminal by <code>mlt-dashboard</code>
(it ends with <code>?token=…</code>).</p></body></html>
"""


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


def same(given: str, expected: str) -> bool:
    """Whether *given* is *expected*, compared in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
