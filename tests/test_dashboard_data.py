"""A realistic experiment folder for the dashboard tests, written with the real writer.

Two kernel sessions comparing five binary classifiers: the first ended cleanly
(logistic regression, random forest, gradient boosting, an MLP with training
curves and a GPU), the second was killed by the OOM killer in the middle of a
deep random forest. Metrics, confusion matrices and curves come from
``mlt_kernel.tracking.metrics.evaluate`` (scikit-learn), records go through
``JournalWriter`` into journals, and the finished sessions are compacted to
Parquet as a kernel would. One note is hostile (``<script>``, ``onerror=``,
``javascript:``).

Imported by the dashboard tests and the benchmark; it holds no tests itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlt_kernel.core import layout
from mlt_kernel.store import parquet as store
from mlt_kernel.store.journal import JournalWriter, journal_name
from mlt_kernel.tracking.documents import create_document
from mlt_kernel.tracking.metrics import evaluate

GiB = 1024**3
MiB = 1024**2

HOSTILE_NOTE = (
    "# Careful\n\n<script>window.__pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.__pwned = \'onerror\'">\n\n'
    "[open me](javascript:window.__pwned='link') and "
    "<a href=\"javascript:window.__pwned='href'\">me too</a>\n\n"
    "Plain text survives: **bold hostile note**."
)
GOOD_NOTE = (
    "## Random forest ROC\n\nThe forest separates the classes well: **ROC AUC above 0.9** "
    "at 300 trees.\n\n| model | trees |\n| --- | --- |\n| random_forest | 300 |"
)
FINDINGS = (
    "# Churn model: findings\n\nFive models on the same split. **The random forest wins** on F1 (0.979) "
    "for 25 s of training; gradient boosting is close but slower. The deep forest ran out of memory."
)


@dataclass
class Model:
    name: str
    params: dict[str, Any]
    skill: float  #: separation of the scores (higher: a better model)
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    peak_gpu_bytes: int | None = None
    epochs: int = 0
    cells: int = 1
    status: str = "finished"


MODELS = [
    Model("logistic_regression", {"C": 1.0, "penalty": "l2", "max_iter": 200}, 1.1, 3.8, 4.1, int(1.1 * GiB)),
    Model("random_forest", {"n_estimators": 300, "max_depth": 8, "C": None}, 2.2, 24.6, 88.0, int(2.3 * GiB)),
    Model(
        "gradient_boosting",
        {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.1},
        2.0,
        41.2,
        40.7,
        int(1.4 * GiB),
    ),
    Model(
        "mlp",
        {"lr": 0.001, "hidden": 128, "epochs": 20},
        1.8,
        63.0,
        71.5,
        int(1.9 * GiB),
        int(1.6 * GiB),
        epochs=20,
        cells=2,
    ),
]
KILLED = Model(
    "random_forest_deep", {"n_estimators": 1000, "max_depth": None}, 2.3, 55.0, 190.0, int(7.6 * GiB), status="killed"
)


@dataclass
class Clock:
    """Microseconds since the epoch, advanced by the story."""

    now_us: int

    def advance(self, seconds: float) -> int:
        self.now_us += int(seconds * 1e6)
        return self.now_us


@dataclass
class Session:
    exp: Path
    session_id: str
    clock: Clock
    kernel: JournalWriter = field(init=False)
    watcher: JournalWriter = field(init=False)
    cell_seq: int = 0
    rss: int = int(0.35 * GiB)

    def __post_init__(self) -> None:
        self.kernel = JournalWriter(self.exp / layout.JOURNALS / journal_name(self.session_id, "kernel"))
        self.watcher = JournalWriter(self.exp / layout.JOURNALS / journal_name(self.session_id, "watcher"))

    def write(self, table: str, record: dict[str, Any]) -> None:
        self.kernel.write(table, record)

    def sample(
        self, t_us: int, rss: int, cpu: float, gpu: int | None, cell_seq: int | None, run_id: str | None
    ) -> None:
        self.watcher.write(
            "samples",
            {
                "session_id": self.session_id,
                "t": t_us,
                "rss_bytes": rss,
                "children_rss_bytes": int(rss * 0.08),
                "cpu_percent": cpu,
                "gpu_bytes": gpu,
                "gpu_util": 80.0 if gpu else None,
                "cell_seq": cell_seq,
                "run_id": run_id,
            },
        )

    def cell(
        self,
        code: str,
        wall_s: float,
        *,
        cpu_s: float | None = None,
        peak: int | None = None,
        after: int | None = None,
        gpu: int | None = None,
        run: tuple[str, str] | None = None,
        status: str = "ok",
        error_name: str | None = None,
        samples_every: float = 0.5,
    ) -> dict[str, Any]:
        """Record one cell and the watcher's samples during it (RSS rises to *peak*, ends at *after*)."""
        self.cell_seq += 1
        start = self.clock.advance(2.0)
        before = self.rss
        peak = peak or before + 50 * MiB
        after = after if after is not None else before + (peak - before) // 4
        n = max(int(wall_s / samples_every), 2)
        for i in range(n + 1):
            frac = i / n
            rss = int(before + (peak - before) * math.sin(math.pi * min(frac * 1.15, 1.0) / 2) ** 2)
            if frac > 0.9 and status != "running":  # memory freed as the cell ends (not when it died)
                rss = int(after + (rss - after) * (1 - frac) * 10)
            cpu = 100 * (cpu_s or wall_s) / wall_s * (0.9 + 0.2 * math.sin(i / 3))
            self.sample(
                start + int(frac * wall_s * 1e6),
                rss,
                cpu,
                int(gpu * min(frac * 3, 1)) if gpu else None,
                self.cell_seq,
                run[0] if run else None,
            )
        end = self.clock.advance(wall_s)
        rec = {
            "session_id": self.session_id,
            "cell_seq": self.cell_seq,
            "execution_count": self.cell_seq,
            "cell_id": f"cell-{self.cell_seq}",
            "code_sha1": f"{self.cell_seq:040x}",
            "code": code,
            "run_id": run[0] if run else None,
            "run_name": run[1] if run else None,
            "started_at": start,
            "ended_at": end if status != "running" else None,
            "wall_s": wall_s,
            "cpu_s": cpu_s if cpu_s is not None else wall_s * 0.97,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "peak_rss_bytes": peak,
            "peak_exact": True,
            "children_peak_rss_bytes": int(peak * 0.08),
            "peak_gpu_bytes": gpu,
            "status": status,
            "error_name": error_name,
        }
        self.write("cells", rec)
        self.rss = after
        return rec

    def session_record(self, status: str, **extra: Any) -> None:
        self.write(
            "sessions",
            {
                "session_id": self.session_id,
                "started_at": extra.pop("started_at"),
                "status": status,
                "kernel_pid": 4242,
                "hostname": "gpu-box",
                "user": "ada",
                "python": "3.12.3",
                "mlt_version": "0.1.0",
                "exp_path": str(self.exp),
                "notebook": "churn.ipynb",
                "peak_exact": True,
                **extra,
            },
        )

    def close(self) -> None:
        self.kernel.close()
        self.watcher.close()


