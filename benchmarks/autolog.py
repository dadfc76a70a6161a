"""Cost of MLTrack's scikit-learn autolog per fit, and of its parts (fingerprint, bookkeeping).

Three parts, in one run:

1. Per-fit overhead, like for like. One MLTrack kernel (started with
   jupyter_client, ``EXP_PATH`` set to a temporary folder in its first cell)
   fits the same estimator on the same data over and over in one cell loop,
   autolog on and off (``mlt.autolog(True)`` / ``mlt.autolog(False)``) fit by
   fit, in pairs whose order alternates (on-off, off-on, …) so that machine
   noise and any after-effect of a fit hit both alike; each fit is timed with
   ``time.perf_counter`` around ``est.fit(X, y)`` inside the cell. Three fit
   sizes: ~1 ms (LogisticRegression, 200 x 10), ~10 ms (a
   Pipeline(StandardScaler, LogisticRegression), 15,000 x 20) and ~1 s
   (RandomForest of 100 trees, 4,000 x 20). The loops run in ordinary recorded
   cells, without ``# mlt: record``: each autologged fit writes its ``fits``
   row to the journal (run_id empty) and no run's params are rewritten. A
   paused fit still passes through autolog's wrapper and its checks, so "off"
   is what a fit costs under ``mlt.autolog(False)``, not an unwrapped
   scikit-learn. Printed per size: median fit time off and on, the overhead as
   the difference of medians and as the median of the per-pair differences
   (with a 95 % bootstrap interval: for the ~1 s fit the noise of the fit
   itself is far larger than the overhead), against the target of the issue,
   0.2 ms of bookkeeping plus the fingerprint of that fit's data (its median,
   called back to back in the kernel). Below that,
   a figure without the fit's noise: autolog's own work per fit
   (``Autolog._start`` and ``_finish``: clocks, memory peak scope,
   ``describe_call``, ``describe_fitted``, the journal write), timed on its own
   inside the same kernel around a real fit of the same estimator (paused, so
   that only ``_finish`` writes a row: caches as cold as in real use), and the
   ``fits`` rows found afterwards, as a check that the "on" fits were recorded.

   BLAS and OpenMP run one thread (``--threads``, set in the environment of the
   kernel and of this process): on a small shared machine, two spinning BLAS
   threads turn any load from elsewhere into fits several times slower, which
   buries a sub-millisecond difference; autolog's work does not depend on it.

2. The fingerprint of a 1,000,000 x 100 float64 X with a y of 1,000,000
   (``tracking.fits.fingerprint(X, y)`` and ``describe_call((X, y), {})``,
   called here, in the benchmark process), median of ``--fingerprint-calls``
   calls, against the target of <= 1 ms; the same X as a pandas DataFrame for
   comparison.

3. The bookkeeping alone, here in the benchmark process: ``describe_call`` and
   ``describe_fitted`` of the three fitted estimators, and the parts of
   ``describe_fitted`` (``non_default_params``, ``model_bytes``,
   ``top_features``), medians over rounds that call each in turn, to show where
   the per-fit overhead goes.

    python benchmarks/autolog.py [--quick] [--pairs-1ms 500] [--pairs-10ms 300] [--pairs-1s 10] [--threads 1]
                                 [--fingerprint-calls 20] [--mltrack-option=…]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.manager import start_new_kernel

#: fit size, short name, the estimator (code run in the kernel and here), rows, features, its recorded class
CASES = (
    (
        "~1 ms",
        "LogisticRegression",
        "LogisticRegression()",
        200,
        10,
        "sklearn.linear_model._logistic.LogisticRegression",
    ),
    (
        "~10 ms",
        "Pipeline(Scaler, LogReg)",
        "make_pipeline(StandardScaler(), LogisticRegression())",
        15_000,
        20,
        "sklearn.pipeline.Pipeline",
    ),
    (
        "~1 s",
        "RandomForest(100 trees)",
        "RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)",
        4_000,
        20,
        "sklearn.ensemble._forest.RandomForestClassifier",
    ),
)
IMPORTS = (
    "from sklearn.datasets import make_classification\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.pipeline import make_pipeline\n"
    "from sklearn.preprocessing import StandardScaler\n"
)
MARK = "@@mlt-bench@@"
TARGET_BOOKKEEPING_MS = 0.2
TARGET_FINGERPRINT_MS = 1.0

_SETUP = """
EXP_PATH = {exp!r}
import json as _json, time as _t
import mlt_kernel as mlt
from mlt_kernel.tracking import fits as _fits
{imports}
mlt.autolog(True)
"""

_CASE = """
_X, _y = make_classification(n_samples={rows}, n_features={features}, random_state=0)
_est = {estimator}
_est.fit(_X, _y)  # warm up (recorded)
_times = {{True: [], False: []}}
for _k in range({pairs}):
    for _on in ((True, False) if _k % 2 == 0 else (False, True)):
        mlt.autolog(_on)
        _t0 = _t.perf_counter()
        _est.fit(_X, _y)
        _times[_on].append(_t.perf_counter() - _t0)
