"""The quick-start notebook, executed headless through nbclient as a user would run it."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

import mlt_kernel as mlt

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_notebook_records_runs_metrics_plots_and_notes(tmp_path, monkeypatch):
    exp = tmp_path / "quickstart"
    monkeypatch.setenv("QUICKSTART_EXP", str(exp))
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="mltrack", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()

    assert not (tmp_path / "mlt-experiments").exists()  # EXP_PATH came first
    e = mlt.Experiment(exp)
    runs = e.runs().set_index("name")
    assert list(runs.index) == ["logistic_regression", "random_forest", "gradient_boosting", "mlp"]
    assert set(runs["status"]) == {"finished"}
    assert (runs["accuracy"] > 0.9).all() and (runs["roc_auc"] > 0.9).all()
    # The directive's params, and what autolog saw of the model (its class, its other non-default params).
    assert runs.loc["random_forest", "params"] == {
        "n_estimators": 300,
        "max_depth": 8,
        "model": "RandomForestClassifier",
        "random_state": 0,
        "n_jobs": 2,
    }
    fits = e.fits(run="random_forest")
    assert fits["estimator"].tolist() == ["sklearn.ensemble._forest.RandomForestClassifier"]
    curve = e.metrics("mlp").query("name == 'loss'")
    assert curve["step"].tolist() == list(range(30)) and curve["value"].is_monotonic_decreasing
    assert e.confusion_matrix("random_forest", split="train").to_numpy().sum() == 398
    assert "roc_mlp.png" in set(e.plots()["file"])
    note = e.notes().iloc[0]
    assert note["plot"] == "roc_mlp.png" and note["doc"] == "Findings" and "## The MLP" in note["markdown"]
    cells = e.cells()
    assert len(cells) == len([c for c in nb.cells if c.cell_type == "code"])
    assert set(cells["status"]) == {"ok"}
    # The notebook's own last cell read the experiment back while it ran.
    last = nb.cells[-1].outputs[0]["data"]["text/html"]
    assert "gradient_boosting" in last