def _scores(rng: np.random.Generator, y: np.ndarray, skill: float) -> np.ndarray:
    logits = rng.normal(0.0, 1.0, len(y)) + skill * (y - 0.5) * 2
    return 1 / (1 + np.exp(-logits))


def _log_predictions(s: Session, run_id: str, y: np.ndarray, proba: np.ndarray, split: str) -> dict[str, float]:
    ev = evaluate(y, y_proba=np.column_stack([1 - proba, proba]), labels=[0, 1])
    for name, value in ev.metrics.items():
        s.write(
            "metrics",
            {"run_id": run_id, "session_id": s.session_id, "name": name, "step": None, "value": value, "split": split},
        )
    s.write(
        "confusion", {"run_id": run_id, "split": split, "labels": [str(x) for x in ev.labels], "matrix": ev.confusion}
    )
    for c in ev.curves:
        s.write(
            "curves",
            {"run_id": run_id, "split": split, "kind": c.kind, "label": c.label, "x": c.x, "y": c.y, "auc": c.auc},
        )
    return ev.metrics


def _run(s: Session, model: Model, rng: np.random.Generator, y_test: np.ndarray, y_val: np.ndarray) -> str:
    run_id = layout.new_writer_id() + f"-{model.name[:4]}"
    started = s.clock.now_us + 1
    base = {"run_id": run_id, "name": model.name, "session_id": s.session_id, "params": model.params}
    s.write("runs", {**base, "status": "running", "started_at": started})
    first = s.cell_seq + 1
    per_cell = model.wall_s / model.cells
    for i in range(model.cells):
        code = f"# mlt: record name={model.name}\nmodel = make_{model.name}()\nmodel.fit(X_train, y_train)"
        if model.cells > 1:
            code = (
                "# mlt: record start name=mlp lr=0.001\n" if i == 0 else "train(model, epochs=20)\n# mlt: record stop"
            )
        status = "running" if model.status == "killed" else "ok"
        rec = s.cell(
            code,
            per_cell,
            cpu_s=model.cpu_s / model.cells,
            peak=model.peak_rss_bytes,
            after=s.rss + 120 * MiB,
            gpu=model.peak_gpu_bytes,
            run=(run_id, model.name),
            status=status,
        )
    if model.status == "killed":
        return run_id
    for epoch in range(1, model.epochs + 1):
        loss = 0.69 * math.exp(-epoch / 6) + 0.18 + rng.normal(0, 0.008)
        val_loss = loss + 0.02 + 0.004 * max(epoch - 12, 0)
        for name, value in (
            ("loss", loss),
            ("val_loss", val_loss),
            ("val_accuracy", 0.62 + 0.25 * (1 - math.exp(-epoch / 5))),
        ):
            s.write(
                "metrics", {"run_id": run_id, "session_id": s.session_id, "name": name, "step": epoch, "value": value}
            )
    _log_predictions(s, run_id, y_test, _scores(rng, y_test, model.skill), "test")
    if model.name in ("random_forest", "mlp"):
        _log_predictions(s, run_id, y_val, _scores(rng, y_val, model.skill * 1.05), "val")
    s.write(
        "runs",
        {
            **base,
            "status": model.status,
            "started_at": started,
            "ended_at": rec["ended_at"],
            "wall_s": model.wall_s,
            "cpu_s": model.cpu_s,
            "peak_rss_bytes": model.peak_rss_bytes,
            "peak_gpu_bytes": model.peak_gpu_bytes,
            "first_cell_seq": first,
            "last_cell_seq": s.cell_seq,
        },
    )
    return run_id


