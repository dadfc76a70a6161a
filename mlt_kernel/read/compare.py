"""What differs between runs: params, final metrics, provenance, and their code.

``Experiment.diff(a, b)`` and the dashboard's compare page both start from
:func:`collect` (the facts of each run, read through a :class:`Query`) and
:class:`RunDiff` (the side-by-side tables and unified diffs of the code). The
first run is the baseline: each other run's code is diffed against it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlt_kernel.read.query import RUN_CELLS, RUN_LAST_CELL, Query, json_value

#: Session columns shown as provenance, in this order.
SESSION_PROVENANCE = (
    "hostname",
    "user",
    "python",
    "platform",
    "cpu_model",
    "cpu_cores",
    "ram_bytes",
    "gpus",
    "notebook",
    "git_commit",
    "git_branch",
    "git_dirty",
    "git_remote",
    "mlt_version",
)


@dataclass
class RunFacts:
    """One run as the comparison sees it."""

    run_id: str
    name: str
    status: str | None
    params: dict[str, Any]
    metrics: dict[str, float]  #: final values; ``name`` for the ``test`` split, ``name [split]`` for others
    provenance: dict[str, Any]  #: session columns, ``package <dist>`` and ``env <VAR>``
    code: str  #: the run's own cells, in the order they ran
    lineage: str  #: the session's cells through the run's last one
    label: str = ""


def _cells_text(rows: Sequence[tuple[Any, ...]]) -> str:
    """Cells as one text in the percent format (``# %%`` before each), without execution
    counts: they differ between any two runs and would hide what changed."""
    parts = [f"# %%\n{code or ''}".rstrip("\n") for (code,) in rows]
    return "\n\n".join(parts) + ("\n" if parts else "")


def collect(q: Query, run_ids: Sequence[str]) -> list[RunFacts]:
    """The facts of each run of *run_ids* (ids, in that order); unknown ids are left out."""
    out: list[RunFacts] = []
    columns = ", ".join(f"s.{c}" for c in SESSION_PROVENANCE)
    for run_id in run_ids:
        rows = q.rows(
            "SELECT r.run_id, r.name, r.status, r.params, r.packages, r.env, r.session_id, "
            f"r.first_cell_seq, r.last_cell_seq, {columns} "
            "FROM _latest_runs r LEFT JOIN sessions s USING (session_id) WHERE r.run_id = ?",
            [run_id],
        )
        if not rows:
            continue
        row = rows[0]
        params, packages, env = (json_value(v) for v in row[3:6])
        session_id, first, last = row[6:9]
        provenance: dict[str, Any] = dict(zip(SESSION_PROVENANCE, row[9:], strict=True))
        if isinstance(provenance.get("gpus"), str):
            gpus = json_value(provenance["gpus"])
            names = [str(g.get("name")) for g in gpus if isinstance(g, Mapping)] if isinstance(gpus, list) else []
            provenance["gpus"] = ", ".join(names) if names else None
        for dist, version in sorted((packages or {}).items() if isinstance(packages, Mapping) else []):
            provenance[f"package {dist}"] = version
        for var, value in sorted((env or {}).items() if isinstance(env, Mapping) else []):
            provenance[f"env {var}"] = value
        metrics: dict[str, float] = {}
        for name, split, value in q.rows(
            "SELECT name, split, value FROM metrics WHERE run_id = ? AND step IS NULL "
            "QUALIFY row_number() OVER (PARTITION BY name, split ORDER BY recorded_at DESC) = 1 "
            "ORDER BY coalesce(split, 'test') != 'test', split, name",
            [run_id],
        ):
            key = str(name) if split in (None, "test") else f"{name} [{split}]"
            metrics[key] = value
        own = q.rows(f"SELECT code FROM cells WHERE {RUN_CELLS} ORDER BY cell_seq", [session_id, run_id, first, last])
        lineage = q.rows(
            f"SELECT code FROM cells WHERE session_id = ? AND cell_seq <= {RUN_LAST_CELL} ORDER BY cell_seq",
            [session_id, last, run_id],
        )
        out.append(
            RunFacts(
                run_id=str(row[0]),
                name=str(row[1]),
                status=row[2],
                params=dict(params) if isinstance(params, Mapping) else {},
                metrics=metrics,
                provenance=provenance,
                code=_cells_text(own),
                lineage=_cells_text(lineage),
            )
        )
    _label(out)
    return out


def _label(facts: list[RunFacts]) -> None:
    """Each run's column name, unique: its name, with the end of its id where names repeat,
    and ``#n`` where that still repeats (or would be the ``differs`` column)."""
    names = [f.name for f in facts]
    taken = {"differs"}
    for f in facts:
        label = f.name if names.count(f.name) == 1 else f"{f.name} ({f.run_id[-8:]})"
        n = 2
        base = label
        while label in taken:
            label, n = f"{base} #{n}", n + 1
        taken.add(label)
        f.label = label


def _same(values: Sequence[Any]) -> bool:
    def norm(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v

    first = norm(values[0])
    return all(norm(v) == first and type(norm(v)) is type(first) for v in values[1:])


def side_by_side(
    rows: Sequence[Mapping[str, Any]], labels: Sequence[str], index_name: str, *, only_differences: bool = False
) -> pd.DataFrame:
    """One row per key of any of *rows*, one column per run, and ``differs``."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    data = {label: [row.get(k) for k in keys] for label, row in zip(labels, rows, strict=True)}
    table = pd.DataFrame(data, index=pd.Index(list(keys), name=index_name), dtype=object)
    table["differs"] = [not _same([row.get(k) for row in rows]) for k in keys]
    if only_differences:
        table = table[table["differs"]]
    return table


def unified(a: str, b: str, a_name: str, b_name: str) -> str:
    """A unified diff of two texts (empty when they are the same)."""
    return "".join(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True), a_name, b_name, n=3))


@dataclass
class RunDiff:
    """What differs between runs: tables with a column per run, and unified diffs of their code.

    ``params``, ``metrics`` and ``provenance`` have one row per item and a
    ``differs`` column; with ``only_differences`` (the default of
    ``Experiment.diff``) only the rows that differ. ``code`` and ``lineage``
    hold, for each run after the first, the unified diff against the first.
    """

    runs: list[RunFacts]
    params: pd.DataFrame
    metrics: pd.DataFrame
    provenance: pd.DataFrame
    code: dict[str, str] = field(default_factory=dict)  #: label -> diff of the run's own cells against the first's
    lineage: dict[str, str] = field(default_factory=dict)  #: label -> diff of the lineage against the first's

    @classmethod
    def build(cls, facts: list[RunFacts], *, only_differences: bool = True) -> RunDiff:
        labels = [f.label for f in facts]

        def table(attr: str, index_name: str) -> pd.DataFrame:
            return side_by_side(
                [getattr(f, attr) for f in facts], labels, index_name, only_differences=only_differences
            )

        if not facts:
            empty = pd.DataFrame({"differs": pd.Series(dtype=bool)})
            return cls(runs=[], params=empty, metrics=empty.copy(), provenance=empty.copy())
        base = facts[0]
        return cls(
            runs=facts,
            params=table("params", "param"),
            metrics=table("metrics", "metric"),
            provenance=table("provenance", "item"),
            code={f.label: unified(base.code, f.code, base.label, f.label) for f in facts[1:]},
            lineage={f.label: unified(base.lineage, f.lineage, base.label, f.label) for f in facts[1:]},
        )

    @property
    def labels(self) -> list[str]:
        return [f.label for f in self.runs]

    def __str__(self) -> str:
        labels = self.labels
        lines = [f"Runs: {', '.join(f'{f.label} [{f.run_id}]' for f in self.runs)}"]
        for title, tbl in (("Params", self.params), ("Metrics", self.metrics), ("Provenance", self.provenance)):
            differ = tbl[tbl["differs"]] if "differs" in tbl else tbl
            if differ.empty:
                lines.append(f"{title}: the same")
                continue
            lines.append(f"{title}:")
            for key, row in differ.iterrows():
                values = "  →  ".join(f"{label}: {_show(row[label])}" for label in labels)
                lines.append(f"  {key}: {values}")
        for title, diffs in (("Code of the run", self.code), ("Lineage", self.lineage)):
            for label, text in diffs.items():
                if not text:
                    lines.append(f"{title} ({label}): the same")
                else:
                    lines.append(f"{title} ({labels[0]} → {label}):")
                    lines.append(text.rstrip("\n"))
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return repr(value) if isinstance(value, str) else str(value)


__all__ = ["RunDiff", "RunFacts", "collect", "side_by_side", "unified"]
