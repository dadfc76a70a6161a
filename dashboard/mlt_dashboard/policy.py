"""What a browser may run and fetch: the Content-Security-Policy of served pages and of the export.

Scripts run only when they come from the dashboard's own server or are one of
the inline scripts the page was written with, allowed by their SHA-256 hash:
an inline event handler (``onerror=…``), a ``javascript:`` URL or a script
that markup from the folder slipped into the page never runs, even if
escaping had failed somewhere. Nothing is fetched from another host, the
pages cannot be framed, and links send no ``Referer`` (the URL carries the
access token on the first visit).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping

#: ``<script …>…</script>`` without a ``src`` whose type a browser runs (none, or JavaScript / module).
_INLINE_SCRIPT = re.compile(rb"<script(?P<attrs>(?:\s[^>]*)?)>(?P<body>.*?)</script\s*>", re.S | re.I)
_SRC = re.compile(rb"\ssrc\s*=", re.I)
_TYPE = re.compile(rb"""\stype\s*=\s*["']?([^"'\s>]+)""", re.I)
_SCRIPT_TYPES = {b"text/javascript", b"application/javascript", b"module"}

#: Headers sent with every response of the served app.
SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def script_hash(body: str | bytes) -> str:
    """The CSP source that allows the inline script *body*: ``'sha256-…'``."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return f"'sha256-{base64.b64encode(hashlib.sha256(data).digest()).decode('ascii')}'"


def inline_scripts(html: bytes) -> list[bytes]:
    """The bodies of the inline scripts a browser would run in *html* (data blocks such as JSON left out)."""
    found = []
    for match in _INLINE_SCRIPT.finditer(html):
        attrs = match.group("attrs")
        if _SRC.search(attrs):
            continue
        kind = _TYPE.search(attrs)
        if kind is None or kind.group(1).lower() in _SCRIPT_TYPES:
            found.append(match.group("body"))
    return found


def served_policy(scripts: Iterable[str | bytes]) -> str:
    """The policy of a page of the running dashboard that was written with the inline *scripts*.

    ``'unsafe-eval'`` stays out; ``style-src`` allows inline styles, which Bokeh
    and Panel set on every element (styles cannot run script).
    """
    hashes = " ".join(sorted({script_hash(s) for s in scripts}))
    return (
        f"default-src 'self'; script-src 'self' {hashes}".rstrip() + "; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def report_policy(scripts: Iterable[str]) -> str:
    """The policy of an exported report: exactly its own inline scripts, and no fetch at all."""
    hashes = " ".join(script_hash(s) for s in scripts) or "'none'"
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
        "font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


__all__ = ["SECURITY_HEADERS", "inline_scripts", "report_policy", "script_hash", "served_policy"]
