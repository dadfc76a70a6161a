"""Metrics of logged predictions, computed with scikit-learn.

:func:`evaluate` validates ``y_true`` / ``y_pred`` / ``y_proba``, infers the task
(binary, multiclass or regression) and returns an :class:`Evaluation`: the metric
values, the confusion matrix, ROC and precision-recall curves and the normalised
arrays that are stored.  Every metric value comes from a scikit-learn function;
this module only validates, encodes and arranges inputs and outputs.

Bad input raises :class:`ValueError` with a one-line message that names the
problem (lengths that differ, NaN, probabilities of the wrong shape, a single
class, unknown labels…).

Notes on speed (1,000,000 rows with probabilities of 10 classes take about 1.3 s
on two cores, most of it in ``roc_curve``/``precision_recall_curve``/
``average_precision_score`` for each class):

* labels are encoded once as small integer codes ``0..k-1`` (in ``labels``
  order) and scikit-learn works on the codes with ``labels=range(k)``; this is
  exact, since the metrics do not depend on how the classes are named;
* each one-vs-rest (score, target) pair is sorted once by score, with the target
  packed into the lowest bit of the score's bit pattern (lossless for the
  non-negative scores that probabilities are), and the sorted arrays are given
  to :func:`sklearn.metrics.roc_curve`, :func:`sklearn.metrics.precision_recall_curve`
  and :func:`sklearn.metrics.average_precision_score`.  These sort their input
  themselves and collapse tied scores, so they return exactly what they return
  on the unsorted arrays, only faster (sorting sorted data is cheap);
* ``roc_auc`` is :func:`sklearn.metrics.auc` of that ROC curve, which is how
  :func:`sklearn.metrics.roc_auc_score` computes it; the multiclass value is
  the unweighted mean over classes, as ``roc_auc_score(multi_class="ovr",
  average="macro")`` does;
* :func:`sklearn.metrics.log_loss` reads only each row's probability of its
  true class, so it is given that column alone (see :func:`_log_loss`): the
  same value at a fraction of the cost for many classes;
* the independent computations run on a small thread pool (NumPy and
  scikit-learn release the GIL in the heavy parts) when there are many rows.

Curves keep at most :data:`MAX_CURVE_POINTS` points (see :func:`thin_curve`);
metric values are always computed on all rows.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn import metrics as skm

__all__ = ["MAX_CURVE_POINTS", "TASKS", "Curve", "Evaluation", "evaluate", "thin_curve"]

#: The tasks :func:`evaluate` knows.
TASKS = ("binary", "multiclass", "regression")
#: A stored curve has at most this many points (see :func:`thin_curve`).
MAX_CURVE_POINTS = 512
#: How far a row of ``y_proba`` may sum from 1.
PROBA_SUM_TOLERANCE = 1e-3
#: Keys accepted in the dict form of :func:`evaluate`'s first argument.
DICT_KEYS = ("y_true", "y_pred", "y_pred_proba", "y_proba")

_PARALLEL_MIN_ROWS = 20_000
_MAX_WORKERS = 4  # each worker holds a few arrays of n floats
_DENSE_RANGE = 1 << 16
_MAX_LISTED = 10


@dataclass(frozen=True)
class Curve:
    """A ROC or precision-recall curve of one (positive) class.

    ``x``/``y`` are false/true positive rates for ``kind == "roc"`` and
    recall/precision for ``kind == "pr"``, in scikit-learn's order, thinned to at
    most :data:`MAX_CURVE_POINTS` points.
    """

    kind: str  #: ``"roc"`` or ``"pr"``
    label: str  #: the positive class, as a string (one-vs-rest for multiclass)
    x: list[float]  #: fpr (roc) or recall (pr)
    y: list[float]  #: tpr (roc) or precision (pr)
    auc: float  #: roc_auc (roc) or average_precision (pr)


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`: metrics plus what is stored."""

    task: str  #: ``"binary"``, ``"multiclass"`` or ``"regression"``
    labels: list[Any]  #: the classes (original values) in ``labels`` order; ``[]`` for regression
    metrics: dict[str, float]  #: metric name -> value (plain, finite floats)
    confusion: list[list[int]] | None  #: rows = true, columns = predicted, in ``labels`` order
    curves: list[Curve]  #: ROC and PR curves (classification with probabilities only)
    y_true: np.ndarray  #: 1-D
    y_pred: np.ndarray  #: 1-D (derived from ``y_proba`` when it was not given)
    y_proba: np.ndarray | None  #: ``(n, n_classes)`` float64 in ``labels`` order, or ``None``


