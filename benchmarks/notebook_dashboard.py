"""``%mlt dashboard`` from a cell: the cell's reply time, and how soon its link answers.

In one MLTrack kernel, rounds of: a ``pass`` cell (the baseline), a
``%mlt dashboard`` cell that starts a new dashboard (its reply time), the link
polled until it answers (HTTP 200 with the token), a ``%mlt dashboard`` cell
that finds it running (reuse), and ``%mlt dashboard stop``. Beside it, the same
experiment served by ``mlt-dashboard`` from a shell, timed until it prints its
URL and until that URL answers: what a user waited for before.

    python benchmarks/notebook_dashboard.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from jupyter_client.manager import start_new_kernel

_URL = re.compile(r"(http://127\.0\.0\.1:\d+/summary\?token=\S+)")


def cell(kc, code: str) -> tuple[float, str]:
    """Seconds from the request to the reply of *code*, and the text it displayed."""
    shown: list[str] = []

    def hook(msg) -> None:
        data = msg["content"].get("data", {})
        shown.append(data.get("text/plain", "") or msg["content"].get("text", ""))

    t0 = time.perf_counter()
    kc.execute_interactive(code, timeout=60, output_hook=hook)
    return time.perf_counter() - t0, "".join(shown)


def answers(url: str, since: float) -> float:
    """Seconds from *since* until *url* answers 200."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - since
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)


def shell_dashboard(exp: Path) -> tuple[float, float]:
    """``mlt-dashboard EXP`` started as a user would: seconds until it prints the URL, and until the URL answers."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlt_dashboard.cli", str(exp), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _URL.search(line)
            if match:
                printed = time.perf_counter() - t0
                return printed, answers(match.group(1), t0)
        raise SystemExit("mlt-dashboard did not start")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "exp"
        os.environ["MLT_EXP_PATH"] = str(exp)
        km, kc = start_new_kernel(kernel_name="mltrack", cwd=tmp)
        try:
            cell(kc, "import mlt_kernel as mlt\nwith mlt.run('warm-up', a=1):\n    pass")
            cell(kc, "%mlt")  # IPython's first magic lookup, outside the figures
            baseline, start, reuse, ready = [], [], [], []
            for _ in range(args.rounds):
                baseline.append(cell(kc, "pass")[0])
                elapsed, text = cell(kc, "%mlt dashboard")
                t_reply = time.perf_counter()
                start.append(elapsed)
                url = _URL.search(text)
                assert url is not None, text
                ready.append(answers(url.group(1), t_reply - elapsed))
                reuse.append(cell(kc, "%mlt dashboard")[0])
                cell(kc, "%mlt dashboard stop")
            shell = [shell_dashboard(exp) for _ in range(args.rounds)]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    med = statistics.median
    print(f"rounds: {args.rounds}")
    print(f"pass cell (baseline)               {med(baseline) * 1000:7.1f} ms")
    print(
        f"%mlt dashboard, starting            {med(start) * 1000:7.1f} ms  ({med(start) / med(baseline):.1f}× a pass cell)"
    )
    print(f"%mlt dashboard, already running     {med(reuse) * 1000:7.1f} ms  ({med(reuse) / med(baseline):.1f}×)")
    print(f"link answers, from the request      {med(ready):7.2f} s")
    print(
        f"mlt-dashboard in a shell: URL printed {med(s[0] for s in shell):5.2f} s, URL answers {med(s[1] for s in shell):.2f} s"
    )
    print(f"ratio link answers / shell URL answers: {med(ready) / med(s[1] for s in shell):.2f}")


if __name__ == "__main__":
    main()
