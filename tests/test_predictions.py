"""``log_predictions`` in a real kernel: metrics, confusion matrices, curves, stored predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

import mlt_kernel as mlt

SETUP = """
import numpy as np, pandas as pd, mlt_kernel as mlt
rng = np.random.default_rng(0)
y_true = rng.integers(0, 2, 200)
p1 = np.clip(y_true * 0.6 + rng.random(200) * 0.5, 0, 1)
proba = np.column_stack([1 - p1, p1])
y_pred = (p1 > 0.5).astype(int)
"""


@pytest.fixture
def kernel(start_kernel, exp):
    k = start_kernel()
    assert k.run(f"EXP_PATH = {str(exp)!r}\n" + SETUP).status == "ok"
    return k


def test_binary_metrics_are_scikit_learns(kernel, exp):
    reply = kernel.run(
        "# mlt: record name=lr\nm = mlt.log_predictions(y_true, y_pred, y_proba=proba)\nprint(sorted(m))"
    )
    assert reply.status == "ok", reply.content
    e = mlt.Experiment(exp)
    run = e.runs().iloc[0]
    stored = e.predictions("lr")
    y_true, y_pred = stored["y_true"].to_numpy(), stored["y_pred"].to_numpy()
    assert run["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert run["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert run["recall"] == pytest.approx(recall_score(y_true, y_pred))
    assert run["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert run["roc_auc"] == pytest.approx(roc_auc_score(y_true, stored["proba_1"]), rel=1e-6)
    for name in ("average_precision", "log_loss"):
        assert np.isfinite(run[name])
    cm = e.confusion_matrix("lr")
    assert list(cm.index) == ["0", "1"] and int(cm.to_numpy().sum()) == 200
    assert cm.loc["1", "1"] == int(((y_true == 1) & (y_pred == 1)).sum())
    assert e.confusion_matrix("lr", normalize="true").sum(axis=1).round(6).tolist() == [1.0, 1.0]
    curves = e.curves("lr")
    assert sorted(curves["kind"]) == ["pr", "roc"]
    roc = curves.set_index("kind").loc["roc"]
    assert roc["x"][0] == 0.0 and roc["y"][-1] == 1.0


def test_multiclass_strings_splits_and_dict_form(kernel, exp):
    code = """
# mlt: record name=iris
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
names = np.array(["setosa", "versicolor", "virginica"])[y]
model = LogisticRegression(max_iter=500).fit(X, names)
mlt.log_predictions(pd.Series(names), model.predict(X), y_proba=model.predict_proba(X), split="train")
mlt.log_predictions({"y_true": list(names), "y_pred": list(model.predict(X)), "y_pred_proba": model.predict_proba(X)})
"""
    assert kernel.run(code).status == "ok"
    e = mlt.Experiment(exp)
    run = e.runs().iloc[0]
    for name in ("accuracy", "precision", "recall", "f1", "f1_weighted", "roc_auc", "log_loss"):
        assert 0 <= run[name] <= 1 or name == "log_loss"
    assert list(e.confusion_matrix("iris", split="train").columns) == ["setosa", "versicolor", "virginica"]
    assert set(e.metrics("iris")["split"]) == {"train", "test"}
    assert sorted(e.curves("iris")["label"].unique()) == ["setosa", "versicolor", "virginica"]


def test_regression(kernel, exp):
    reply = kernel.run(
        "# mlt: record name=reg\nt = rng.normal(size=100)\nmlt.log_predictions(t, t + rng.normal(scale=0.1, size=100))"
    )
    assert reply.status == "ok"
    run = mlt.Experiment(exp).runs().iloc[0]
    assert run["r2"] > 0.9 and run["mae"] < 0.2 and run["rmse"] < 0.2
    with pytest.raises(KeyError, match="no confusion matrix"):
        mlt.Experiment(exp).confusion_matrix("reg")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("mlt.log_predictions(y_true[:10], y_pred)", "length"),
        ("mlt.log_predictions(np.where(y_true == 1, np.nan, 0.0), y_pred)", "NaN"),
        ("mlt.log_predictions(y_true, y_pred, y_proba=proba[:, :1].repeat(3, axis=1))", "prob"),
        ("mlt.log_predictions(np.zeros(200, int), np.zeros(200, int))", "class"),
        ("mlt.log_predictions([], [])", "empty"),
        ("mlt.log_predictions(y_true, y_pred + 5, labels=[0, 1])", "label"),
    ],
)
def test_bad_input_stores_nothing(kernel, exp, call, message):
    reply = kernel.run(f"# mlt: record name=bad\n{call}")
    assert reply.content["ename"] == "ValueError"
    assert message.lower() in reply.content["evalue"].lower()
    e = mlt.Experiment(exp)
    assert e.metrics().empty
    assert e.sql("SELECT count(*) AS n FROM predictions")["n"][0] == 0
    assert not list((exp / "predictions").iterdir())
