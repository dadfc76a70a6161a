"""What to do with a cell, decided from its ``# mlt:`` directives before it runs.

A note cell runs as a call that shows and stores its Markdown; a cell with a
bad directive runs as the one-line error. Pure functions of the cell's code and
the open run: IPython's transformer and ``pre_run_cell`` both ask.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlt_kernel.core.errors import DirectiveError, MLTrackError, RunError
from mlt_kernel.recording.directives import Directive, ParsedCell, parse_cell
from mlt_kernel.recording.runs import Run

#: No directive without it: cells without it are not parsed at all.
MARK = "mlt"


@dataclass
class Plan:
    """What to do with a cell."""

    kind: str  #: ``record``, ``skip``, ``note`` or ``error``
    parsed: ParsedCell | None = None
    error: MLTrackError | None = None
    record: Directive | None = None


RECORD = Plan("record")


def make_plan(code: str, run: Run | None) -> Plan:
    """The plan for *code* while *run* is open."""
    if MARK not in code:
        return RECORD
    try:
        parsed = parse_cell(code)
    except DirectiveError as exc:
        return Plan("error", error=exc)
    if parsed.first("skip"):
        return Plan("skip", parsed)
    if parsed.first("note"):
        return Plan("note", parsed)
    rec = parsed.first("record")
    if rec is not None:
        error = _check_record(rec, run)
        if error is not None:
            return Plan("error", parsed, error=error)
    return Plan("record", parsed, record=rec)


def _check_record(rec: Directive, run: Run | None) -> MLTrackError | None:
    if rec.action == "stop":
        if run is None or not run.span:
            return RunError("'record stop': no run is open")
        return None
    if run is not None:
        return RunError(
            f"run {run.name!r} is still open; end it with '# mlt: record stop' "
            f"(or mlt.stop()) before starting {rec.name!r}"
        )
    return None


def rewrite(lines: list[str], plan: Plan) -> list[str]:
    """The cell's lines as IPython should run them under *plan*."""
    if plan.kind == "error" and plan.error is not None:
        # Every error a plan holds is public: mlt_kernel.DirectiveError, mlt_kernel.RunError.
        cls = type(plan.error).__name__
        return [f"raise __import__('mlt_kernel').{cls}({str(plan.error)!r})\n"]
    if plan.kind == "note" and plan.parsed is not None:
        note = plan.parsed.first("note")
        opts = note.options if note is not None else {}
        return [
            f"__import__('mlt_kernel')._note_cell({plan.parsed.body!r}, "
            f"plot={opts.get('plot')!r}, doc={opts.get('doc')!r})\n"
        ]
    return lines


__all__ = ["MARK", "Plan", "make_plan", "rewrite"]
