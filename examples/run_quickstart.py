"""Run the quick-start notebook through the Python (MLTrack) kernel, then report.

    python examples/run_quickstart.py [--exp mlt-experiments/quickstart] [--report quickstart.html]

Executes ``examples/quickstart.ipynb`` with nbclient (headless, as papermill
would), prints the runs that were recorded, and writes the dashboard's
one-file HTML report. Open the live dashboard with ``mlt-dashboard EXP``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="mlt-experiments/quickstart", help="experiment folder to record into")
    parser.add_argument("--report", help="write the dashboard's HTML report here")
    args = parser.parse_args()
    exp = Path(args.exp).absolute()
    os.environ["QUICKSTART_EXP"] = str(exp)

    nb = nbformat.read(HERE / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="mltrack", timeout=600, resources={"metadata": {"path": str(Path.cwd())}}).execute()
    executed = exp.parent / f"{exp.name}.ipynb"
    nbformat.write(nb, executed)

    import pandas as pd

    import mlt_kernel as mlt

    runs = mlt.Experiment(exp).runs()
    cols = [
        c
        for c in ("name", "status", "accuracy", "precision", "recall", "f1", "roc_auc", "wall_s", "peak_rss_bytes")
        if c in runs
    ]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(runs[cols].to_string(index=False))
    print(f"\nrecorded into {exp} (executed notebook: {executed})")
    if args.report:
        dashboard = Path(sys.executable).with_name("mlt-dashboard")  # installed beside this Python
        subprocess.run([str(dashboard), str(exp), "--export", args.report], check=True)
        print(f"report: {Path(args.report).absolute()}")
    print(f"open the dashboard: mlt-dashboard {exp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
