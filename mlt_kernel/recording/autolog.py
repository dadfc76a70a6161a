"""scikit-learn fits recorded with no code: one ``fits`` row per outermost ``fit``.

Nothing happens until scikit-learn is imported: a ``core.imports.PostImportFinder``
on ``sys.meta_path`` sees each ``sklearn.*`` module as it is imported and, once
the module has run, autolog wraps the ``fit``, ``fit_transform`` and ``fit_predict``
that its estimator classes define (modules imported before autolog was turned
on are wrapped when it is). A wrapped method called inside another wrapped call
(a pipeline's steps, a search's refits, a forest's trees) only runs: the
outermost call is the fit. Around it: the clocks, an exact peak (a scope of
``hooks.memory.Peaks``), the data (``tracking.fits.describe_call``) and, after
it, the fitted estimator (``describe_fitted``). The exception of a fit that
fails reaches the user unchanged; its row says ``error``.

Inside a run, the estimator's class goes into the run's params as ``model``
and its non-default params join them, unless the directive or ``log_params``
set the same key (what the user wrote wins).
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from mlt_kernel.core import layout
from mlt_kernel.core.imports import PostImportFinder
from mlt_kernel.core.schema import FITS
from mlt_kernel.store.journal import now_us
from mlt_kernel.tracking import fits


class FitSession(Protocol):
    """What autolog needs of the recorder."""

    session_id: str
    peaks: Any  #: ``hooks.memory.Peaks`` or None

    @property
    def log(self) -> Any: ...

    @property
    def run(self) -> Any: ...

    @property
    def pending_cell(self) -> dict[str, Any] | None: ...

    def write(self, table: str, record: dict[str, Any]) -> Any: ...

    def auto_params(self, run: Any, params: dict[str, Any]) -> None: ...


#: The methods that fit; ``partial_fit`` is a step of a fit the user drives, not one.
FIT_METHODS = ("fit", "fit_transform", "fit_predict")
_WRAPPED = "__mlt_autolog__"
#: Fits kept for completion after the cell: more (a loop of small fits) are written at once.
MAX_PENDING = 200


def _wrap_class(cls: type, call: Callable[..., Any]) -> None:
    for name in FIT_METHODS:
        attr = cls.__dict__.get(name)
        if inspect.isfunction(attr) and not getattr(attr, _WRAPPED, False):
            setattr(cls, name, _wrapper(attr, name, call))
        elif type(attr).__name__ == "_AvailableIfDescriptor":  # a method offered only when a step has it
            fn = getattr(attr, "fn", None)
            if inspect.isfunction(fn) and not getattr(fn, _WRAPPED, False):
                setattr(attr, "fn", _wrapper(fn, name, call))  # noqa: B010 - an attribute of sklearn's descriptor


def _wrapper(method: Callable[..., Any], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves this frame out of a failed fit's traceback
        return call(method, name, self, args, kwargs)

    setattr(fit, _WRAPPED, True)
    return fit


class Autolog:
    """Records the outermost scikit-learn fits of a session into its ``fits`` table."""

    def __init__(self, recorder: FitSession) -> None:
        self.recorder = recorder
        self.enabled = False
        self._finder: PostImportFinder | None = None
        self._depth = threading.local()
        self._base: type | None = None
        #: Fits whose rows are completed and written after the cell's reply: ``[row, estimator, call]``.
        self._pending: list[list[Any]] = []

    # -- turning it on and off ----------------------------------------------------------
    def enable(self, on: bool = True) -> None:
        """Install the import hook (once) and wrap what is already imported; ``False`` pauses recording."""
        self.enabled = on
        if not on or self._finder is not None:
            return
        self._finder = PostImportFinder(_is_sklearn, self._loaded).install()
        for name, module in list(sys.modules.items()):
            if _is_sklearn(name) and module is not None:
                self._loaded(module)

    def close(self) -> None:
        self.flush()
        self.enabled = False
        if self._finder is not None:
            self._finder.uninstall()

    def _loaded(self, module: ModuleType) -> None:
        """Wrap the fit methods of the estimator classes *module* defines."""
        try:
            if self._base is None:
                base = sys.modules.get("sklearn.base")
                self._base = getattr(base, "BaseEstimator", None)
            base_cls = self._base
            if base_cls is None:
                return
            for value in list(vars(module).values()):
                if isinstance(value, type) and value.__module__ == module.__name__ and issubclass(value, base_cls):
                    _wrap_class(value, self._call)
        except Exception:
            self.recorder.log.exception("MLTrack: autolog could not look at %s", getattr(module, "__name__", module))

    # -- a fit ------------------------------------------------------------------------------
    def _call(self, method: Callable[..., Any], name: str, estimator: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        __tracebackhide__ = True
        depth = getattr(self._depth, "n", 0)
        rec = self.recorder
        # Fits in other threads (a search's workers under joblib's threading backend) are parts of one.
        other_thread = threading.current_thread() is not threading.main_thread()
        if depth or other_thread or not self.enabled or rec.pending_cell is None or _internal(sys._getframe(2)):
            self._depth.n = depth + 1
            try:
                return method(estimator, *args, **kwargs)
            finally:
                self._depth.n = depth
        for pending in self._pending:
            if pending[1] is estimator:  # what its last fit made, read before this fit changes it
                self._complete(pending)
        try:
            started = self._start(args, kwargs)
        except Exception:
            rec.log.exception("MLTrack: autolog could not record a fit")
            started = None
        self._depth.n = 1
        try:
            result = method(estimator, *args, **kwargs)
        except BaseException as exc:
            self._depth.n = 0
            self._finish(started, estimator, name, exc)
            raise
        self._depth.n = 0
        self._finish(started, estimator, name, None)
        return result

    def _start(self, args: tuple[Any, ...], kwargs: Any) -> dict[str, Any]:
        peaks = self.recorder.peaks
        begun = peaks.begin() if peaks is not None else None
        return {
            "call": fits.describe_call(args, kwargs),
            "started_at": now_us(),
            "token": begun[0] if begun is not None else None,
            "rss_start_bytes": peaks.start_value(begun[0]) if peaks is not None and begun is not None else None,
            "clocks": (time.perf_counter(), time.process_time()),
        }

    def _finish(self, started: dict[str, Any] | None, estimator: Any, name: str, exc: BaseException | None) -> None:
        if started is None:
            return
        try:
            wall0, cpu0 = started["clocks"]
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            peaks = self.recorder.peaks
            peak = peaks.end(started["token"]) if peaks is not None and started["token"] is not None else None
            rec = self.recorder
            run = rec.run
            cell = rec.pending_cell or {}
            row: dict[str, Any] = {
                "fit_id": layout.new_writer_id(),
                "session_id": rec.session_id,
                "cell_seq": cell.get("cell_seq"),
                "run_id": run.run_id if run is not None else None,
                "method": name,
                "started_at": started["started_at"],
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_bytes": peak,
                "rss_start_bytes": started["rss_start_bytes"],
                "status": "ok" if exc is None else "error",
                "error_name": None if exc is None else type(exc).__name__,
                **started["call"],
                # Read now: a later set_params on the same object must not change this fit's row.
                "params": fits.non_default_params(estimator),
            }
            if run is not None and exc is None:
                rec.auto_params(run, {"model": type(estimator).__name__, **_plain(row["params"])})
            # The rest (size, importances, a search's results: a forest's importances take ms)
            # and the write wait for the cell's reply to have gone (``flush``).
            self._pending.append([row, estimator, started["call"]])
            if len(self._pending) >= MAX_PENDING:
                self.flush()
        except Exception:
            self.recorder.log.exception("MLTrack: autolog could not record a fit")

    def _complete(self, pending: list[Any]) -> None:
        """Read what a fit made into its row (once); the estimator is let go."""
        row, estimator, call = pending
        if estimator is None:
            return
        try:
            row.update(fits.describe_fitted(estimator, call, params=False))
        except Exception:
            self.recorder.log.exception("MLTrack: autolog could not describe a fit")
        pending[1] = None

    def flush(self) -> None:
        """Complete and write the rows of the fits made since the last flush."""
        pending, self._pending = self._pending, []
        for entry in pending:
            self._complete(entry)
            try:
                self.recorder.write(FITS.name, entry[0])
            except Exception:
                self.recorder.log.exception("MLTrack: autolog could not record a fit")


#: Modules between a fit's caller and the fit: not the caller.
_PASSING = ("sklearn.utils._available_if", "functools")


def _internal(frame: Any) -> bool:
    """Whether the fit's caller is scikit-learn itself (a metric fitting a ``LabelBinarizer``) or
    MLTrack (``log_predictions``): such a fit is a detail of a function, not the user's fit."""
    while frame is not None and frame.f_globals.get("__name__") in _PASSING:
        frame = frame.f_back
    name = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    return _is_sklearn(name) or name == "mlt_kernel" or name.startswith("mlt_kernel.")


def _is_sklearn(name: str) -> bool:
    return name == "sklearn" or name.startswith("sklearn.")


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """The params a run's params can hold: strings, numbers, booleans, None."""
    return {k: v for k, v in params.items() if v is None or isinstance(v, str | int | float | bool)}


__all__ = ["FIT_METHODS", "Autolog"]
