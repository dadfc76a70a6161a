"""Logging 1,000,000 predictions with probabilities for 10 classes, in a real MLTrack kernel.

Prints the time of ``mlt.log_predictions`` (validation, scikit-learn metrics,
confusion matrix, ROC/PR curves, storage) — the first call in a fresh kernel,
in each of ``--kernels`` kernels, and their median — and the bytes stored,
against the size of the raw arrays. Target: under 2 s, stored compactly.

    python benchmarks/predictions.py [--rows 1000000] [--classes 10] [--kernels 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from jupyter_client.manager import start_new_kernel

CELL = """
# mlt: record name=bench
import time, numpy as np, sklearn.metrics, mlt_kernel as mlt  # a session that trained a model has sklearn loaded
rng = np.random.default_rng(0)
n, k = {rows}, {classes}
y_true = rng.integers(0, k, n)
logits = rng.normal(size=(n, k)); logits[np.arange(n), y_true] += 1.5
proba = np.exp(logits); proba /= proba.sum(axis=1, keepdims=True)
t0 = time.perf_counter()
mlt.log_predictions(y_true, y_proba=proba)
elapsed = time.perf_counter() - t0
print(f"{{elapsed:.3f}} {{y_true.nbytes + proba.nbytes}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--kernels", type=int, default=3, help="fresh kernels, one call in each")
    args = parser.parse_args()
    times = []
    for _ in range(args.kernels):
        elapsed, raw, stored = _one_kernel(args.rows, args.classes)
        times.append(elapsed)
    print(f"{args.rows:,} predictions, {args.classes} classes, with probabilities")
    print(f"log_predictions, first call in each of {args.kernels} kernels: {', '.join(f'{t:.3f}' for t in times)} s")
    print(f"median: {statistics.median(times):.3f} s (target < 2 s)")
    print(f"raw arrays: {raw / 2**20:.1f} MiB, stored: {stored / 2**20:.1f} MiB ({stored / raw:.2f} of raw)")


def _one_kernel(rows: int, classes: int) -> tuple[float, int, int]:
    """Seconds of the call, bytes of the raw arrays, bytes stored."""
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "exp"
        os.environ["MLT_EXP_PATH"] = str(exp)
        km, kc = start_new_kernel(kernel_name="mltrack", cwd=tmp)
        out: list[str] = []
        reply = kc.execute_interactive(
            CELL.format(rows=rows, classes=classes),
            timeout=600,
            output_hook=lambda m: out.append(m["content"]["text"]) if m["msg_type"] == "stream" else None,
        )
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        if reply["content"]["status"] != "ok":
            raise SystemExit(f"the cell failed: {reply['content'].get('evalue')}")
        elapsed, raw = "".join(out).split()
        stored = sum(p.stat().st_size for p in (exp / "predictions").iterdir())
    return float(elapsed), int(raw), stored


if __name__ == "__main__":
    main()
