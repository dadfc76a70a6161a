"""What a scikit-learn fit was: the estimator, its params, its data, its size and what it learned.

``describe_call`` reads what the fit was given (before it runs: its data) and
``describe_fitted`` what it made (after: params, size, importances, a search's
results). Both are cheap — no copy of the data, no pickling of the model — and
never fail: a value they cannot read is left empty (the fit is the user's, the
record is ours).

The data fingerprint (``data_fingerprint``) is the BLAKE2b hash (16 bytes, hex)
of: for X and for y, in that order, the type name, the shape, the dtypes (per
column for a DataFrame), the column names of a DataFrame or Series, and the
values of a fixed sample of rows — at most 64 rows, evenly spaced from the first
to the last (``numpy.linspace``), taken as a NumPy array (a sparse matrix's rows
as its stored values and their indices). Two fits on the same data get the same
fingerprint; a change in a sampled row, in the shape, a dtype or a column name
changes it; a change in a row outside the sample does not.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

#: Rows of X and y sampled into the fingerprint.
SAMPLE_ROWS = 64
#: Feature names kept per fit.
MAX_FEATURE_NAMES = 100
#: Importances or coefficients kept per fit (largest magnitude first).
MAX_TOP_FEATURES = 50
#: Candidates of a search whose results are kept.
MAX_CANDIDATES = 5000
#: Characters of a param that is neither a number, a string nor a boolean (kept as its repr).
REPR_CHARS = 200
#: Search classes whose results are kept (by class name: no import of scikit-learn here).
SEARCHES = ("GridSearchCV", "RandomizedSearchCV", "HalvingGridSearchCV", "HalvingRandomSearchCV")


def qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the data -------------------------------------------------------------------------


def _shape(data: Any) -> tuple[int, ...] | None:
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple):
        return tuple(int(n) for n in shape)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        first = data[0] if len(data) else None
        if isinstance(first, Sequence) and not isinstance(first, str | bytes):
            return (len(data), len(first))
        return (len(data),)
    return None


def _columns(data: Any) -> list[str] | None:
    columns = getattr(data, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    name = getattr(data, "name", None) if hasattr(data, "dtype") and hasattr(data, "index") else None
    return None if name is None else [str(name)]


def _sample(data: Any, n_rows: int) -> bytes:
    """The values of a fixed sample of rows, as bytes."""
    import numpy as np

    if n_rows <= 0:
        return b""
    rows = np.unique(np.linspace(0, n_rows - 1, min(SAMPLE_ROWS, n_rows)).astype(np.int64))
    if hasattr(data, "iloc"):  # pandas
        values = data.iloc[rows].to_numpy()
    elif hasattr(data, "tocsr"):  # scipy sparse
        part = data.tocsr()[rows]
        return bytes(np.ascontiguousarray(part.data)) + bytes(np.ascontiguousarray(part.indices))
    elif hasattr(data, "__array__") or isinstance(data, np.ndarray):
        values = np.asarray(data)[rows]
    else:
        values = np.asarray([data[int(i)] for i in rows], dtype=object)
    if values.dtype == object:
        return repr(values.tolist()).encode("utf-8", "replace")
    return bytes(np.ascontiguousarray(values))


def _feed(h: Any, data: Any) -> None:
    shape = _shape(data)
    h.update(type(data).__name__.encode())
    h.update(repr(shape).encode())
    dtypes = getattr(data, "dtypes", None)
    dtype = getattr(data, "dtype", None)
    types = [str(d) for d in dtypes] if dtypes is not None and hasattr(dtypes, "__iter__") else str(dtype)
    h.update(repr(types).encode())
    h.update(repr(_columns(data)).encode())
    if shape:
        h.update(_sample(data, shape[0]))


def fingerprint(X: Any, y: Any = None) -> str | None:
    """The data fingerprint of X and y (see the module docs); None when X cannot be read."""
    try:
        h = hashlib.blake2b(digest_size=16)
        _feed(h, X)
        h.update(b"|y|")
        if y is not None:
            _feed(h, y)
        return h.hexdigest()
    except Exception:  # noqa: BLE001 - the user's data, of any type: no fingerprint rather than a failed fit
        return None


def describe_call(args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``n_samples, n_features, data_fingerprint`` (and the X for feature names) of a fit's arguments."""
    X = args[0] if args else kwargs.get("X", kwargs.get("raw_documents"))
    y = args[1] if len(args) > 1 else kwargs.get("y")
    out: dict[str, Any] = {}
    if X is None:
        return out
    try:
        shape = _shape(X)
    except Exception:  # noqa: BLE001 - a container whose length cannot be read
        shape = None
    if shape:
        out["n_samples"] = shape[0]
        out["n_features"] = shape[1] if len(shape) > 1 else None
    out["data_fingerprint"] = fingerprint(X, y)
    try:
        columns = _columns(X)
    except Exception:  # noqa: BLE001 - columns that cannot be listed
        columns = None
    if columns is not None:
        out["feature_names"] = columns[:MAX_FEATURE_NAMES]
    return out