mlt.autolog(True)
_auto = get_ipython().kernel.recorder.autologger
_book, _fp = [], []
mlt.autolog(False)  # the fit between is not recorded: only the row _finish writes
for _ in range({calls}):
    _t0 = _t.perf_counter()
    _started = _auto._start((_X, _y), {{}})
    _t1 = _t.perf_counter()
    _est.fit(_X, _y)
    _t2 = _t.perf_counter()
    _auto._finish(_started, _est, "fit", None)
    _book.append(_t.perf_counter() - _t2 + _t1 - _t0)
mlt.autolog(True)
for _ in range(300):
    _t0 = _t.perf_counter()
    _fits.fingerprint(_X, _y)
    _fp.append(_t.perf_counter() - _t0)
print({mark!r} + _json.dumps({{"on": _times[True], "off": _times[False], "book": _book, "fp": _fp}}))
"""


def run_cell(kc, code: str, timeout: float) -> str:
    outputs: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            outputs.append(msg["content"].get("text", ""))
        elif msg["msg_type"] == "error":
            outputs.append("\n".join(msg["content"].get("traceback", [])))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    text = "".join(outputs)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed in the kernel:\n{text}")
    return text


def ms(seconds: float) -> float:
    return seconds * 1e3


def bootstrap_median(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of the median of *values*."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def medians(funcs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each function, called in turn round after round."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(rounds):
        for name, func in funcs.items():
            t0 = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_kernel(args: argparse.Namespace, tmp: str, exp: str) -> list[dict[str, Any]]:
    pairs = (args.pairs_1ms, args.pairs_10ms, args.pairs_1s)
    calls = (300, 200, 8) if not args.quick else (100, 50, 3)
    km, kc = start_new_kernel(kernel_name="mltrack", cwd=tmp, extra_arguments=args.mltrack_option)
    try:
        run_cell(kc, _SETUP.format(exp=exp, imports=IMPORTS), timeout=120)
        for _ in range(20):  # warm up the recorder's per-cell path
            run_cell(kc, "pass", timeout=30)
        results = []
        for (name, _, estimator, rows, features, _), n_pairs, n_calls in zip(CASES, pairs, calls, strict=True):
            code = _CASE.format(
                rows=rows, features=features, estimator=estimator, pairs=n_pairs, calls=n_calls, mark=MARK
            )
            text = run_cell(kc, code, timeout=600)
            line = next(line for line in text.splitlines() if line.startswith(MARK))
            results.append({"name": name, "calls": n_calls, **json.loads(line[len(MARK) :])})
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)  # a clean end: the journal is compacted
    return results


def count_fits(exp: str) -> dict[str, int]:
    import mlt_kernel as mlt

    fits = mlt.Experiment(exp).fits()
    return {str(k): int(v) for k, v in fits["estimator"].value_counts().items()}


def measure_fingerprint(calls: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import pandas as pd

    from mlt_kernel.tracking import fits

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 100))
    y = rng.integers(0, 2, 1_000_000)
    out = {
        "ndarray": medians(
            {"fingerprint": lambda: fits.fingerprint(X, y), "describe_call": lambda: fits.describe_call((X, y), {})},
            calls,
        )
    }
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    series = pd.Series(y, name="target")
    out["DataFrame"] = medians(
        {
            "fingerprint": lambda: fits.fingerprint(frame, series),
            "describe_call": lambda: fits.describe_call((frame, series), {}),
        },
        calls,
    )
    return out


def measure_bookkeeping(quick: bool) -> list[tuple[str, dict[str, float]]]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlt_kernel.tracking import fits

    made = {  # the same estimators as in the kernel
        "LogisticRegression": LogisticRegression,
        "Pipeline(Scaler, LogReg)": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "RandomForest(100 trees)": lambda: RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
    }
    out = []
    for _, short, _, rows, features, _ in CASES:
        X, y = make_classification(n_samples=rows, n_features=features, random_state=0)
        est = made[short]().fit(X, y)
        call = fits.describe_call((X, y), {})
        rounds = (30 if quick else 100) if "Forest" in short else (300 if quick else 1000)
        timed = medians(
            {
                "describe_call": lambda X=X, y=y: fits.describe_call((X, y), {}),
                "describe_fitted": lambda est=est, call=call: fits.describe_fitted(est, call),
                "non_default_params": lambda est=est: fits.non_default_params(est),
                "model_bytes": lambda est=est: fits.model_bytes(est),
                "top_features": lambda est=est, call=call: fits.top_features(est, call.get("feature_names")),
            },
            rounds,
        )
        out.append((short, timed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer pairs and calls (about half a minute)")
    parser.add_argument("--pairs-1ms", type=int, default=None, help="on/off pairs of the ~1 ms fit (500)")
    parser.add_argument("--pairs-10ms", type=int, default=None, help="on/off pairs of the ~10 ms fit (300)")
    parser.add_argument("--pairs-1s", type=int, default=None, help="on/off pairs of the ~1 s fit (10)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and OpenMP threads (0: their default)")
    parser.add_argument("--fingerprint-calls", type=int, default=20, help="calls per figure of the 1e6 x 100 data")
    parser.add_argument(
        "--mltrack-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="passed to the MLTrack kernel, e.g. --mltrack-option=--MLTrackKernel.watcher=False",
    )
    args = parser.parse_args()
    for key, full, quick in (("pairs_1ms", 500, 100), ("pairs_10ms", 300, 60), ("pairs_1s", 10, 3)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    if args.threads > 0:  # before NumPy is imported here or in the kernel
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        exp = os.path.join(tmp, "exp")
        results = measure_kernel(args, tmp, exp)
        counts = count_fits(exp)
    fingerprint = measure_fingerprint(args.fingerprint_calls)
    bookkeeping = measure_bookkeeping(args.quick)

    threads = args.threads if args.threads > 0 else "default"
    print("1. per-fit overhead of autolog: the same fits, autolog on vs off, alternating, in one MLTrack kernel")
    print(f"   (BLAS/OpenMP threads: {threads}; 'off' median = the fit's own time)")
    print(
        f"{'fit':<7} {'pairs':>5} {'off ms':>9} {'on ms':>9} {'diff of':>9} {'paired':>9} "
        f"{'95% interval':>17} {'target':>8}"
    )
    print(f"{'':<7} {'':>5} {'median':>9} {'median':>9} {'medians':>9} {'median':>9} {'of paired ms':>17} {'ms':>8}")
    for r in results:
        paired = [on - off for on, off in zip(r["on"], r["off"], strict=True)]
        lo, hi = bootstrap_median(paired)
        target = TARGET_BOOKKEEPING_MS + ms(statistics.median(r["fp"]))
        print(
            f"{r['name']:<7} {len(paired):>5} {ms(statistics.median(r['off'])):>9.3f} "
            f"{ms(statistics.median(r['on'])):>9.3f} "
            f"{ms(statistics.median(r['on']) - statistics.median(r['off'])):>+9.3f} "
            f"{ms(statistics.median(paired)):>+9.3f} {f'[{ms(lo):+.3f}, {ms(hi):+.3f}]':>17} {f'<= {target:.3f}':>8}"
        )
    print("   target: 0.2 ms of bookkeeping + the fingerprint of that fit's data (below, back to back in the kernel)")
    print()
    print(
        "   autolog's own work per fit, inside the kernel around a real fit (_start + _finish, journal write included)"
    )
    print(f"{'fit':<7} {'estimator':<28} {'calls':>5} {'median ms':>10} {'fingerprint ms':>15} {'fits rows':>16}")
    for r, (_, short, _, _, _, qualified) in zip(results, CASES, strict=True):
        expected = 1 + len(r["on"]) + r["calls"]  # the warm-up, the "on" fits, the bookkeeping calls
        rows = f"{counts.get(qualified, 0)} of {expected}"
        print(
            f"{r['name']:<7} {short:<28} {r['calls']:>5} {ms(statistics.median(r['book'])):>10.3f} "
            f"{ms(statistics.median(r['fp'])):>15.4f} {rows:>16}"
        )
    print()
    print(f"2. data fingerprint of X 1,000,000 x 100 float64 and y 1,000,000, median of {args.fingerprint_calls} calls")
    print(f"{'X':<10} {'fingerprint ms':>15} {'describe_call ms':>17} {'target ms':>10}")
    for kind, timed in fingerprint.items():
        note = f"<= {TARGET_FINGERPRINT_MS:.1f}" if kind == "ndarray" else "(compare)"
        print(f"{kind:<10} {ms(timed['fingerprint']):>15.4f} {ms(timed['describe_call']):>17.4f} {note:>10}")
    print()
    print(
        "3. bookkeeping alone, in this process, medians in ms (describe_fitted = params + model_bytes + top_features)"
    )
    print(
        f"{'estimator':<28} {'describe_call':>13} {'describe_fitted':>15} {'params':>8} "
        f"{'model_bytes':>11} {'top_features':>12}"
    )
    for short, timed in bookkeeping:
        print(
            f"{short:<28} {ms(timed['describe_call']):>13.4f} {ms(timed['describe_fitted']):>15.4f} "
            f"{ms(timed['non_default_params']):>8.4f} {ms(timed['model_bytes']):>11.4f} "
            f"{ms(timed['top_features']):>12.4f}"
        )
    print()
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
