"""Untrusted Markdown to safe HTML, and self-contained offline HTML pages.

Notes come from a teammate's shared folder, so every byte of them is treated as
hostile: Markdown is rendered with markdown-it-py and the result always goes
through :func:`sanitize` (nh3) with an explicit allow-list. Pages built by
:func:`html_page` carry a Content-Security-Policy that forbids scripts and any
fetch except ``data:`` images, so even a sanitiser bug cannot phone home.

This module imports neither the kernel nor Panel; both sides use it.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import urllib.parse
from collections.abc import Callable
from html import escape
from pathlib import Path

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from mlt_kernel.core import safeio

__all__ = ["CONTENT_SECURITY_POLICY", "data_uri", "html_page", "markdown_to_html", "sanitize"]

ImageResolver = Callable[[str], str | None]

#: The policy of every exported page: no scripts, no fetches, images only inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

_TEXT_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "strong",
        "b",
        "em",
        "i",
        "u",
        "del",
        "s",
        "ins",
        "mark",
        "small",
        "sub",
        "sup",
        "abbr",
        "kbd",
        "samp",
        "var",
        "q",
        "cite",
        "span",
        "div",
        "code",
        "pre",
    }
)
_TABLE_TAGS = frozenset({"table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td"})
_ALLOWED_TAGS = _TEXT_TAGS | _TABLE_TAGS | {"a", "img"}

# Tags removed together with their content: their text is never meant for the reader.
_CLEAN_CONTENT_TAGS = frozenset(
    {"script", "style", "svg", "math", "iframe", "object", "embed", "noscript", "template", "title"}
)

# `rel` is not listed: nh3 sets it on every <a> (link_rel below) and drops the author's.
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "code": {"class"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
_ALIGNMENTS = {"left", "center", "right"}
_ALIGN_VALUES = {"th": {"align": _ALIGNMENTS}, "td": {"align": _ALIGNMENTS}}

# nh3 checks schemes before our filter runs, so "data" must pass here; the filter
# then confines data: to images and to raster image types.
_URL_SCHEMES = frozenset({"http", "https", "mailto", "data"})
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_LINK_REL = "noopener noreferrer"

_IMAGE_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# SVG is left out on purpose: it is a document format with scripts and external references.
_SAFE_IMAGE_DATA_URI = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]*={0,2}", re.IGNORECASE)
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_SMALL_INTEGER = re.compile(r"[0-9]{1,6}")
_TEXT_ALIGN_STYLE = re.compile(r"text-align:\s*(left|center|right)")
# Serialised by html5ever: attributes are double-quoted and `"`, `<`, `>` escaped inside.
_IMG_TAG = re.compile(r"<img(?P<attrs>(?:\s+[a-z]+(?:=\"[^\"]*\")?)*)\s*/?>")

_PAGE_CSS = """
:root { color-scheme: light; }
body { margin: 2rem auto; max-width: 60rem; padding: 0 1.25rem;
  font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1f2328; background: #fff; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.6em 0 0.6em; }
h1 { font-size: 1.9rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.3em; }
h2 { font-size: 1.45rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.25em; }
a { color: #0969da; }
img { max-width: 100%; height: auto; }
code, kbd, pre, samp { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 0.9em; }
code { background: #f6f8fa; padding: 0.1em 0.3em; border-radius: 4px; }
pre { background: #f6f8fa; padding: 0.9rem 1rem; border-radius: 6px; overflow-x: auto;
  line-height: 1.45; }
pre code { background: none; padding: 0; }
blockquote { margin: 0; padding: 0 1em; color: #59636e; border-left: 0.25em solid #d0d7de; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 0.35em 0.75em; }
th { background: #f6f8fa; }
tr:nth-child(2n) td { background: #fafbfc; }
@media print {
  body { margin: 0; max-width: none; font-size: 11pt; color: #000; }
  a { color: inherit; }
  a[href^="http"]::after { content: " (" attr(href) ")"; font-size: 0.85em; }
  pre { white-space: pre-wrap; word-wrap: break-word; }
  pre, blockquote, table, img, figure { break-inside: avoid; }
  h1, h2, h3, h4 { break-after: avoid; }
  table { display: table; }
}
"""


def markdown_to_html(markdown: str, *, images: ImageResolver | None = None) -> str:
    """Render untrusted Markdown to sanitised HTML.

    Markdown is parsed with markdown-it-py (CommonMark preset, plus tables and
    strikethrough); raw HTML inside it is allowed through to :func:`sanitize`'s
    allow-list, never further.

    Args:
        markdown: the untrusted Markdown source.
        images: maps the (percent-decoded) ``src`` of each image, e.g. ``"roc.png"``
            or ``"plots/roc.png"``, to a ``data:`` URI, or to ``None`` to drop the
            image; exported pages use it to embed their plots. Exceptions it raises
            propagate. Without it, images keep only ``data:image/...`` URIs and
            relative paths.

    Returns:
        HTML safe to insert into a page; for a text larger than
        ``safeio.MAX_NOTE_BYTES`` (a note or block written by hand into a shared
        folder), one paragraph saying so instead.
    """
    if len(markdown) > safeio.MAX_NOTE_BYTES // 4:  # else its UTF-8 cannot exceed the limit
        size = len(markdown.encode("utf-8", "surrogatepass"))
        if size > safeio.MAX_NOTE_BYTES:
            limit = safeio.MAX_NOTE_BYTES
            return f"<p><em>This text is not shown: {size} bytes, more than the {limit} allowed.</em></p>"
    parser = _markdown_parser()
    tokens = parser.parse(markdown)
    _alignment_to_attribute(tokens)
    rendered = parser.renderer.render(tokens, parser.options, {})
    return _sanitize(rendered, images)


def sanitize(html: str) -> str:
    """Sanitise an HTML fragment with the allow-list described in the module docs.

    Kept: common text tags, tables, ``code``/``pre``, ``img`` (``src``, ``alt``,
    ``title``, ``width``, ``height``) and ``a`` (``href``, ``title``). Links may
    point to http, https, mailto or a relative path; images only to a PNG, JPEG,
    GIF or WebP ``data:`` URI or a relative path (no ``//host``). Every ``<a>``
    gets ``rel="noopener noreferrer"``. Styles, event handlers, scripts, iframes,
    forms and SVG are removed; images left without a ``src`` are dropped.
    """
    return _sanitize(html, None)


def data_uri(
    path: str | os.PathLike[str], mime: str | None = None, *, beneath: str | os.PathLike[str] | None = None
) -> str:
    """Return the file at ``path`` as a base64 ``data:`` URI.

    The file is read as any file of a shared folder is (``mlt_kernel.core.safeio``):
    never through a link, a regular file only, at most ``safeio.MAX_PLOT_BYTES``.

    Args:
        path: the file to embed; relative to *beneath* when that is given.
        mime: its media type; guessed from the suffix (png, jpg/jpeg, gif, webp)
            when omitted.
        beneath: the folder *path* lies in; no component below it may be a link.

    Raises:
        ValueError: ``mime`` is omitted and the suffix is not a known image type.
        UnsafeFileError: a link, not a regular file, or a path leaving *beneath*.
        FileTooLargeError: larger than ``safeio.MAX_PLOT_BYTES``.
    """
    file = Path(path)
    if mime is None:
        mime = _IMAGE_MIME_BY_SUFFIX.get(file.suffix.lower())
        if mime is None:
            known = ", ".join(sorted(_IMAGE_MIME_BY_SUFFIX))
            raise ValueError(f"cannot guess the image type of {str(file)!r}: expected one of {known}")
    data = safeio.read_bytes(file, safeio.MAX_PLOT_BYTES, beneath=beneath, what="image")
    payload = base64.b64encode(data).decode("ascii")
    return f"data:{mime};base64,{payload}"


def html_page(title: str, body_html: str, *, extra_css: str = "") -> str:
    """Build a complete, self-contained, offline HTML5 document.

    The page carries :data:`CONTENT_SECURITY_POLICY`, so nothing in it can run a
    script or fetch from any host; images must be ``data:`` URIs.

    Args:
        title: plain text, escaped here.
        body_html: trusted HTML (already sanitised, e.g. by :func:`markdown_to_html`).
        extra_css: trusted CSS appended to the page's own style sheet.

    Raises:
        ValueError: ``extra_css`` would close the ``<style>`` element.
    """
    if "</style" in extra_css.lower():
        raise ValueError("extra_css must not contain '</style'")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{_PAGE_CSS}{extra_css}</style>\n"
        f"</head>\n<body>\n{body_html}\n</body>\n</html>\n"
    )


@functools.lru_cache(maxsize=1)
def _markdown_parser() -> MarkdownIt:
    """The shared parser: CommonMark with GFM tables and strikethrough."""
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _alignment_to_attribute(tokens: list[Token]) -> None:
    """Turn the table plugin's ``style="text-align:x"`` into ``align="x"``.

    Style attributes are never allowed through the sanitiser; ``align`` is, with
    a fixed set of values, so column alignment survives.
    """
    for token in tokens:
        if token.type not in ("th_open", "td_open"):
            continue
        style = str(token.attrs.pop("style", ""))
        match = _TEXT_ALIGN_STYLE.fullmatch(style)
        if match:
            token.attrs["align"] = match.group(1)


def _sanitize(fragment: str, images: ImageResolver | None) -> str:
    """Run nh3 with the allow-list, resolving image sources through ``images``."""
    policy = _AttributePolicy(images)
    cleaned = nh3.clean(
        fragment,
        tags=_ALLOWED_TAGS,
        clean_content_tags=_CLEAN_CONTENT_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        tag_attribute_values=_ALIGN_VALUES,
        attribute_filter=policy,
        url_schemes=_URL_SCHEMES,
        link_rel=_LINK_REL,
        strip_comments=True,
    )
    policy.raise_pending()
    return _IMG_TAG.sub(_drop_image_without_src, cleaned)


class _AttributePolicy:
    """nh3 attribute filter: per-attribute URL rules and image resolution.

    nh3 reports exceptions from a filter through ``sys.unraisablehook`` and carries
    on, so an error from the caller's ``images`` is kept and re-raised afterwards.
    """

    def __init__(self, images: ImageResolver | None) -> None:
        self._images = images
        self._error: Exception | None = None

    def __call__(self, tag: str, attribute: str, value: str) -> str | None:
        """Return the value to keep, or ``None`` to drop the attribute."""
        if tag == "a" and attribute == "href":
            return _link_href(value)
        if tag == "img" and attribute == "src":
            return self._image_src(value)
        if attribute in ("width", "height", "start", "colspan", "rowspan"):
            return value if _SMALL_INTEGER.fullmatch(value.strip()) else None
        if tag == "code" and attribute == "class":
            return _language_class(value)
        return value

    def raise_pending(self) -> None:
        """Re-raise the first exception raised by ``images``, if any."""
        if self._error is not None:
            raise self._error

    def _image_src(self, value: str) -> str | None:
        url = _normalise_url(value)
        if _SAFE_IMAGE_DATA_URI.fullmatch(url):
            return url
        if not _is_relative(url):
            return None  # a remote image would be fetched without the reader's consent
        if self._images is None:
            return url
        if self._error is not None:
            return None
        try:
            resolved = self._images(urllib.parse.unquote(url))
        except Exception as error:  # noqa: BLE001 - re-raised by raise_pending once nh3 returns
            self._error = error
            return None
        return resolved if resolved and _SAFE_IMAGE_DATA_URI.fullmatch(resolved) else None


def _link_href(value: str) -> str | None:
    """Keep http, https and mailto links and relative ones; drop anything else."""
    url = _normalise_url(value)
    scheme = _scheme(url)
    if scheme is None:
        return url if _is_relative(url) else None
    return url if scheme in _LINK_SCHEMES else None


def _normalise_url(value: str) -> str:
    """Read a URL the way a browser does (WHATWG): strip C0/space, drop tabs and newlines."""
    return _TAB_OR_NEWLINE.sub("", value.strip(_C0_AND_SPACE))


def _scheme(url: str) -> str | None:
    """The lower-cased scheme of ``url``, or ``None`` for a relative URL."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _is_relative(url: str) -> bool:
    """True for a path-relative URL: no scheme and no ``//host`` (or ``\\\\host``)."""
    if _scheme(url) is not None:
        return False
    return not (len(url) >= 2 and url[0] in "/\\" and url[1] in "/\\")


def _language_class(value: str) -> str | None:
    """Keep only the ``language-*`` class markdown-it puts on fenced code."""
    for name in value.split():
        if _LANGUAGE_CLASS.fullmatch(name):
            return name
    return None


def _drop_image_without_src(match: re.Match[str]) -> str:
    """Remove an ``<img>`` whose ``src`` the sanitiser dropped."""
    return match.group(0) if ' src="' in match.group("attrs") else ""