def _png(path: Path, title: str) -> None:
    """A real PNG figure, as a notebook would have saved it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    x = np.linspace(0, 1, 50)
    ax.plot(x, x**0.3, label="random_forest")
    ax.plot(x, x, "--", color="grey")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


GUARDED = "random_forest_wide"


def _guarded_run(s: Session) -> str:
    """A run whose one cell the memory guard stopped at 7.25 GiB of an 8 GiB limit; the kernel lived on."""
    run_id = layout.new_writer_id() + "-wide"
    base = {"run_id": run_id, "name": GUARDED, "session_id": s.session_id, "params": {"n_estimators": 3000}}
    started = s.clock.now_us + 1
    s.write("runs", {**base, "status": "running", "started_at": started})
    rec = s.cell(
        f"# mlt: record name={GUARDED}\nmodel = make_forest(3000)\nmodel.fit(X_train, y_train)",
        4.0,
        peak=int(7.3 * GiB),
        after=int(7.2 * GiB),
        run=(run_id, GUARDED),
        status="interrupted",
        error_name="MemoryGuardInterrupt",
    )
    s.watcher.write(
        "cell_usage",
        {
            "session_id": s.session_id,
            "cell_seq": rec["cell_seq"],
            "samples": 9,
            "memory_limit_bytes": 8 * GiB,
            "guard_rss_bytes": int(7.25 * GiB),
            "guard_at": rec["ended_at"] - 150_000,
        },
    )
    s.write(
        "runs",
        {
            **base,
            "status": "interrupted",
            "started_at": started,
            "ended_at": rec["ended_at"],
            "wall_s": 4.0,
            "cpu_s": rec["cpu_s"],
            "peak_rss_bytes": rec["peak_rss_bytes"],
            "first_cell_seq": rec["cell_seq"],
            "last_cell_seq": rec["cell_seq"],
        },
    )
    s.rss = int(1.2 * GiB)  # the user freed the memory
    return run_id


def build_experiment(path: Path, *, compact: bool = True, documents: bool = True) -> dict[str, Any]:
    """Write the experiment into *path*; returns ids and names the tests look for."""
    root = layout.ensure_layout(path)
    rng = np.random.default_rng(7)
    y_test = (rng.random(600) < 0.3).astype(int)
    y_val = (rng.random(400) < 0.3).astype(int)
    clock = Clock(int((__import__("time").time() - 3 * 3600) * 1e6))

    s1 = Session(root, "20260101T090000Z-aaaa0001", clock)
    started1 = clock.now_us
    s1.session_record("running", started_at=started1)
    s1.cell("import numpy as np\nimport pandas as pd\nfrom sklearn import ensemble", 1.4, peak=int(0.4 * GiB))
    s1.cell(
        "df = pd.read_parquet('churn.parquet')\nX_train, X_test, y_train, y_test = split(df)",
        6.2,
        peak=int(1.3 * GiB),
        after=int(0.95 * GiB),
    )
    run_ids = {m.name: _run(s1, m, rng, y_test, y_val) for m in MODELS}
    s1.cell("model.predict(X_missing)", 0.3, status="error", error_name="ValueError")
    plot = root / layout.PLOTS / "roc_rf.png"
    _png(plot, "ROC random_forest")
    s1.write(
        "plots",
        {
            "plot_id": "plot-roc-rf",
            "file": "roc_rf.png",
            "path": "plots/roc_rf.png",
            "size_bytes": plot.stat().st_size,
            "sha256": "0" * 64,
            "session_id": s1.session_id,
            "cell_seq": s1.cell_seq,
            "run_id": run_ids["random_forest"],
            "source": "savefig",
            "created_at": clock.now_us,
        },
    )
    s1.write(
        "notes",
        {
            "note_id": "note-good",
            "session_id": s1.session_id,
            "execution_count": s1.cell_seq,
            "run_id": run_ids["random_forest"],
            "plot": "roc_rf.png",
            "doc": "Findings",
            "markdown": GOOD_NOTE,
            "created_at": clock.advance(1),
            "deleted": False,
        },
    )
    s1.write(
        "notes",
        {
            "note_id": "note-hostile",
            "session_id": s1.session_id,
            "execution_count": s1.cell_seq,
            "run_id": run_ids["random_forest"],
            "plot": None,
            "doc": None,
            "markdown": HOSTILE_NOTE,
            "created_at": clock.advance(1),
            "deleted": False,
        },
    )
    ended1 = clock.advance(30)
    s1.session_record("ended", started_at=started1, ended_at=ended1)
    s1.close()

    s2 = Session(root, "20260101T120000Z-bbbb0002", clock)
    started2 = clock.advance(600)
    s2.session_record("running", started_at=started2, memory_guard=0.9)
    s2.cell("import numpy as np\nfrom sklearn import ensemble", 1.1, peak=int(0.4 * GiB))
    guarded_id = _guarded_run(s2)
    killed_id = _run(s2, KILLED, rng, y_test, y_val)
    died = clock.now_us
    killed_started = died - int(KILLED.wall_s * 1e6) - 2_000_000
    # What the watcher writes when the kernel dies: killed versions of the open rows.
    s2.watcher.write(
        "runs",
        {
            "run_id": killed_id,
            "name": KILLED.name,
            "session_id": s2.session_id,
            "status": "killed",
            "params": KILLED.params,
            "started_at": killed_started,
            "ended_at": died,
            "wall_s": KILLED.wall_s,
            "cpu_s": KILLED.cpu_s,
            "peak_rss_bytes": KILLED.peak_rss_bytes,
            "first_cell_seq": s2.cell_seq,
            "last_cell_seq": s2.cell_seq,
        },
    )
    s2.watcher.write(
        "cells",
        {
            "session_id": s2.session_id,
            "cell_seq": s2.cell_seq,
            "execution_count": s2.cell_seq,
            "run_id": killed_id,
            "run_name": KILLED.name,
            "started_at": died - int(KILLED.wall_s * 1e6),
            "ended_at": died,
            "wall_s": KILLED.wall_s,
            "cpu_s": KILLED.cpu_s,
            "rss_before_bytes": int(0.5 * GiB),
            "peak_rss_bytes": KILLED.peak_rss_bytes,
            "status": "killed",
            "code": "# mlt: record name=random_forest_deep\nmodel.fit(X, y)",
        },
    )
    s2.watcher.write(
        "sessions",
        {
            "session_id": s2.session_id,
            "started_at": started2,
            "status": "killed",
            "ended_at": died,
            "death_cause": "oom",
            "memory_limit_bytes": 8 * GiB,
            "oom_kill": True,
            "last_rss_bytes": KILLED.peak_rss_bytes,
            "memory_guard": 0.9,
            "growth_bytes_per_s": 3.5 * GiB,
            "kernel_pid": 4343,
            "hostname": "gpu-box",
            "user": "ada",
            "notebook": "churn.ipynb",
        },
    )
    s2.close()
    if compact:
        for s in (s1, s2):
            store.compact_writer(root, s.session_id)
    if documents:
        doc = create_document(root, "Findings")
        doc.add_markdown(FINDINGS)
        doc.add_note("note-good")
        doc.add_markdown("Next: tune `max_depth` of the forest, and give the deep forest **less memory** to work with.")
    return {
        "path": root,
        "run_ids": {**run_ids, GUARDED: guarded_id, KILLED.name: killed_id},
        "sessions": [s1.session_id, s2.session_id],
        "plot": "roc_rf.png",
    }
