"""A run replayed: the cells that produced it, in the order they ran, as a notebook.

``Experiment.replay(run)`` builds it from ``Experiment.lineage(run)``: one code
cell per executed cell, in execution order, from the session's start through the
run's last cell. ``EXP_PATH`` assignments point at the folder asked for (so the
replay records into a folder of its own); a cell that raised, was interrupted
or was running when the kernel died is kept, commented out, under a one-line
reason; where execution counts jump (cells not recorded), a Markdown cell says
so. A header cell says where the original ran. Executing it through the MLTrack
kernel reproduces the run: with deterministic code, the same metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

_EXP_PATH = re.compile(r"^(\s*)EXP_PATH\s*=.*$", re.M)
_REASONS = {
    "error": "raised {error}",
    "interrupted": "was interrupted ({error})",
    "killed": "was running when the kernel died",
}


def notebook(lineage: pd.DataFrame, run: Mapping[str, Any], session: Mapping[str, Any], exp_path: str | None) -> Any:
    """The replay of *run* as an ``nbformat`` notebook (version 4)."""
    import nbformat.v4 as v4

    cells = [v4.new_markdown_cell(_header(run, session, exp_path))]
    if exp_path is not None and not any(_EXP_PATH.search(str(code or "")) for code in lineage["code"]):
        cells.append(v4.new_code_cell(f"EXP_PATH = {exp_path!r}"))
    previous: int | None = None
    for row in lineage.itertuples(index=False):
        count = None if pd.isna(row.execution_count) else int(row.execution_count)
        if previous is not None and count is not None and count > previous + 1:
            skipped = f"[{previous + 1}]" if count == previous + 2 else f"[{previous + 1}]–[{count - 1}]"
            cells.append(
                v4.new_markdown_cell(
                    f"*Cells {skipped} ran here but were not recorded (`# mlt: skip`, or run silently): "
                    "they are not in this replay.*"
                )
            )
        previous = count if count is not None else previous
        cells.append(v4.new_code_cell(_source(row, exp_path)))
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "mltrack", "display_name": "Python (MLTrack)", "language": "python"}
    return nb


def _code(value: Any, limit: int = 200) -> str:
    """*value* as a Markdown code span: text from a folder never becomes a link, an image or HTML."""
    line = " ".join(str(value).split()).replace("`", "'")
    return f"`{line[:limit]}`"


def _header(run: Mapping[str, Any], session: Mapping[str, Any], exp_path: str | None) -> str:
    where = _code(session["notebook"]) if session.get("notebook") else "a notebook MLTrack was not told the name of"
    host = _code(session["hostname"]) if session.get("hostname") else "an unknown host"
    lines = [
        f"# Replay of run {_code(run['name'])}",
        "",
        f"Run {_code(run['run_id'])} of session {_code(session.get('session_id') or run.get('session_id'))}, "
        f"recorded from {where} on {host}, started {run.get('started_at')}.",
        "",
        "The code cells below are the cells that ran in that session, in the order they ran, "
        "through the run's last cell.",
    ]
    if session.get("git_commit"):
        branch = f" on branch {_code(session['git_branch'])}" if session.get("git_branch") else ""
        dirty = " with uncommitted changes to tracked files" if session.get("git_dirty") else ""
        remote = f" of {_code(session['git_remote'])}" if session.get("git_remote") else ""
        lines += ["", f"The notebook's folder was at git commit {_code(session['git_commit'])}{branch}{remote}{dirty}."]
    packages = run.get("packages")
    if isinstance(packages, Mapping):
        differ = different_packages(packages)
        if differ:
            lines += ["", "Packages that differ from this environment (then → now):", ""]
            lines += [
                f"- {_code(dist)} {_code(then)} → {_code(now) if now else 'not installed'}"
                for dist, then, now in differ
            ]
        else:
            lines += ["", f"The {len(packages)} packages it imported have the same versions here."]
    if exp_path is not None:
        lines += ["", f"It records into {_code(exp_path, 1000)}."]
    return "\n".join(str(line) for line in lines)


def different_packages(packages: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """``(distribution, version then, version installed now or None)`` where they differ."""
    import importlib.metadata as md

    out = []
    for dist, then in sorted(packages.items()):
        try:
            now: str | None = md.version(str(dist))
        except (md.PackageNotFoundError, ValueError):
            now = None
        if now != then:
            out.append((str(dist), str(then), now))
    return out


def _source(row: Any, exp_path: str | None) -> str:
    code = "" if row.code is None or (isinstance(row.code, float) and pd.isna(row.code)) else str(row.code)
    if exp_path is not None:
        code = _EXP_PATH.sub(lambda m: f"{m.group(1)}EXP_PATH = {exp_path!r}", code)
    reason = _REASONS.get(str(row.status))
    if reason is None:
        return code
    error = row.error_name if isinstance(row.error_name, str) and row.error_name else "an error"
    why = reason.format(error=error)
    commented = "\n".join(f"# {line}" if line else "#" for line in code.splitlines())
    return f"# MLTrack replay: this cell {why} when it ran; kept, commented out.\n{commented}"


def write(nb: Any, path: str | Path) -> Path:
    """Write *nb* to *path*: a notebook (``.ipynb``) or a percent-format script (``.py``)."""
    import nbformat

    target = Path(path)
    if target.suffix == ".ipynb":
        nbformat.write(nb, str(target))
    elif target.suffix == ".py":
        parts = []
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                body = "\n".join(f"# {line}" if line else "#" for line in cell.source.splitlines())
                parts.append(f"# %% [markdown]\n{body}\n")
            else:
                parts.append(f"# %%\n{cell.source}\n")
        target.write_text("\n".join(parts), encoding="utf-8")
    else:
        raise ValueError(f"{target.name}: write a replay to a .ipynb or a .py file")
    return target


__all__ = ["different_packages", "notebook", "write"]
