"""Cell directives: ``# mlt: …`` comment lines at the top of a code cell.

```python
# mlt: record name=random_forest n_estimators=300 max_depth=8   # a run, with params
# mlt: record start name=mlp lr=0.001                          # a run spanning cells starts…
# mlt: record stop                                             # …and ends
# mlt: note plot=roc_rf.png doc="Findings"                     # the rest is Markdown
# mlt: skip                                                    # not recorded
# mlt: guard off                                               # no memory guard for this cell
```

A Markdown cell becomes a note with the same directive in an HTML comment on its
first line, ``<!-- mlt: note plot=roc_rf.png doc="Findings" -->`` (see
:func:`parse_markdown_note`).

Values follow shell-like quoting; unquoted numbers and booleans are typed,
quoted values stay strings. A malformed directive raises ``DirectiveError``
with a one-line message; the cell then does not run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from mlt_kernel.core.errors import DirectiveError

PREFIX = re.compile(r"^\s*#\s*mlt\s*:(.*)$")
#: A Markdown cell's tag: the whole first non-blank line (up to its last ``-->``).
MARKDOWN_PREFIX = re.compile(r"^\s*<!--\s*mlt\s*:(.*)-->\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)

VERBS = ("record", "note", "skip", "guard")
NOTE_OPTIONS = ("plot", "doc")


@dataclass(frozen=True)
class Directive:
    """One parsed directive line."""

    verb: str  #: ``record``, ``note``, ``skip`` or ``guard``
    action: str = ""  #: for ``record``: ``cell``, ``start`` or ``stop``; for ``guard``: ``off``
    name: str | None = None  #: the run's name (``record``)
    params: dict[str, Any] = field(default_factory=dict)  #: run params (``record``)
    options: dict[str, str] = field(default_factory=dict)  #: ``plot``/``doc`` (``note``)
    line: int = 1  #: 1-based line number in the cell


@dataclass(frozen=True)
class ParsedCell:
    directives: tuple[Directive, ...]
    body: str  #: the cell without its directive lines

    def first(self, verb: str) -> Directive | None:
        return next((d for d in self.directives if d.verb == verb), None)


def typed(value: str) -> Any:
    """``"300"`` → 300, ``"0.1"`` → 0.1, ``"true"`` → True; anything else stays a string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


_TOKEN = re.compile(r"""\s*(?:(?P<comment>\#.*)|(?P<tok>(?:[^\s"'#]|"(?:[^"\\]|\\.)*"|'[^']*')+)|(?P<bad>["'].*))""")


def _tokens(text: str, line: int) -> list[str]:
    """Whitespace-separated words; quotes group, ``#`` outside quotes starts a comment."""
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.group("bad") is not None:
            raise DirectiveError(f"line {line}: unclosed quote in '# mlt:{text}'")
        if m.group("tok") is None:
            break  # a comment, or trailing blanks
        out.append(m.group("tok"))
        pos = m.end()
    return out


def _key_values(tokens: list[str], line: int) -> dict[str, tuple[Any, str]]:
    """``key=value`` tokens as ``{key: (typed value, text without quotes)}``."""
    out: dict[str, tuple[Any, str]] = {}
    for tok in tokens:
        key, eq, raw = tok.partition("=")
        if not eq or not key:
            raise DirectiveError(f"line {line}: expected key=value, got {tok!r}")
        if not _NAME.match(key):
            raise DirectiveError(f"line {line}: {key!r} is not a valid name")
        if key in out:
            raise DirectiveError(f"line {line}: {key!r} given twice")
        try:
            text = "".join(shlex.split(raw)) if raw else ""
        except ValueError as exc:  # a trailing backslash
            raise DirectiveError(f"line {line}: {exc} in {tok!r}") from None
        quoted = any(q in raw for q in "\"'")
        out[key] = (text if quoted else typed(text), text)
    return out


