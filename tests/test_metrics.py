"""Tests of mlt_kernel.tracking.metrics: our values equal scikit-learn's, and bad input is refused."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlt_kernel.tracking.metrics import MAX_CURVE_POINTS, Curve, Evaluation, evaluate, thin_curve

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def assert_plain(ev: Evaluation) -> None:
    """Metric values and curve points are plain, finite Python floats."""
    for value in ev.metrics.values():
        assert type(value) is float and np.isfinite(value)
    for curve in ev.curves:
        assert all(type(v) is float and np.isfinite(v) for v in curve.x + curve.y)
        assert type(curve.auc) is float and len(curve.x) == len(curve.y) <= MAX_CURVE_POINTS


# ------------------------------------------------------------------ strategies


@st.composite
def scores(draw, n):
    """Probabilities in [0, 1], sometimes from a small set so that ties occur."""
    if draw(st.booleans()):
        pool = draw(st.lists(st.floats(0, 1), min_size=1, max_size=5))
        return np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)))
    return np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))


@st.composite
def binary_case(draw):
    n = draw(st.integers(2, 60))
    y_true = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    y_true[:2] = [0, 1]
    y_pred = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    return y_true, y_pred, draw(scores(n))


@st.composite
def multiclass_case(draw):
    k = draw(st.integers(3, 6))
    n = draw(st.integers(k, 60))
    y_true = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    y_true[:k] = np.arange(k)  # every class present, so roc_auc is defined
    y_pred = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    raw = np.array(draw(st.lists(st.floats(0.01, 1), min_size=n * k, max_size=n * k))).reshape(n, k)
    return y_true, y_pred, raw / raw.sum(axis=1, keepdims=True)


# ------------------------------------------------------- equality with sklearn


@SETTINGS
@given(binary_case())
def test_binary_equals_sklearn(case):
    y_true, y_pred, proba = case
    ev = evaluate(y_true, y_pred, y_proba=proba)
    assert ev.task == "binary" and ev.labels == [0, 1]
    m = ev.metrics
    assert m["accuracy"] == approx(skm.accuracy_score(y_true, y_pred))
    assert m["precision"] == approx(skm.precision_score(y_true, y_pred, zero_division=0))
    assert m["recall"] == approx(skm.recall_score(y_true, y_pred, zero_division=0))
    assert m["f1"] == approx(skm.f1_score(y_true, y_pred, zero_division=0))
    assert m["roc_auc"] == approx(skm.roc_auc_score(y_true, proba))
    assert m["average_precision"] == approx(skm.average_precision_score(y_true, proba))
    assert m["log_loss"] == approx(skm.log_loss(y_true, proba))
    assert ev.confusion == skm.confusion_matrix(y_true, y_pred).tolist()
    roc, pr = ev.curves
    fpr, tpr, _ = skm.roc_curve(y_true, proba, drop_intermediate=True)
    precision, recall, _ = skm.precision_recall_curve(y_true, proba, drop_intermediate=True)
    assert (roc.kind, roc.label, pr.kind, pr.label) == ("roc", "1", "pr", "1")
    assert roc.x == fpr.tolist() and roc.y == tpr.tolist() and roc.auc == m["roc_auc"]
    assert pr.x == recall.tolist() and pr.y == precision.tolist() and pr.auc == m["average_precision"]
    assert ev.y_proba.shape == (len(y_true), 2)
    assert_plain(ev)


@SETTINGS
@given(multiclass_case())
def test_multiclass_equals_sklearn(case):
    y_true, y_pred, proba = case
    k = proba.shape[1]
    ev = evaluate(y_true, y_pred, y_proba=proba)
    assert ev.task == "multiclass" and ev.labels == list(range(k))
    m, every = ev.metrics, np.arange(k)
    assert m["accuracy"] == approx(skm.accuracy_score(y_true, y_pred))
    for average, suffix in (("macro", ""), ("weighted", "_weighted")):
        kw = dict(labels=every, average=average, zero_division=0)
        assert m[f"precision{suffix}"] == approx(skm.precision_score(y_true, y_pred, **kw))
        assert m[f"recall{suffix}"] == approx(skm.recall_score(y_true, y_pred, **kw))
        assert m[f"f1{suffix}"] == approx(skm.f1_score(y_true, y_pred, **kw))
    assert m["roc_auc"] == approx(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))
    assert m["log_loss"] == approx(skm.log_loss(y_true, proba, labels=every))
    assert ev.confusion == skm.confusion_matrix(y_true, y_pred, labels=every).tolist()
    assert_plain(ev)


@SETTINGS
@given(multiclass_case())
def test_multiclass_curves_one_vs_rest_per_class(case):
    y_true, _, proba = case
    ev = evaluate(y_true, y_proba=proba)
    k = proba.shape[1]
    expected = [(kind, str(c)) for c in range(k) for kind in ("roc", "pr")]
    assert [(c.kind, c.label) for c in ev.curves] == expected
    for c in range(k):
        roc, pr = ev.curves[2 * c], ev.curves[2 * c + 1]
        fpr, tpr, _ = skm.roc_curve(y_true == c, proba[:, c])
        precision, recall, _ = skm.precision_recall_curve(y_true == c, proba[:, c], drop_intermediate=True)
        assert roc.x == fpr.tolist() and roc.y == tpr.tolist()
        assert roc.auc == approx(skm.roc_auc_score(y_true == c, proba[:, c]))
        assert pr.x == recall.tolist() and pr.y == precision.tolist()
        assert pr.auc == approx(skm.average_precision_score(y_true == c, proba[:, c]))


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(
    st.integers(2, 50).flatmap(
        lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n))
    )
)
def test_regression_equals_sklearn(case):
    y_true, y_pred = map(np.array, case)
    ev = evaluate(y_true, y_pred, task="regression")
    assert ev.task == "regression" and ev.labels == [] and ev.confusion is None and ev.curves == []
    assert ev.metrics["mae"] == approx(skm.mean_absolute_error(y_true, y_pred))
    assert ev.metrics["rmse"] == approx(skm.root_mean_squared_error(y_true, y_pred))
    assert ev.metrics["r2"] == approx(skm.r2_score(y_true, y_pred))
    assert ev.y_proba is None and ev.y_true.dtype == np.float64
    assert_plain(ev)


# ------------------------------------------------------------- input forms


def test_regression_inferred_from_continuous_y_true():
    ev = evaluate([1.5, 2.0, 3.25], [1.0, 2.5, 3.0])
    assert ev.task == "regression" and set(ev.metrics) == {"mae", "rmse", "r2"}


def test_regression_inferred_from_continuous_y_pred_with_float_y_true():
    assert evaluate([100.0, 200.0, 300.0], [110.5, 190.2, 310.0]).task == "regression"


def test_string_labels_binary_positive_is_largest():
    y_true = ["spam", "ham", "spam", "ham", "spam"]
    y_pred = ["spam", "spam", "ham", "ham", "spam"]
    ev = evaluate(y_true, y_pred)
    assert ev.task == "binary" and ev.labels == ["ham", "spam"]
    assert ev.metrics["precision"] == approx(skm.precision_score(y_true, y_pred, pos_label="spam"))
    assert ev.metrics["recall"] == approx(skm.recall_score(y_true, y_pred, pos_label="spam"))
    assert ev.confusion == skm.confusion_matrix(y_true, y_pred, labels=["ham", "spam"]).tolist()


def test_string_labels_multiclass_with_proba():
    y_true = np.array(["cat", "dog", "bird", "dog", "cat", "bird"])
    proba = np.array(
        [[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.5, 0.25, 0.25]]
    )
    ev = evaluate(y_true, y_proba=proba)
    assert ev.labels == ["bird", "cat", "dog"]
    assert ev.y_pred.tolist() == ["cat", "dog", "bird", "dog", "cat", "bird"]
    assert ev.metrics["roc_auc"] == approx(skm.roc_auc_score(y_true, proba, multi_class="ovr"))
    assert [c.label for c in ev.curves] == ["bird", "bird", "cat", "cat", "dog", "dog"]


def test_pandas_input():
    df = pd.DataFrame(
        {
            "y": ["a", "b", "a", "c"],
            "pred": ["a", "b", "c", "c"],
            "pa": [0.7, 0.1, 0.3, 0.1],
            "pb": [0.2, 0.8, 0.3, 0.2],
            "pc": [0.1, 0.1, 0.4, 0.7],
        }
    )
    ev = evaluate(df["y"], df["pred"], y_proba=df[["pa", "pb", "pc"]])
    assert ev.task == "multiclass" and ev.labels == ["a", "b", "c"]
    assert ev.metrics["accuracy"] == approx(0.75)
    assert isinstance(ev.y_true, np.ndarray) and ev.y_proba.shape == (4, 3)
    reg = evaluate(pd.Series([1.5, 2.5, 3.5]), pd.Series([1.0, 2.0, 4.0]))
    assert reg.metrics["mae"] == approx(0.5)


def test_pandas_nullable_and_categorical():
    ev = evaluate(pd.Series([0, 1, 1, 0], dtype="Int64"), pd.Categorical([0, 1, 0, 0]))
    assert ev.task == "binary" and ev.metrics["recall"] == approx(0.5)


def test_dict_form():
    y = [0, 1, 1, 0]
    p = [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]]
    a = evaluate({"y_true": y, "y_pred": [0, 1, 0, 0], "y_pred_proba": p})
    b = evaluate(y, [0, 1, 0, 0], y_proba=p)
    c = evaluate({"y_true": y, "y_proba": p})
    assert a.metrics == b.metrics == c.metrics
    assert a.confusion == c.confusion


def test_dict_form_rejects_unknown_keys_and_duplicates():
    with pytest.raises(ValueError, match="unknown keys"):
        evaluate({"y_true": [0, 1], "y_hat": [0, 1]})
    with pytest.raises(ValueError, match="either in the dict or as arguments"):
        evaluate({"y_true": [0, 1], "y_pred": [0, 1]}, [0, 1])


def test_y_pred_derived_from_2d_proba_is_argmax():
    proba = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    ev = evaluate([1, 0, 2, 2], y_proba=proba)
    assert ev.y_pred.tolist() == [1, 0, 2, 1]
    assert ev.metrics["accuracy"] == approx(0.75)


def test_y_pred_derived_from_1d_proba_uses_threshold_half():
    ev = evaluate(["no", "yes", "yes", "no"], y_proba=[0.2, 0.9, 0.4, 0.51])
    assert ev.y_pred.tolist() == ["no", "yes", "no", "yes"]
    assert ev.y_proba == pytest.approx(np.array([[0.8, 0.2], [0.1, 0.9], [0.6, 0.4], [0.49, 0.51]]))
    assert ev.metrics["roc_auc"] == approx(skm.roc_auc_score([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.51]))


def test_explicit_labels_order():
    y_true = ["b", "a", "c", "c", "a"]
    y_pred = ["b", "c", "c", "a", "a"]
    order = ["c", "a", "b"]
    proba = np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.6, 0.2, 0.2], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    ev = evaluate(y_true, y_pred, y_proba=proba, labels=order)
    assert ev.labels == order
    assert ev.confusion == skm.confusion_matrix(y_true, y_pred, labels=order).tolist()
    sorted_cols = proba[:, [order.index(c) for c in ["a", "b", "c"]]]
    assert ev.metrics["roc_auc"] == approx(skm.roc_auc_score(y_true, sorted_cols, multi_class="ovr"))
    assert ev.metrics["log_loss"] == approx(skm.log_loss(y_true, sorted_cols))
    assert [c.label for c in ev.curves[::2]] == order


def test_explicit_labels_binary_positive_is_last():
    ev = evaluate([1, 0, 1, 1], [1, 0, 0, 1], labels=[1, 0])
    assert ev.metrics["precision"] == approx(skm.precision_score([1, 0, 1, 1], [1, 0, 0, 1], pos_label=0))


def test_explicit_labels_with_class_absent_from_y_true():
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    ev = evaluate([0, 1, 0, 1], y_proba=proba, labels=[0, 1, 2])
    assert ev.task == "multiclass" and "roc_auc" not in ev.metrics  # undefined for class 2
    assert ev.metrics["log_loss"] == approx(skm.log_loss([0, 1, 0, 1], proba, labels=[0, 1, 2]))
    assert [c.label for c in ev.curves] == ["0", "0", "1", "1"]
    assert_plain(ev)


def test_explicit_task():
    assert evaluate([0, 1, 1], [0, 1, 0], task="binary").task == "binary"
    assert evaluate([0, 1, 2], [0, 1, 2], task="multiclass").task == "multiclass"
    assert evaluate([1, 2, 3], [1, 2, 4], task="regression").metrics["mae"] == approx(1 / 3)


def test_bool_labels():
    ev = evaluate(np.array([True, False, True]), np.array([True, True, True]))
    assert ev.labels == [False, True] and ev.metrics["precision"] == approx(2 / 3)


# ------------------------------------------------------------------ bad input


BAD_INPUTS = [
    (dict(y_true=[0, 1, 1], y_pred=[0, 1]), "lengths differ"),
    (dict(y_true=[0, 1, 1], y_proba=[0.1, 0.9]), "lengths differ"),
    (dict(y_true=[0.0, np.nan, 1.0], y_pred=[0, 1, 1]), "y_true contains NaN"),
    (dict(y_true=[0, 1, 1], y_pred=[0.0, np.inf, 1.0]), "y_pred contains NaN or infinite"),
    (dict(y_true=[0, 1], y_proba=[0.2, np.nan]), "y_proba contains NaN"),
    (dict(y_true=pd.Series(["a", None, "b"]), y_pred=["a", "b", "b"]), "y_true contains missing values"),
    (dict(y_true=pd.Series([0, None, 1], dtype="Int64"), y_pred=[0, 1, 1]), "y_true contains NaN"),
    (dict(y_true=[0, 1, 2], y_proba=np.full((3, 2), 0.5)), "y_proba has 2 columns but there are 3 classes"),
    (dict(y_true=[0, 1, 2], y_proba=[0.1, 0.5, 0.9]), "y_proba is 1-D but there are 3 classes"),
    (dict(y_true=[0, 1], y_proba=[1.2, 0.4]), "outside [0, 1]"),
    (dict(y_true=[0, 1], y_proba=[[0.5, -0.1], [0.5, 0.5]]), "outside [0, 1]"),
    (dict(y_true=[0, 1], y_proba=[[0.5, 0.4], [0.5, 0.5]]), "do not sum to 1"),
    (dict(y_true=[0, 1], y_proba=np.zeros((2, 2, 1))), "y_proba must be 1-D or 2-D"),
    (dict(y_true=[1, 1, 1], y_pred=[1, 0, 1]), "y_true has a single class"),
    (dict(y_true=["a", "a"], y_proba=[0.3, 0.6], labels=["a", "b"]), "y_true has a single class"),
    (dict(y_true=[1, 1], y_pred=[1, 1]), "only one class"),
    (dict(y_true=[0, 1, 2], y_pred=[0, 1, 3], labels=[0, 1, 2]), "y_pred has labels missing from labels"),
    (dict(y_true=[0, 1, 5], y_pred=[0, 1, 1], labels=[0, 1]), "y_true has labels missing from labels: [5]"),
    (dict(y_true=[0, 1], y_pred=[0, 1], labels=[0, 1, 1]), "labels has duplicates"),
    (dict(y_true=[], y_pred=[]), "y_true is empty"),
    (dict(y_true=[0, 1, 1]), "y_pred and y_proba are both missing"),
    (dict(y_true=["a", "b"], y_pred=[0, 1]), "mix label types"),
    (dict(y_true=[0, 1], y_pred=[0.2, 0.7]), "y_pred has continuous values"),
    (dict(y_true=[0.5, 1.5, 2.5], y_pred=[0, 1, 2], task="multiclass"), "contradicts task='multiclass'"),
    (dict(y_true=[0, 1, 2], y_pred=[0, 1, 2], task="binary"), "task='binary' contradicts the data"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1, 1], task="multiclass"), "task='multiclass' contradicts the data"),
    (dict(y_true=[0, 1], y_pred=[0, 1], task="ranking"), "unknown task"),
    (dict(y_true=["a", "b"], y_pred=["a", "a"], task="regression"), "must be numeric for a regression task"),
    (dict(y_true=[0.5, 1.5], y_proba=[0.2, 0.7]), "y_proba is not used for a regression task"),
    (dict(y_true=[0.5], y_pred=[0.7]), "at least two samples"),
    (dict(y_true=[[0, 1], [1, 0]], y_pred=[0, 1]), "y_true must be 1-D"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_raises_value_error_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError) as info:
        evaluate(**kwargs)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_negative_zero_probability_ties_with_zero():
    proba = np.array([0.0, -0.0, 0.7, 0.0, 0.3])
    y_true = np.array([0, 1, 1, 0, 0])
    ev = evaluate(y_true, y_proba=proba)
    assert ev.metrics["roc_auc"] == approx(skm.roc_auc_score(y_true, proba))
    assert ev.metrics["average_precision"] == approx(skm.average_precision_score(y_true, proba))


def test_probability_rows_within_tolerance_are_accepted():
    proba = np.array([[0.3, 0.7 + 5e-4], [0.6, 0.4 - 5e-4]])
    assert evaluate([1, 0], y_proba=proba).metrics["roc_auc"] == 1.0


# ------------------------------------------------------------------- curves


def test_thin_curve_keeps_first_and_last():
    x = np.linspace(0, 1, 2000)
    tx, ty = thin_curve(x, x**2)
    assert len(tx) == MAX_CURVE_POINTS and tx[0] == 0.0 and tx[-1] == 1.0 and ty[-1] == 1.0
    assert tx == sorted(tx) and all(type(v) is float for v in tx)
    short = thin_curve(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.7, 1.0]))
    assert short == ([0.0, 0.5, 1.0], [0.0, 0.7, 1.0])


def test_long_curves_are_thinned_to_sklearn_points():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 4000)
    proba = np.clip(rng.normal(0.4 + 0.2 * y_true, 0.2), 0, 1)
    ev = evaluate(y_true, y_proba=proba)
    fpr, tpr, _ = skm.roc_curve(y_true, proba)
    assert len(fpr) > MAX_CURVE_POINTS
    roc = ev.curves[0]
    assert len(roc.x) == MAX_CURVE_POINTS
    assert (roc.x[0], roc.y[0], roc.x[-1], roc.y[-1]) == (fpr[0], tpr[0], fpr[-1], tpr[-1])
    points = set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert all(p in points for p in zip(roc.x, roc.y, strict=True))
    assert roc.auc == approx(skm.roc_auc_score(y_true, proba))  # computed on all rows


def test_curve_is_frozen_dataclass():
    curve = Curve("roc", "1", [0.0, 1.0], [0.0, 1.0], 0.5)
    with pytest.raises(AttributeError):
        curve.auc = 1.0  # type: ignore[misc]


def test_large_input_matches_sklearn():
    rng = np.random.default_rng(1)
    n, k = 20_000, 4  # large enough to take the threaded path
    y_true = rng.integers(0, k, n)
    raw = rng.random((n, k)) + np.eye(k)[y_true]
    proba = raw / raw.sum(axis=1, keepdims=True)
    ev = evaluate(y_true, y_proba=proba)
    assert ev.metrics["roc_auc"] == approx(skm.roc_auc_score(y_true, proba, multi_class="ovr"))
    assert ev.metrics["f1"] == approx(skm.f1_score(y_true, proba.argmax(axis=1), average="macro"))
    assert ev.metrics["log_loss"] == approx(skm.log_loss(y_true, proba))
