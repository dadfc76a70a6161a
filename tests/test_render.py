"""Tests for mlt_kernel.tracking.render: untrusted Markdown to safe HTML, offline pages.

The unit tests pin the allow-list; the browser tests open a page built from
hostile Markdown in headless Chromium and check that nothing runs or is fetched.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlt_kernel.tracking.render import (
    CONTENT_SECURITY_POLICY,
    data_uri,
    html_page,
    markdown_to_html,
    sanitize,
)

HOSTILE_MARKDOWN = """\
# Findings

Random forest beats the baseline.

<script>window.__pwned = "script"; document.title = "pwned"; alert(1)</script>

<img src=x onerror="window.__pwned = 'onerror'; alert(2)">

[click me](javascript:window.__pwned='md-link';alert(3))
<a href="javascript:window.__pwned='a-href';alert(4)">raw link</a>
<a href="java&#x09;script:alert(5)">tabbed scheme</a>

<iframe src="https://evil.example/frame"></iframe>

<svg onload="window.__pwned='svg'; alert(6)"><circle r="4"/></svg>

<style>body { background: url(https://evil.example/bg.png) }</style>

<link rel="stylesheet" href="https://evil.example/s.css">
<base href="https://evil.example/">
<meta http-equiv="refresh" content="0; url=https://evil.example/">
<object data="https://evil.example/o.swf"></object>
<form action="https://evil.example/f">
<input name="q" autofocus onfocus="window.__pwned='focus'"></form>
<details open ontoggle="window.__pwned='toggle'"><summary>s</summary></details>

![remote](https://evil.example/x.png)
<img src="//evil.example/y.png">
![svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDcpIi8+)

![ROC curve](plots/roc.png)
"""


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG of the given size, built with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def roc_png(tmp_path: Path) -> Path:
    """A 3x2 PNG at plots/roc.png inside a temporary experiment folder."""
    path = tmp_path / "plots" / "roc.png"
    path.parent.mkdir()
    path.write_bytes(_png(3, 2))
    return path


# --- rendering -------------------------------------------------------------


def test_table_renders_with_column_alignment() -> None:
    html = markdown_to_html("| model | f1 |\n|:--|--:|\n| rf | 0.91 |\n")
    assert "<table>" in html and "<thead>" in html and "<tbody>" in html
    assert '<th align="left">model</th>' in html
    assert '<td align="right">0.91</td>' in html
    assert "style" not in html


def test_fenced_code_keeps_language_and_escapes_content() -> None:
    html = markdown_to_html("```python\nif a < b:\n    print('<b>')\n```\n")
    assert '<pre><code class="language-python">' in html
    assert "a &lt; b" in html and "&lt;b&gt;" in html


def test_inline_code_strikethrough_and_emphasis() -> None:
    html = markdown_to_html("`x = 1` ~~old~~ **bold** *it*")
    assert "<code>x = 1</code>" in html
    assert "<s>old</s>" in html
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html


def test_safe_links_are_kept_with_rel_noopener() -> None:
    html = markdown_to_html(
        "[a](https://scikit-learn.org) [b](http://example.org) [c](mailto:me@example.org) [d](runs/rf.html#m)"
    )
    hrefs = (
        "https://scikit-learn.org",
        "http://example.org",
        "mailto:me@example.org",
        "runs/rf.html#m",
    )
    for href in hrefs:
        assert f'href="{href}"' in html
    assert html.count('rel="noopener noreferrer"') == 4


def test_author_rel_is_replaced() -> None:
    html = sanitize('<a href="https://example.org" rel="opener" target="_blank">x</a>')
    assert html == '<a href="https://example.org" rel="noopener noreferrer">x</a>'


@pytest.mark.parametrize(
    ("markdown", "forbidden"),
    [
        ("<script>alert(1)</script>", ["<script", "alert"]),
        ("<img src=x onerror=alert(1)>", ["onerror", "alert"]),
        ("[x](javascript:alert(1))", ["href"]),
        ('<a href="javascript:alert(1)">x</a>', ["javascript", "href"]),
        ('<a href="java&#x09;script:alert(1)">x</a>', ["script:", "href"]),
        ('<a href=" JAVASCRIPT:alert(1)">x</a>', ["href"]),
        ('<a href="data:text/html,&lt;script&gt;alert(1)">x</a>', ["data:", "href"]),
        ('<a href="vbscript:msgbox(1)">x</a>', ["vbscript", "href"]),
        ('<iframe src="https://evil.example/"></iframe>', ["<iframe", "evil.example"]),
        ("<svg onload=alert(1)><circle r=1 /></svg>", ["<svg", "onload", "circle"]),
        ("<math><mi>x</mi></math>", ["<math", "<mi"]),
        ("<style>body{background:red}</style>", ["<style", "background"]),
        ('<p style="position:fixed;top:0">x</p>', ["style", "fixed"]),
        ('<div onclick="alert(1)" onmouseover="alert(2)">x</div>', ["onclick", "onmouseover"]),
        ("![](http://evil.example/x.png)", ["<img", "evil.example"]),
        ('<img src="https://evil.example/x.png">', ["<img", "evil.example"]),
        ('<img src="//evil.example/x.png">', ["<img", "evil.example"]),
        ('<img src="\\\\evil.example/x.png">', ["<img", "evil.example"]),
        ("![](data:image/svg+xml;base64,PHN2Zz4=)", ["<img"]),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', ["<img", "svg"]),
        ('<img src="data:text/html;base64,PHNjcmlwdD4=">', ["<img", "data:"]),
        ('<form action="https://evil.example/"><input name=q></form>', ["<form", "<input", "evil"]),
        ('<link rel=stylesheet href="https://evil.example/s.css">', ["<link", "evil"]),
        ('<base href="https://evil.example/">', ["<base", "evil"]),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example/">', ["<meta", "evil"]),
        ('<object data="https://evil.example/o"></object>', ["<object", "evil"]),
        ('<embed src="x.swf">', ["<embed", "swf"]),
        ("<!-- <script>alert(1)</script> -->", ["<!--", "script"]),
    ],
)
def test_hostile_markup_is_neutralised(markdown: str, forbidden: list[str]) -> None:
    html = markdown_to_html(markdown)
    for needle in forbidden:
        assert needle.lower() not in html.lower(), html


def test_sanitize_keeps_the_allow_list() -> None:
    fragment = (
        "<h2>t</h2><blockquote><p>q</p></blockquote><ul><li>i</li></ul>"
        '<table><tr><td colspan="2">c</td></tr></table>'
        '<img src="roc.png" alt="roc" title="ROC" width="320" height="240">'
    )
    html = sanitize(fragment)
    kept_markup = ("<h2>", "<blockquote>", "<ul>", "<li>", '<td colspan="2">', 'width="320"', 'title="ROC"')
    for kept in kept_markup:
        assert kept in html


def test_non_numeric_image_size_is_dropped() -> None:
    assert sanitize('<img src="a.png" width="100%" height="1e9">') == '<img src="a.png">'


# --- images ------------------------------------------------------------------


def test_relative_images_are_kept_without_resolver() -> None:
    html = markdown_to_html("![ROC](plots/roc.png)")
    assert '<img src="plots/roc.png" alt="ROC">' in html


def test_images_are_embedded_as_data_uris(roc_png: Path) -> None:
    asked: list[str] = []

    def resolve(src: str) -> str | None:
        asked.append(src)
        return data_uri(roc_png) if src in ("plots/roc.png", "roc plot.png") else None

    html = markdown_to_html(
        '![a](plots/roc.png) ![b](<roc plot.png>) ![c](missing.png)\n\n<img src="plots/roc.png" alt="d">',
        images=resolve,
    )
    assert html.count(f'src="{data_uri(roc_png)}"') == 3
    assert "missing.png" not in html and 'alt="c"' not in html
    assert asked == ["plots/roc.png", "roc plot.png", "missing.png", "plots/roc.png"]


def test_resolver_is_not_asked_about_remote_images() -> None:
    asked: list[str] = []
    html = markdown_to_html("![r](https://evil.example/x.png)", images=asked.append)
    assert asked == [] and "<img" not in html


def test_resolver_result_must_be_a_raster_data_uri() -> None:
    html = markdown_to_html("![a](a.png)", images=lambda src: "https://evil.example/a.png")
    assert "<img" not in html
    html = markdown_to_html("![a](a.png)", images=lambda src: "data:image/svg+xml;base64,PHN2Zz4=")
    assert "<img" not in html


def test_resolver_errors_propagate() -> None:
    def broken(src: str) -> str | None:
        raise FileNotFoundError(src)

    with pytest.raises(FileNotFoundError, match=r"roc\.png"):
        markdown_to_html("![a](roc.png)", images=broken)


def test_data_uri_guesses_the_mime_type(tmp_path: Path, roc_png: Path) -> None:
    assert data_uri(roc_png).startswith("data:image/png;base64,iVBORw0KGgo")
    photo = tmp_path / "photo.JPG"
    photo.write_bytes(b"\xff\xd8\xff")
    assert data_uri(photo) == "data:image/jpeg;base64,/9j/"
    explicit = data_uri(str(photo), "application/octet-stream")
    assert explicit.startswith("data:application/octet-stream;base64,")


def test_data_uri_rejects_unknown_suffix(tmp_path: Path) -> None:
    drawing = tmp_path / "drawing.svg"
    drawing.write_text("<svg/>")
    with pytest.raises(ValueError, match=r"drawing\.svg"):
        data_uri(drawing)


# --- pages -------------------------------------------------------------------


def test_html_page_escapes_title_and_carries_csp() -> None:
    page = html_page("<script>alert(1)</script> & co", "<p>body</p>")
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>" in page
    csp = CONTENT_SECURITY_POLICY
    assert f'<meta http-equiv="Content-Security-Policy" content="{csp}">' in page
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "script-src" not in csp
    assert "@media print" in page
    assert "<p>body</p>" in page


def test_html_page_csp_precedes_content() -> None:
    page = html_page("t", "<p>x</p>", extra_css=".x { color: red }")
    assert page.index("Content-Security-Policy") < page.index("<title>") < page.index("<style>")
    assert ".x { color: red }" in page


def test_html_page_rejects_css_that_closes_the_style_element() -> None:
    with pytest.raises(ValueError, match="</style"):
        html_page("t", "", extra_css="</STYLE><script>alert(1)</script>")


# --- real browser ------------------------------------------------------------


class _Watched:
    """A page with every dialog, request and console message recorded.

    ``attempted`` lists every request the page tried to make other than file: and
    data: (Chromium reports CSP-blocked ones too, as failed with ``"csp"``);
    ``sent`` lists those that got past the renderer, which the route aborts.
    """

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.attempted: list[str] = []
        self.sent: list[str] = []
        self.blocked_by_csp: list[str] = []
        self.console: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("request", self._on_request)
        self.page.on("requestfailed", self._on_request_failed)
        self.page.route("**/*", self._on_route)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _on_request(self, request: Any) -> None:
        if not request.url.startswith(("file:", "data:")):
            self.attempted.append(request.url)

    def _on_request_failed(self, request: Any) -> None:
        if request.failure == "csp":
            self.blocked_by_csp.append(request.url)

    def _on_route(self, route: Any) -> None:
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.sent.append(route.request.url)
            route.abort()

    def open(self, path: Path) -> Any:
        self.page.goto(path.as_uri(), wait_until="load")
        self.page.wait_for_timeout(300)  # let late handlers (onerror, autofocus) fire
        return self.page


@pytest.fixture
def watched(browser: Any) -> Iterator[_Watched]:
    """A fresh browser context for each test."""
    session = _Watched(browser)
    yield session
    session.context.close()


def test_hostile_markdown_page_runs_nothing_and_fetches_nothing(
    watched: _Watched, roc_png: Path, tmp_path: Path
) -> None:
    experiment = roc_png.parent.parent
    body = markdown_to_html(HOSTILE_MARKDOWN, images=lambda src: _embed(experiment, src))
    report = tmp_path / "report.html"
    report.write_text(html_page("Churn report", body), encoding="utf-8")

    page = watched.open(report)
    for link in page.locator("a:not([href^='http'])").all():
        link.click()  # links without a safe href must do nothing when clicked

    assert page.url == report.as_uri()  # no meta refresh or link navigated away
    assert watched.dialogs == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title() == "Churn report"
    assert watched.attempted == [] and watched.sent == []
    assert page.get_by_role("heading", name="Findings").is_visible()
    assert page.get_by_text("Random forest beats the baseline.").is_visible()
    roc = page.get_by_role("img", name="ROC curve")
    assert roc.is_visible()
    assert roc.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [3, 2]
    assert page.locator("img").count() == 1
    handlers = page.evaluate(
        "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
        ".filter(a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value)).length"
    )
    assert handlers == 0


def test_csp_blocks_scripts_and_fetches_even_if_body_is_unsanitised(watched: _Watched, tmp_path: Path) -> None:
    body = (
        "<h1>Unsanitised</h1>"
        "<script>window.__pwned = 1; alert(1)</script>"
        '<img src="x" onerror="window.__pwned = 2">'
        '<img src="https://evil.example/x.png">'
        '<link rel="stylesheet" href="https://evil.example/s.css">'
    )
    page_file = tmp_path / "unsafe.html"
    page_file.write_text(html_page("CSP", body), encoding="utf-8")

    page = watched.open(page_file)

    assert watched.dialogs == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.sent == []
    assert sorted(watched.attempted) == ["https://evil.example/s.css", "https://evil.example/x.png"]
    assert set(watched.attempted) <= set(watched.blocked_by_csp)
    assert any("Content Security Policy" in text for text in watched.console)
    assert page.get_by_role("heading", name="Unsanitised").is_visible()


def _embed(experiment: Path, src: str) -> str | None:
    """Resolve an image path inside the experiment folder to a data URI."""
    path = (experiment / src).resolve()
    if not path.is_relative_to(experiment.resolve()) or not path.is_file():
        return None
    return data_uri(path)