def _parse_record(tokens: list[str], line: int) -> Directive:
    action = "cell"
    if tokens and tokens[0] in ("start", "stop"):
        action = tokens.pop(0)
    if action == "stop":
        if tokens:
            raise DirectiveError(f"line {line}: 'record stop' takes no arguments, got {' '.join(tokens)!r}")
        return Directive("record", "stop", line=line)
    kv = _key_values(tokens, line)
    if "name" not in kv:
        raise DirectiveError(f"line {line}: 'record' needs name=NAME (e.g. # mlt: record name=random_forest)")
    name = kv.pop("name")[1]  # the text as written: a run named 1e3 stays "1e3"
    if not name.strip():
        raise DirectiveError(f"line {line}: the run name is empty")
    params = {k: v for k, (v, _) in kv.items()}
    return Directive("record", action, name=name, params=params, line=line)


def _parse_note(tokens: list[str], line: int) -> Directive:
    kv = _key_values(tokens, line)
    unknown = sorted(set(kv) - set(NOTE_OPTIONS))
    if unknown:
        raise DirectiveError(f"line {line}: 'note' takes plot= and doc=, not {', '.join(unknown)}")
    options = {k: text for k, (_, text) in kv.items()}
    for k, v in options.items():
        if not v.strip():
            raise DirectiveError(f"line {line}: {k}= is empty")
    return Directive("note", options=options, line=line)


def parse_line(text: str, line: int = 1) -> Directive:
    """Parse the part of a directive line after ``# mlt:``."""
    tokens = _tokens(text, line)
    if not tokens:
        raise DirectiveError(f"line {line}: empty directive; expected one of {', '.join(VERBS)}")
    verb = tokens.pop(0)
    if verb == "record":
        return _parse_record(tokens, line)
    if verb == "note":
        return _parse_note(tokens, line)
    if verb == "skip":
        if tokens:
            raise DirectiveError(f"line {line}: 'skip' takes no arguments, got {' '.join(tokens)!r}")
        return Directive("skip", line=line)
    if verb == "guard":
        if tokens != ["off"]:
            raise DirectiveError(f"line {line}: 'guard' takes one word, off; got {' '.join(tokens)!r}")
        return Directive("guard", action="off", line=line)
    raise DirectiveError(f"line {line}: unknown directive {verb!r}; expected one of {', '.join(VERBS)}")


def parse_cell(code: str) -> ParsedCell:
    """Directives at the top of *code* (after blank lines) and the rest of the cell."""
    lines = code.splitlines(keepends=True)
    directives: list[Directive] = []
    i = 0
    while i < len(lines):
        text = lines[i]
        match = PREFIX.match(text)
        if match:
            directives.append(parse_line(match.group(1), i + 1))
        elif text.strip() and directives:
            break
        elif text.strip():
            return ParsedCell((), code)
        i += 1
    _check_combination(directives)
    return ParsedCell(tuple(directives), "".join(lines[i:]))


def parse_markdown_note(source: str) -> tuple[Directive, str] | None:
    """The note directive and the Markdown after it, when *source* (a Markdown cell) is tagged.

    ``None`` when the first non-blank line is not ``<!-- mlt: … -->``. The text
    inside the comment is parsed as a ``# mlt:`` line is; a verb other than
    ``note`` (nothing in a Markdown cell runs) raises ``DirectiveError``.
    """
    head, newline, rest = source.lstrip("\r\n\t ").partition("\n")
    match = MARKDOWN_PREFIX.match(head)
    if match is None:
        return None
    directive = parse_line(match.group(1))
    if directive.verb != "note":
        raise DirectiveError(f"line 1: a Markdown cell can only be a note, not {directive.verb!r}")
    return directive, rest if newline else ""


def _check_combination(directives: list[Directive]) -> None:
    verbs = [d.verb for d in directives]
    for verb in set(verbs):
        if verbs.count(verb) > 1:
            raise DirectiveError(f"line {directives[-1].line}: '{verb}' given twice")
    if "note" in verbs and "record" in verbs:
        raise DirectiveError("a note cell cannot also be a run; put the note in its own cell")
    if "note" in verbs and "guard" in verbs:
        raise DirectiveError("a note cell runs no code to guard; put 'guard off' on a code cell")
