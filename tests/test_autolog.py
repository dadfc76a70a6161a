"""scikit-learn fits recorded with no code, in a real kernel."""

from __future__ import annotations

import re

import pytest

import mlt_kernel as mlt

DATA = (
    "import numpy as np, pandas as pd\n"
    "rng = np.random.default_rng(0)\n"
    "X = pd.DataFrame(rng.random((300, 4)), columns=['age', 'income', 'tenure', 'noise'])\n"
    "y = (X['age'] + 0.2 * X['income'] > 0.6).astype(int)\n"
)


@pytest.fixture
def kernel(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt\n" + DATA)
    return k


def _ok(kernel, code: str) -> None:
    reply = kernel.run(code)
    assert reply.status == "ok", reply.content


def test_scikit_learn_is_not_imported_for_us(kernel):
    assert kernel.run("import sys; print('sklearn' in sys.modules)").stdout.strip() == "False"


def test_a_pipeline_in_a_run_is_one_fit_and_gives_the_run_its_params(kernel, exp):
    _ok(
        kernel,
        "# mlt: record name=lr tag=baseline\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(X, y)",
    )
    e = mlt.Experiment(exp)
    (fit,) = e.fits().to_dict("records")  # the steps' own fits are not rows
    (run,) = e.runs().to_dict("records")
    assert fit["estimator"] == "sklearn.pipeline.Pipeline" and fit["method"] == "fit"
    assert fit["params"] == {"logisticregression__C": 0.5}
    assert (fit["n_samples"], fit["n_features"]) == (300, 4)
    assert fit["feature_names"] == ["age", "income", "tenure", "noise"]
    assert fit["run_id"] == run["run_id"] and fit["status"] == "ok" and fit["cell_seq"] == 2
    assert fit["wall_s"] > 0 and fit["cpu_s"] >= 0 and fit["model_bytes"] > 0
    assert fit["peak_rss_bytes"] >= fit["rss_start_bytes"] > 0
    assert [name for name, _ in fit["top_features"]][:2] == ["age", "income"]
    assert run["params"] == {"tag": "baseline", "model": "Pipeline", "logisticregression__C": 0.5}
    assert e.fits(run="lr")["fit_id"].tolist() == [fit["fit_id"]]


def test_a_search_keeps_its_best_params_and_every_candidate(kernel, exp):
    _ok(
        kernel,
        "from sklearn.model_selection import GridSearchCV\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "search = GridSearchCV(DecisionTreeClassifier(random_state=0), "
        "{'max_depth': [1, 3, 5], 'min_samples_leaf': [1, 10]}, cv=3).fit(X, y)\n"
        "print(search.best_params_)",
    )
    e = mlt.Experiment(exp)
    (fit,) = e.fits().to_dict("records")  # the refit and the 18 candidate fits are not rows
    assert fit["estimator"] == "sklearn.model_selection._search.GridSearchCV"
    assert set(fit["best_params"]) == {"max_depth", "min_samples_leaf"}
    assert fit["n_candidates"] == 6 and fit["best_score"] > 0.5
    assert fit["run_id"] is None  # outside any run
    results = e.search_results(fit["fit_id"])
    assert len(results) == 6
    assert {"param_max_depth", "mean_test_score", "rank_test_score"} <= set(results.columns)
    assert sorted(results["param_max_depth"]) == [1, 1, 3, 3, 5, 5]


def test_forest_importances_same_data_same_fingerprint(kernel, exp):
    for name in ("a", "b"):
        _ok(
            kernel,
            f"# mlt: record name={name}\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)",
        )
    _ok(kernel, "X2 = X.copy(); X2.iloc[0, 0] = 0.123456\nRandomForestClassifier(n_estimators=20).fit(X2, y)")
    fits = mlt.Experiment(exp).fits()
    assert fits["estimator"].tolist() == ["sklearn.ensemble._forest.RandomForestClassifier"] * 3
    a, b, changed = fits["data_fingerprint"]
    assert a == b and a != changed and len(a) == 32
    assert fits["top_features"].iloc[0][0][0] == "age"
    assert fits["params"].iloc[0] == {"n_estimators": 20, "random_state": 0}
    assert fits["model_bytes"].iloc[0] > 1000


def test_a_failing_fit_raises_unchanged_and_is_recorded_as_error(kernel, exp):
    reply = kernel.run(
        "from sklearn.linear_model import LinearRegression\nXn = X.copy(); Xn.iloc[3, 1] = np.nan\n"
        "LinearRegression().fit(Xn, y)"
    )
    assert reply.content["ename"] == "ValueError" and "NaN" in reply.content["evalue"]
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply.content["traceback"]))
    assert "mlt_kernel" not in traceback  # our frames are hidden: the user's error, as sklearn raised it
    (fit,) = mlt.Experiment(exp).fits().to_dict("records")
    assert fit["status"] == "error" and fit["error_name"] == "ValueError"


def test_what_the_user_wrote_wins_and_autolog_pauses(kernel, exp):
    _ok(
        kernel,
        "# mlt: record name=svm C=9\nfrom sklearn.svm import SVC\nmlt.log_params(kernel='mine')\n"
        "SVC(C=0.5, kernel='linear').fit(X, y)",
    )
    _ok(kernel, "mlt.autolog(False)\nSVC().fit(X, y)\nmlt.autolog(True)")
    e = mlt.Experiment(exp)
    (run,) = e.runs().to_dict("records")
    assert run["params"] == {"C": 9, "kernel": "mine", "model": "SVC"}
    assert len(e.fits()) == 1


def test_a_sweep_with_fits_gets_one_fit_per_run(kernel, exp):
    _ok(
        kernel,
        "from sklearn.linear_model import LogisticRegression\n"
        "for C in [0.1, 1.0]:\n"
        "    with mlt.run('sweep', C=C):\n"
        "        LogisticRegression(C=C, max_iter=500).fit(X, y)",
    )
    e = mlt.Experiment(exp)
    runs, fits = e.runs(), e.fits()
    assert fits["run_id"].tolist() == runs["run_id"].tolist()
    assert [p["C"] for p in runs["params"]] == [0.1, 1.0] and {p["model"] for p in runs["params"]} == {
        "LogisticRegression"
    }


def test_autolog_off_records_no_fit(start_kernel, exp):
    k = start_kernel(extra_arguments=["--MLTrackKernel.autolog=False"])
    k.run(f"EXP_PATH = {str(exp)!r}\n" + DATA)
    _ok(k, "from sklearn.linear_model import LogisticRegression\nLogisticRegression().fit(X, y)")
    k.run("# mlt: record name=x\nLogisticRegression().fit(X, y)")
    e = mlt.Experiment(exp)
    assert len(e.sql("SELECT * FROM fits")) == 0
    assert e.runs()["params"].iloc[0] == {}


def test_fits_inside_scikit_learn_functions_and_mltrack_are_not_the_users(kernel, exp):
    _ok(
        kernel,
        "# mlt: record name=metrics_only\n"
        "from sklearn.metrics import roc_auc_score\n"
        "yy = np.array([0, 1, 2, 1, 0, 2]); proba = np.eye(3)[yy] * 0.8 + 0.2 / 3\n"
        "print(roc_auc_score(yy, proba, multi_class='ovr'))\n"
        "mlt.log_predictions(yy, yy, y_proba=proba)",
    )
    e = mlt.Experiment(exp)
    assert e.sql("SELECT count(*) AS n FROM fits")["n"].iloc[0] == 0
    assert "model" not in e.runs()["params"].iloc[0]
