"""Parameter importance on the Summary page: the forest and correlations, and the chart in a real browser."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bokeh.models import HoverTool, PlainText
from hostile_experiment import payload
from test_dashboard import TIMEOUT_MS, Dashboard, _charts, _wait
from test_dashboard_data import Clock, Session

from mlt_dashboard.importance import importance_chart, param_importance, usable_runs
from mlt_kernel.core import layout
from mlt_kernel.store import parquet as store

HOSTILE = "</script><img src=x onerror=alert(1)>"


def _runs(params: list[dict[str, Any]], metric: list[float], name: str = "f1") -> pd.DataFrame:
    """A frame shaped like ``Source.runs()``: a ``params`` column of dicts and one column per metric."""
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(len(params))], "params": params, name: metric})


def _synthetic(n: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lr = rng.uniform(0.001, 0.1, n)
    params = [
        {
            "lr": float(lr[i]),
            "dropout": float(rng.random()),
            "batch": 32,
            "optimizer": str(rng.choice(["adam", "sgd", "rmsprop"])),
        }
        for i in range(n)
    ]
    return _runs(params, list(2 * lr))


# -- the computation -------------------------------------------------------------------------


def test_the_param_the_metric_follows_ranks_first_and_correlates() -> None:
    table = param_importance(_synthetic(), "f1")
    assert table is not None
    assert list(table.columns) == ["param", "importance", "correlation"]
    assert table["param"].iloc[0] == "lr"
    assert table["importance"].iloc[0] > 0.5
    assert table["correlation"].iloc[0] > 0.95
    assert "batch" not in set(table["param"])  # constant: it explains nothing
    assert set(table["param"]) == {"lr", "dropout", "optimizer"}
    assert list(table["importance"]) == sorted(table["importance"], reverse=True)
    assert math.isclose(table["importance"].sum(), 1.0, abs_tol=1e-9)
    assert abs(table.set_index("param").loc["dropout", "correlation"]) < 0.5


def test_a_text_param_is_one_hot_encoded_and_summed_back() -> None:
    rng = np.random.default_rng(5)
    score = {"adam": 0.9, "sgd": 0.6, "rmsprop": 0.75}
    optimizers = [str(rng.choice(list(score))) for _ in range(30)]
    params = [{"optimizer": o, "seed": float(rng.random())} for o in optimizers]
    table = param_importance(_runs(params, [score[o] for o in optimizers]), "f1")
    assert table is not None
    assert list(table["param"]) == ["optimizer", "seed"]  # one row for the three one-hot columns
    assert table["importance"].iloc[0] > 0.5
    assert math.isnan(table["correlation"].iloc[0])  # an unordered category has no sign


def test_bools_count_as_numbers_and_missing_values_are_tolerated() -> None:
    params: list[dict[str, Any]] = [
        {"augment": i % 2 == 0, "depth": (i if i % 4 else None), "huge": 10.0 ** (300 - i)} for i in range(12)
    ]
    params[3] = {**params[3], "extra": "only one run has it"}
    metric = [0.9 if p["augment"] else 0.6 for p in params]
    table = param_importance(_runs(params, metric), "f1")
    assert table is not None
    by_param = table.set_index("param")
    assert by_param.index[0] == "augment"
    assert by_param.loc["augment", "correlation"] == pytest.approx(1.0)
    assert "extra" not in by_param.index  # one run has it: nothing to compare
    assert {"depth", "huge"} <= set(by_param.index)


def test_too_few_usable_runs_or_nothing_that_varies_gives_none() -> None:
    runs = _synthetic(n=8)
    assert param_importance(runs.head(4), "f1") is None
    assert param_importance(runs.head(4), "f1", min_runs=3) is not None
    missing = runs.copy()
    missing.loc[missing.index[:4], "f1"] = np.nan  # rows without the metric are dropped
    assert len(usable_runs(missing, "f1")) == 4
    assert param_importance(missing, "f1") is None
    no_params = runs.copy()
    no_params["params"] = [{} if i < 4 else p for i, p in enumerate(runs["params"])]
    assert param_importance(no_params, "f1") is None
    constant = _runs([{"batch": 32, "optimizer": "adam"}] * 8, list(np.linspace(0.5, 0.9, 8)))
    assert param_importance(constant, "f1") is None
    assert param_importance(runs, "no_such_metric") is None


def test_the_answer_is_the_same_every_time() -> None:
    runs = _synthetic(n=60)
    first, second = param_importance(runs, "f1"), param_importance(runs, "f1")
    assert first is not None and second is not None
    pd.testing.assert_frame_equal(first, second)


def test_hostile_param_names_stay_plain_strings() -> None:
    rng = np.random.default_rng(9)
    values = rng.random(10)
    params = [{HOSTILE: float(v), "$$x$$": float(rng.random())} for v in values]
    table = param_importance(_runs(params, list(values), name=HOSTILE), HOSTILE)
    assert table is not None
    assert table["param"].iloc[0] == HOSTILE
    p = importance_chart(table, HOSTILE)
    assert p.name == "param-importance"
    assert isinstance(p.title.text, PlainText) and p.title.text.text == f"Parameter importance for {HOSTILE}"
    source = p.renderers[0].data_source
    assert HOSTILE in source.data["param_name"]  # the raw name, as data: Bokeh escapes it in the tooltip
    for tool in p.select({"type": HoverTool}):
        assert all(value.startswith("@{") for _, value in tool.tooltips)


def test_a_param_too_large_for_a_float_is_an_extreme_not_an_error() -> None:
    rng = np.random.default_rng(3)
    values = list(rng.random(6))
    params = [{"lr": float(v), "huge": 10**400 if i == 0 else i} for i, v in enumerate(values)]
    table = param_importance(_runs(params, values), "f1")
    assert table is not None and set(table["param"]) == {"lr", "huge"}


def test_importing_the_dashboard_does_not_import_scikit_learn() -> None:
    code = "import sys, mlt_dashboard.importance, mlt_dashboard.summary; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- in the browser --------------------------------------------------------------------------

#: A param key that runs ``window.__pwned.push(…)`` if it is ever taken for markup.
HOSTILE_KEY = payload("importance-param")


def _write_runs(root: Path, clock: Clock, session_id: str, runs: range, *, compact: bool) -> None:
    """Finished runs of one session whose F1 rises and accuracy falls with ``lr``: the real writer, no kernel.

    Compacted to Parquet as an ended session is, or left in its journal as a kernel still writing.
    """
    session = Session(root, session_id, clock)
    started = clock.now_us
    session.session_record("running", started_at=started)
    for i in runs:
        run_id, name = f"{layout.new_writer_id()}-{i}", f"run_{i}"
        lr = 0.01 * (i + 1)
        params = {"lr": lr, HOSTILE_KEY: (i * 7) % 5, "optimizer": "adam" if i % 2 else "sgd"}
        rec = session.cell("model.fit(X, y)", 1.0 + i, run=(run_id, name))
        session.write(
            "runs",
            {
                "run_id": run_id,
                "name": name,
                "session_id": session_id,
                "params": params,
                "status": "finished",
                "started_at": rec["started_at"],
                "ended_at": rec["ended_at"],
                "wall_s": 1.0 + i,
                "cpu_s": 0.9 + i,
                "peak_rss_bytes": 2**30,
                "first_cell_seq": rec["cell_seq"],
                "last_cell_seq": rec["cell_seq"],
            },
        )
        for metric, value in (("f1", 0.5 + 4 * lr), ("accuracy", 0.95 - 2 * lr)):
            session.write(
                "metrics",
                {"run_id": run_id, "session_id": session_id, "name": metric, "value": value, "split": "test"},
            )
    if compact:
        session.session_record("ended", started_at=started, ended_at=clock.advance(5))
    session.close()
    if compact:
        store.compact_writer(root, session_id)


#: Where the importance figure is on screen, once scrolled into view (its view found by the model's name).
_FIGURE_BOX = """() => {
    for (const view of Bokeh.index.all_views()) {
        if (view.model.name === "param-importance") {
            view.el.scrollIntoView({block: "center"});
            const r = view.el.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }
    }
    return null;
}"""


@pytest.mark.browser
def test_summary_shows_parameter_importance_and_keeps_names_text(browser: Any, tmp_path: Path) -> None:
    """A hint until 5 runs have params and F1, the chart once a kernel writes more, another metric on demand."""
    root = layout.ensure_layout(tmp_path / "sweep")
    clock = Clock(int((time.time() - 3600) * 1e6))
    _write_runs(root, clock, "20260101T090000Z-1mp0rt01", range(4), compact=True)
    dash = Dashboard(root)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(dash.page_url("summary"))
        page.get_by_text("Parameter importance appears once 5 runs have params and f1.").wait_for()
        _write_runs(root, clock, "20260101T100000Z-1mp0rt02", range(4, 7), compact=False)
        _wait(lambda: "param-importance: Parameter importance for f1" in _charts(page), "the chart", timeout=20)
        assert not page.get_by_text("Parameter importance appears once").is_visible()
        page.locator("select:has(option[value='accuracy'])").select_option("accuracy")
        _wait(lambda: "param-importance: Parameter importance for accuracy" in _charts(page), "the accuracy chart")
        box = page.evaluate(_FIGURE_BOX)
        assert box is not None and box["height"] > 100
        for i in range(1, 8):  # over the bars, so that every tooltip renders
            for j in range(1, 8):
                page.mouse.move(box["x"] + box["width"] * i / 8, box["y"] + box["height"] * j / 8)
        page.wait_for_timeout(300)  # an <img onerror> fires once its request has failed
        assert page.locator('img[src="x"]').count() == 0  # the locator looks into shadow roots too
        assert page.evaluate("() => window.__pwned") is None
        assert errors == [] and dialogs == []
    finally:
        context.close()
        dash.stop()