# --------------------------------------------------------------------------- API


def evaluate(
    y_true: Any,
    y_pred: Any = None,
    *,
    y_proba: Any = None,
    labels: Sequence[Any] | None = None,
    task: str | None = None,
) -> Evaluation:
    """Validate predictions and compute their metrics with scikit-learn.

    Parameters
    ----------
    y_true : array-like of shape (n,), or a mapping
        True targets: class labels (ints, strings, bools…) or continuous values.
        A mapping ``{"y_true": …, "y_pred": …, "y_pred_proba": …}`` (or
        ``"y_proba"``) is accepted in place of the separate arguments.
    y_pred : array-like of shape (n,), default=None
        Predicted labels or values.  Derived from ``y_proba`` when missing
        (``argmax``; for 1-D binary probabilities the positive class above 0.5).
    y_proba : array-like of shape (n,) or (n, n_classes), default=None
        Class probabilities, columns in ``labels`` order.  A 1-D array is the
        probability of the positive class (binary only).
    labels : sequence, default=None
        The classes, in the order used for the confusion matrix and the columns
        of ``y_proba``; the positive class of a binary task is ``labels[-1]``.
        Default: the sorted union of the labels in ``y_true`` and ``y_pred``.
    task : {"binary", "multiclass", "regression"}, default=None
        Inferred when ``None``: regression when ``y_true`` (or, with a float
        ``y_true``, ``y_pred``) holds non-integral floats, else binary with two
        classes and multiclass with more.

    Returns
    -------
    Evaluation

    Raises
    ------
    ValueError
        On bad input, with a one-line message naming the problem.
    """
    y_true, y_pred, y_proba = _unpack(y_true, y_pred, y_proba)
    if y_pred is None and y_proba is None:
        raise ValueError("y_pred and y_proba are both missing: pass at least one of them")
    truth = _as_1d(y_true, "y_true")
    pred = None if y_pred is None else _as_1d(y_pred, "y_pred")
    proba = None if y_proba is None else _as_proba(y_proba)
    _check_lengths(truth, pred, proba)
    task = _resolve_task(task, truth, pred, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "regression":
            return _evaluate_regression(truth, pred, proba, labels)
        return _evaluate_classification(task, truth, pred, proba, labels)


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[list[float], list[float]]:
    """Return ``x`` and ``y`` as lists of floats with at most ``max_points`` points.

    A longer curve keeps ``max_points`` evenly spaced points by index, always
    including the first and the last point; a shorter one is kept whole.
    """
    n = len(x)
    if n > max_points:
        idx = np.linspace(0, n - 1, max_points).round().astype(np.intp)
        x, y = np.asarray(x)[idx], np.asarray(y)[idx]
    return np.asarray(x, dtype=float).tolist(), np.asarray(y, dtype=float).tolist()


# ----------------------------------------------------------------- input checks


def _unpack(y_true: Any, y_pred: Any, y_proba: Any) -> tuple[Any, Any, Any]:
    """Resolve the dict form ``{"y_true": …, "y_pred": …, "y_pred_proba": …}``."""
    if not isinstance(y_true, Mapping):
        return y_true, y_pred, y_proba
    unknown = sorted(map(str, set(y_true) - set(DICT_KEYS)))
    if unknown:
        raise ValueError(f"unknown keys in the predictions dict: {unknown}; expected {list(DICT_KEYS)}")
    if "y_true" not in y_true:
        raise ValueError("the predictions dict has no 'y_true' key")
    if "y_pred_proba" in y_true and "y_proba" in y_true:
        raise ValueError("the predictions dict has both 'y_pred_proba' and 'y_proba'")
    if y_pred is not None or y_proba is not None:
        raise ValueError("pass predictions either in the dict or as arguments, not both")
    return y_true["y_true"], y_true.get("y_pred"), y_true.get("y_pred_proba", y_true.get("y_proba"))


def _as_1d(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D array without missing or infinite values."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} has complex values")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if arr.dtype.kind == "O" and _object_isna(arr).any():
        raise ValueError(f"{name} contains missing values (NaN/None)")
    return arr


def _object_isna(arr: np.ndarray) -> np.ndarray:
    """Missing-value mask of an object array (None, NaN, pd.NA, NaT)."""
    import pandas as pd  # only object arrays (strings, mixed) need it

    return np.asarray(pd.isna(arr), dtype=bool)


def _as_proba(values: Any) -> np.ndarray:
    """Return ``y_proba`` as a finite float64 array of 1 or 2 dimensions in [0, 1]."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("y_proba must hold numbers (probabilities)") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2):
        raise ValueError(f"y_proba must be 1-D or 2-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("y_proba is empty")
    if not np.isfinite(arr).all():
        raise ValueError("y_proba contains NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"y_proba has values outside [0, 1] (min {arr.min():g}, max {arr.max():g})")
    return arr


def _check_lengths(truth: np.ndarray, pred: np.ndarray | None, proba: np.ndarray | None) -> None:
    """Raise when the arrays do not have the same number of rows."""
    sizes = {"y_true": len(truth)}
    if pred is not None:
        sizes["y_pred"] = len(pred)
    if proba is not None:
        sizes["y_proba"] = len(proba)
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k} has {v}" for k, v in sizes.items())
        raise ValueError(f"lengths differ: {listed} rows")


# ------------------------------------------------------------------------- task


def _is_continuous(arr: np.ndarray) -> bool:
    """True for a float array with non-integral values."""
    return arr.dtype.kind == "f" and bool((arr != np.floor(arr)).any())


def _infer_regression(truth: np.ndarray, pred: np.ndarray | None) -> bool:
    """Regression when ``y_true`` is continuous, or is float and ``y_pred`` is continuous."""
    if _is_continuous(truth):
        return True
    return truth.dtype.kind == "f" and pred is not None and _is_continuous(pred)


def _resolve_task(task: str | None, truth: np.ndarray, pred: np.ndarray | None, labels: Any) -> str | None:
    """Return ``"regression"``, the explicit classification task, or ``None`` (decided by class count)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    if task == "regression":
        return task
    if task is None and labels is None and _infer_regression(truth, pred):
        return "regression"
    context = f"task={task!r}" if task else "a classification task (labels were given)"
    if _is_continuous(truth):
        raise ValueError(f"y_true has continuous values, which contradicts {context}")
    if pred is not None and _is_continuous(pred):
        message = "y_pred has continuous values for a classification task; pass probabilities as y_proba"
        raise ValueError(message)
    return task


# ------------------------------------------------------------------- regression


def _evaluate_regression(truth: np.ndarray, pred: np.ndarray | None, proba: Any, labels: Any) -> Evaluation:
    """MAE, RMSE and R² of continuous predictions."""
    if labels is not None:
        raise ValueError("labels are not used for a regression task")
    if proba is not None:
        raise ValueError("y_proba is not used for a regression task")
    if pred is None:
        raise ValueError("a regression task needs y_pred")
    truth, pred = _numeric(truth, "y_true"), _numeric(pred, "y_pred")
    if len(truth) < 2:
        raise ValueError("regression metrics need at least two samples")
    metrics = {
        "mae": skm.mean_absolute_error(truth, pred),
        "rmse": skm.root_mean_squared_error(truth, pred),
        "r2": skm.r2_score(truth, pred),
    }
    return Evaluation("regression", [], _floats(metrics), None, [], truth, pred, None)


def _numeric(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as float64, for regression."""
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric for a regression task, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


# --------------------------------------------------------------- classification


@dataclass(frozen=True)
class _Encoded:
    """Classes and the integer codes of ``y_true`` / ``y_pred`` in ``classes`` order."""

    classes: list[Any]
    true: np.ndarray
    pred: np.ndarray | None
    true_classes: list[Any]  #: the distinct values of ``y_true``


def _evaluate_classification(
    task: str | None, truth: np.ndarray, pred: np.ndarray | None, proba: np.ndarray | None, labels: Any
) -> Evaluation:
    """Binary or multiclass metrics, confusion matrix and curves."""
    enc = _encode(truth, pred, labels)
    k = len(enc.classes)
    task = _classification_task(task, enc, labels is not None)
    if proba is not None:
        proba = _check_proba_shape(proba, enc.classes, task)
    if enc.pred is not None:
        codes_pred = enc.pred
    elif proba is not None:
        codes_pred = proba.argmax(axis=1).astype(enc.true.dtype)
    else:
        raise ValueError("pass y_pred or y_proba")
    results = _run(_classification_jobs(task, enc.true, codes_pred, proba, k), len(truth))
    metrics, confusion, curves = _collect(task, results, enc.classes, k)
    y_pred = pred if pred is not None else _decode(codes_pred, enc.classes, truth)
    return Evaluation(task, enc.classes, metrics, confusion, curves, truth, y_pred, proba)


def _classification_task(task: str | None, enc: _Encoded, explicit_labels: bool) -> str:
    """Check the number of classes and return the task."""
    k = len(enc.classes)
    if k < 2:
        raise ValueError(f"only one class ({enc.classes[0]!r}): classification metrics need two")
    if len(enc.true_classes) < 2:
        only = enc.true_classes[0]
        raise ValueError(f"y_true has a single class ({only!r}): classification metrics need two")
    inferred = "binary" if k == 2 else "multiclass"
    if task is not None and task != inferred:
        hint = "" if explicit_labels else "; pass labels= to list every class"
        raise ValueError(f"task={task!r} contradicts the data: {k} classes {_listed(enc.classes)}{hint}")
    return inferred


def _encode(truth: np.ndarray, pred: np.ndarray | None, labels: Any) -> _Encoded:
    """Encode ``y_true`` and ``y_pred`` as codes ``0..k-1`` of the class list."""
    uniq_true, inv_true = _factorize(truth)
    uniq_pred, inv_pred = _factorize(pred) if pred is not None else ([], None)
    classes = _class_list(labels, uniq_true, uniq_pred)
    index = {label: i for i, label in enumerate(classes)}
    dtype = np.uint8 if len(classes) <= 255 else np.int32
    codes_true = _codes(uniq_true, inv_true, index, dtype, "y_true")
    codes_pred = None if inv_pred is None else _codes(uniq_pred, inv_pred, index, dtype, "y_pred")
    return _Encoded(classes, codes_true, codes_pred, uniq_true)


def _factorize(arr: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Distinct values (as Python objects) and the index of each row into them."""
    if arr.dtype.kind == "O":
        import pandas as pd  # hashing is much faster than sorting Python objects

        codes, uniques = pd.factorize(arr)
        return list(uniques), codes
    if arr.dtype.kind in "iu" and _small_range(arr):
        return _factorize_dense(arr)
    uniques, inverse = np.unique(arr, return_inverse=True)
    return uniques.tolist(), inverse


def _small_range(arr: np.ndarray) -> bool:
    """True for integers within a span of :data:`_DENSE_RANGE` that fit a signed 64-bit int."""
    low, high = int(arr.min()), int(arr.max())
    return high - low <= _DENSE_RANGE and low > -(2**62) and high < 2**62


def _factorize_dense(arr: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """:func:`_factorize` for integers spanning a small range, by counting instead of sorting."""
    low = int(arr.min())
    offsets = arr.astype(np.intp) - low
    present = np.flatnonzero(np.bincount(offsets))
    lookup = np.zeros(len(present) and int(present[-1]) + 1, dtype=np.intp)
    lookup[present] = np.arange(len(present))
    return (present + low).tolist(), lookup[offsets]


def _class_list(labels: Any, uniq_true: list[Any], uniq_pred: list[Any]) -> list[Any]:
    """The given ``labels`` (validated), or the sorted union of the labels seen."""
    if labels is None:
        try:
            return sorted(set(uniq_true) | set(uniq_pred))
        except TypeError:
            raise ValueError("y_true and y_pred mix label types (e.g. strings and numbers)") from None
    given = [v.item() if isinstance(v, np.generic) else v for v in np.asarray(labels, dtype=object).tolist()]
    if np.ndim(labels) != 1 or not given:
        raise ValueError("labels must be a non-empty 1-D sequence of class labels")
    if len(set(given)) != len(given):
        raise ValueError(f"labels has duplicates: {_listed(given)}")
    return given


def _codes(uniques: list[Any], inverse: np.ndarray, index: dict[Any, int], dtype: type, name: str) -> np.ndarray:
    """Map factorized values to class codes, rejecting labels that are not classes."""
    unknown = [u for u in uniques if u not in index]
    if unknown:
        raise ValueError(f"{name} has labels missing from labels: {_listed(unknown)}")
    lookup: np.ndarray = np.fromiter((index[u] for u in uniques), dtype=dtype, count=len(uniques))
    codes: np.ndarray = lookup[inverse]
    return codes


def _decode(codes: np.ndarray, classes: list[Any], truth: np.ndarray) -> np.ndarray:
    """Class values of ``codes``, with ``y_true``'s dtype where it can hold them."""
    lookup = np.array(classes, dtype=object) if truth.dtype.kind == "O" else np.asarray(classes)
    values: np.ndarray = lookup[codes]
    return values


def _check_proba_shape(proba: np.ndarray, classes: list[Any], task: str) -> np.ndarray:
    """Return ``y_proba`` as ``(n, k)``: 1-D only if binary, one column per class, rows summing to 1."""
    k = len(classes)
    if proba.ndim == 1:
        if task != "binary":
            raise ValueError(f"y_proba is 1-D but there are {k} classes: pass an (n, {k}) array")
        return np.column_stack([1.0 - proba, proba])
    if proba.shape[1] != k:
        raise ValueError(
            f"y_proba has {proba.shape[1]} columns but there are {k} classes {_listed(classes)}; "
            "pass labels= to name the columns"
        )
    deviation = float(np.abs(proba.sum(axis=1) - 1.0).max())
    if deviation > PROBA_SUM_TOLERANCE:
        raise ValueError(f"y_proba rows do not sum to 1 (largest deviation {deviation:.3g})")
    return proba


# -------------------------------------------------------------- the computations


Job = Callable[[], dict[str, Any]]


def _classification_jobs(task: str, true: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, k: int) -> list[Job]:
    """The independent scikit-learn computations of a classification task, as jobs."""
    every = np.arange(k)
    jobs: list[Job] = [
        lambda: {"metrics": {"accuracy": skm.accuracy_score(true, pred)}},
        lambda: {"confusion": skm.confusion_matrix(true, pred, labels=every).tolist()},
    ]
    if task == "binary":
        jobs.append(lambda: _prf(true, pred, every, "binary", ""))
    else:
        jobs.append(lambda: _prf(true, pred, every, "macro", ""))
        jobs.append(lambda: _prf(true, pred, every, "weighted", "_weighted"))
    if proba is not None:
        jobs.append(lambda: {"metrics": {"log_loss": _log_loss(true, proba)}})
        jobs.extend(_curve_job(true, proba, code) for code in _curve_classes(task, true, k))
    return jobs


def _prf(true: np.ndarray, pred: np.ndarray, every: np.ndarray, average: str, suffix: str) -> dict[str, Any]:
    """Precision, recall and F1 with the given averaging (``"binary"``: code 1 is positive)."""
    p, r, f, _ = skm.precision_recall_fscore_support(
        true, pred, labels=every, pos_label=1, average=average, zero_division=0
    )
    return {"metrics": {f"precision{suffix}": p, f"recall{suffix}": r, f"f1{suffix}": f}}


def _log_loss(true: np.ndarray, proba: np.ndarray) -> float:
    """scikit-learn's log loss, given only what it reads.

    It clips each probability and sums ``t * log(p)`` over a one-hot row, so a
    row's loss is the log of its true class's probability alone. A two-column
    matrix of that probability (true class 1) gives it exactly the same value,
    for a fraction of the work when there are many classes.
    """
    if proba.shape[1] > 2:
        p_true = proba[np.arange(len(true)), true]
        proba, true = np.column_stack([1.0 - p_true, p_true]), np.ones(len(true), dtype=np.uint8)
    return float(skm.log_loss(true, proba, labels=[0, 1]))


def _curve_classes(task: str, true: np.ndarray, k: int) -> list[int]:
    """Codes of the classes that get curves: the positive class, or each class present in y_true."""
    if task == "binary":
        return [1]
    counts = np.bincount(true, minlength=k)
    return [code for code in range(k) if counts[code] > 0]


def _curve_job(true: np.ndarray, proba: np.ndarray, code: int) -> Job:
    """A job computing the one-vs-rest curves of class ``code``."""
    return lambda: {"curve": _class_curves(true == code, proba[:, code], code)}


def _class_curves(target: np.ndarray, scores: np.ndarray, code: int) -> dict[str, Any]:
    """ROC curve with its AUC, PR curve with the average precision, of one class."""
    sorted_target, sorted_scores = _sort_descending(target, scores)
    fpr, tpr, _ = skm.roc_curve(sorted_target, sorted_scores, drop_intermediate=True)
    precision, recall, _ = skm.precision_recall_curve(sorted_target, sorted_scores, drop_intermediate=True)
    ap = skm.average_precision_score(sorted_target, sorted_scores)
    return {"code": code, "roc": (fpr, tpr, skm.auc(fpr, tpr)), "pr": (recall, precision, ap)}


def _sort_descending(target: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort (target, score) pairs by decreasing score with one value sort.

    The scores are non-negative floats, whose bit patterns sort like their
    values and leave the sign bit clear: shifted left by one, they free the
    lowest bit for the 0/1 target, so sorting the packed ``uint64`` keys sorts
    the pairs exactly (a ``-0.0`` score comes back as ``0.0``).
    """
    keys = scores.view(np.uint64) << np.uint64(1)
    keys |= target
    keys.sort()
    sorted_target = keys.astype(np.uint8)
    sorted_target &= 1
    keys >>= np.uint64(1)
    return sorted_target[::-1], keys.view(np.float64)[::-1]


def _run(jobs: list[Job], rows: int) -> list[dict[str, Any]]:
    """Run the jobs, on a thread pool when the input is big, and return their results in order."""
    workers = min(len(jobs), _cpus(), _MAX_WORKERS)
    if workers < 2 or rows < _PARALLEL_MIN_ROWS:
        return [_fast(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_fast, jobs))


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fast(job: Job) -> dict[str, Any]:
    """Run one job, skipping the scikit-learn checks that :func:`evaluate` already made."""
    with config_context(assume_finite=True, skip_parameter_validation=True):
        return job()


# ---------------------------------------------------------------------- results


def _collect(
    task: str, results: list[dict[str, Any]], classes: list[Any], k: int
) -> tuple[dict[str, float], list[list[int]], list[Curve]]:
    """Merge the jobs' results into metrics, confusion matrix and curves."""
    metrics: dict[str, Any] = {}
    confusion: list[list[int]] = []
    found = []
    for part in results:
        metrics.update(part.get("metrics", {}))
        confusion = part.get("confusion", confusion)
        if "curve" in part:
            found.append(part["curve"])
    if found:
        metrics.update(_ranking_metrics(task, found, k))
    curves = [curve for part in found for curve in _as_curves(part, str(classes[part["code"]]))]
    return _floats(metrics), confusion, curves


def _ranking_metrics(task: str, found: list[dict[str, Any]], k: int) -> dict[str, float]:
    """``roc_auc`` (and ``average_precision`` for binary) from the per-class curves.

    The multiclass ``roc_auc`` is the unweighted mean of the one-vs-rest AUCs, as in
    ``roc_auc_score(multi_class="ovr", average="macro")``; it is left out when a class
    is absent from ``y_true`` (its AUC is undefined).
    """
    if task == "binary":
        return {"roc_auc": found[0]["roc"][2], "average_precision": found[0]["pr"][2]}
    if len(found) < k:
        return {}
    return {"roc_auc": float(np.mean([part["roc"][2] for part in found]))}


def _as_curves(part: dict[str, Any], label: str) -> list[Curve]:
    """The ROC and PR :class:`Curve` of one class, thinned."""
    fpr, tpr, roc_auc = part["roc"]
    recall, precision, ap = part["pr"]
    return [
        Curve("roc", label, *thin_curve(fpr, tpr), float(roc_auc)),
        Curve("pr", label, *thin_curve(recall, precision), float(ap)),
    ]


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metric values as plain Python floats; raise on a non-finite one."""
    out = {name: float(value) for name, value in metrics.items()}
    bad = [name for name, value in out.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"metrics {bad} are not finite for this input")
    return out


def _listed(values: Sequence[Any]) -> str:
    """``values`` for an error message, shortened after a few items."""
    shown = ", ".join(repr(v) for v in list(values)[:_MAX_LISTED])
    more = f", … ({len(values)} in all)" if len(values) > _MAX_LISTED else ""
    return f"[{shown}{more}]"
