"""The README's "From the notebook" screenshot: ``%mlt runs`` and ``%mlt run`` in JupyterLab.

Runs a small notebook through the Python (MLTrack) kernel (three scikit-learn
runs, then the magics), opens it in a real JupyterLab (its own HOME and Jupyter
folders, a random token, a free port) in headless Chromium, and writes a PNG
with a palette of 256 colours, to keep it small::

    python examples/notebook_screenshot.py docs/notebook.png

Needs ``pip install -e ".[test]"`` (JupyterLab, Playwright) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import nbformat.sign
from nbclient import NotebookClient

CELLS = [
    'EXP_PATH = "mlt-experiments/churn"\n'
    "import mlt_kernel as mlt\n"
    "from sklearn.datasets import make_classification\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\n"
    "X, y = make_classification(n_samples=4000, n_features=20, random_state=0)\n"
    "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
    'for C in [0.01, 1.0, 100.0]:\n    with mlt.run("logreg", C=C):\n'
    "        model = LogisticRegression(C=C, max_iter=500).fit(X_train, y_train)\n"
    "        mlt.log_predictions(y_test, model.predict(X_test), y_proba=model.predict_proba(X_test))",
    "%mlt runs",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"JupyterLab did not answer at {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mlt-screenshot-"))
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "MPLBACKEND": "Agg",
    }
    os.environ.update(env)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "mltrack", "display_name": "Python (MLTrack)", "language": "python"}
    NotebookClient(notebook, kernel_name="mltrack", resources={"metadata": {"path": str(home)}}).execute()
    # Trusted, as a notebook whose cells you ran yourself: JupyterLab shows its HTML as the kernel sent it.
    nbformat.sign.NotebookNotary().sign(notebook)
    nbformat.write(notebook, home / "churn.ipynb")

    token, port = secrets.token_urlsafe(16), _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}"]
    lab = subprocess.Popen(command, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/api/status?token={token}")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/churn.ipynb?token={token}")
            page.locator(".mlt-inline").first.wait_for()
            news = page.get_by_role("button", name="No")  # JupyterLab's question about news
            if news.count():
                news.first.click()
            page.locator(".jp-Cell").nth(1).evaluate("cell => cell.scrollIntoView()")
            time.sleep(1.0)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.wait(timeout=30)
    from PIL import Image

    with Image.open(args.out) as image:
        image.convert("RGB").quantize(colors=256).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