# -- the estimator --------------------------------------------------------------------


_NO_DEFAULT = object()


_INIT_PARAMS: dict[type, dict[str, Any]] = {}


def _init_params(cls: type) -> dict[str, Any]:
    """*cls*'s ``__init__`` parameters and their defaults (``_NO_DEFAULT`` where required), cached."""
    known = _INIT_PARAMS.get(cls)
    if known is not None:
        return known
    try:
        signature = inspect.signature(cls.__init__)  # type: ignore[misc]  # any class's initialiser
    except (TypeError, ValueError):
        return {}
    known = _INIT_PARAMS[cls] = {
        name: _NO_DEFAULT if p.default is inspect.Parameter.empty else p.default
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    return known


def _json_param(value: Any) -> Any:
    """A param as JSON keeps it: numbers, strings, booleans, None; an estimator as its class; else its repr."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else repr(f)
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 1] + "…"


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    numeric = not isinstance(value, bool) and isinstance(value, numbers.Real) and isinstance(default, numbers.Real)
    if type(value) is not type(default) and not numeric:
        return False
    try:
        return bool(value == default)
    except Exception:  # noqa: BLE001 - arrays and the like: compared by identity only
        return False


def non_default_params(estimator: Any) -> dict[str, Any]:
    """``get_params(deep=True)`` keys whose values differ from their class's defaults, as JSON values.

    A nested estimator's params are compared with the defaults of its own class
    (``logisticregression__C``); an estimator given as a param (``estimator=SVC()``)
    is kept as its class name unless it is the default's class; a pipeline's
    steps are not params (their params are there, one by one).
    """
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # noqa: BLE001 - an estimator of the user's whose get_params fails
        return {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        owner, _, name = key.rpartition("__")
        holder = params.get(owner) if owner else estimator
        init = _init_params(type(holder)) if holder is not None else {}
        if name not in init or name in ("steps", "transformers"):
            continue  # a step by its name, or the list of steps
        default = init[name]
        if hasattr(value, "get_params") and hasattr(value, "fit"):
            if default is not _NO_DEFAULT and type(value) is type(default):
                continue
        elif default is not _NO_DEFAULT and _is_default(value, default):
            continue
        out[key] = _json_param(value)
    return out


_NODE_BYTES = 64  #: one node of a scikit-learn tree (8 fields of 8 bytes)


def model_bytes(estimator: Any, depth: int = 0) -> int:
    """The bytes of the fitted arrays (attributes ending in ``_``), nested estimators and trees included."""
    import numpy as np

    if depth > 4:
        return 0
    total = 0
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):  # a pipeline's steps carry no "_": they are what it learned
        total += sum(model_bytes(step, depth + 1) for _, step in steps if hasattr(step, "get_params"))
    attributes = getattr(estimator, "__dict__", {})
    for key, value in attributes.items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        total += _value_bytes(value, depth, np)
    return total


def _value_bytes(value: Any, depth: int, np: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "node_count") and hasattr(value, "value"):  # sklearn.tree._tree.Tree
        return int(value.node_count) * _NODE_BYTES + int(value.value.nbytes)
    if hasattr(value, "get_params"):
        return model_bytes(value, depth + 1)
    if isinstance(value, list | tuple):
        return sum(_value_bytes(v, depth + 1, np) for v in value[:10000])
    return 0


def _final(estimator: Any) -> Any:
    """The estimator that learned the features: a search's best, a pipeline's last step."""
    best = getattr(estimator, "best_estimator_", None)
    if best is not None:
        estimator = best
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        estimator = steps[-1][1]
    return estimator


def top_features(estimator: Any, names: Sequence[str] | None) -> list[list[Any]] | None:
    """``[[feature, value], …]``: importances, else coefficients (mean magnitude over classes), largest first."""
    import numpy as np

    final = _final(estimator)
    values = getattr(final, "feature_importances_", None)
    if values is None:
        coef = getattr(final, "coef_", None)
        if coef is None:
            return None
        coef = np.asarray(coef, dtype=float)
        values = np.abs(coef).mean(axis=0) if coef.ndim == 2 and coef.shape[0] > 1 else coef.ravel()
    values = np.asarray(values, dtype=float).ravel()
    feature_names = getattr(final, "feature_names_in_", None)
    if feature_names is None:
        feature_names = names if names is not None and len(names) == len(values) else None
    labels = [str(n) for n in feature_names] if feature_names is not None else [f"x{i}" for i in range(len(values))]
    if len(labels) != len(values):
        return None
    order = np.argsort(-np.abs(values), kind="stable")[:MAX_TOP_FEATURES]
    return [[labels[i], float(values[i])] for i in order]


def _json_cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Mapping):
        return {str(k): _json_param(v) for k, v in value.items()}
    return _json_param(value)


def search_results(estimator: Any) -> dict[str, Any] | None:
    """A search's ``best_params``, ``best_score``, ``n_candidates`` and ``cv_results_`` as plain lists."""
    results = getattr(estimator, "cv_results_", None)
    if type(estimator).__name__ not in SEARCHES or not isinstance(results, Mapping):
        return None
    table: dict[str, list[Any]] = {}
    n = 0
    for key, column in results.items():
        values = list(column)[:MAX_CANDIDATES]
        mask = getattr(column, "mask", None)
        ndim: Any = getattr(mask, "ndim", None)
        masked = list(mask)[:MAX_CANDIDATES] if mask is not None and ndim else None
        table[str(key)] = [None if masked and masked[i] else _json_cell(v) for i, v in enumerate(values)]
        n = max(n, len(column))
    best_score = getattr(estimator, "best_score_", None)
    return {
        "best_params": {str(k): _json_param(v) for k, v in (getattr(estimator, "best_params_", None) or {}).items()},
        "best_score": _json_cell(best_score),
        "n_candidates": n,
        "search_results": table,
    }


def describe_fitted(estimator: Any, call: Mapping[str, Any], *, params: bool = True) -> dict[str, Any]:
    """What the fit made: params (unless *params* is False: read at the fit), ``model_bytes``,
    ``top_features``, the search's results."""
    out: dict[str, Any] = {"estimator": qualified_name(estimator)}
    if params:
        out["params"] = non_default_params(estimator)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        out["feature_names"] = [str(n) for n in list(names)[:MAX_FEATURE_NAMES]]
    for key, compute in (
        ("model_bytes", lambda: model_bytes(estimator)),
        ("top_features", lambda: top_features(estimator, call.get("feature_names"))),
    ):
        try:
            out[key] = compute()
        except Exception:  # noqa: BLE001 - left empty: the fit is the user's, the record is ours
            out[key] = None
    try:
        search = search_results(estimator)
    except Exception:  # noqa: BLE001 - results of an unexpected shape
        search = None
    if search is not None:
        out.update(search)
    return out


__all__ = [
    "describe_call",
    "describe_fitted",
    "fingerprint",
    "model_bytes",
    "non_default_params",
    "qualified_name",
    "search_results",
    "top_features",
]
