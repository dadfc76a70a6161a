"""Notes from Markdown cells: what watching the notebook file costs the kernel.

```text
python benchmarks/markdown_notes.py [--repeat 20000]
```

(a) One look at an unchanged notebook (what the watching thread does every
    second): ``NotebookNotes.check()``, against a bare ``os.lstat`` of the file.
(b) One look after a save (the file changed), for a typical notebook (38 cells,
    three PNG outputs, three tagged Markdown cells, about 200 kB), for the same without
    a tag (not parsed), and for a 20 MB notebook of images with one tag: against
    ``nbformat.read`` of the same file, what a naive reader would call. The
    thread holds the GIL while it parses: (b) is also what it may take from a
    cell running at that moment.

Medians of ``--repeat`` looks (a) and of 30 (b). A few seconds in all.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat

from mlt_kernel.recording.notebook_notes import NotebookNotes, notebook_path


class NoSession:
    """Enough of a session for looking: the writes are not what is measured."""

    session_id = "bench"
    notebook = None
    log = logging.getLogger("bench")
    run = None
    pending_cell = None

    def wanted_path(self) -> Path:
        return Path(tempfile.gettempdir())

    def folder(self) -> Path:
        return self.wanted_path()

    def write(self, table: str, record: Mapping[str, Any]) -> Path:
        return self.wanted_path()

    def add_to_document(self, title: str, note_id: str) -> None:
        pass


def notebook(code_cells: int, images: int, image_bytes: int, tagged: int) -> dict[str, Any]:
    png = base64.b64encode(os.urandom(image_bytes)).decode()
    cells: list[dict[str, Any]] = []
    for i in range(code_cells):
        outputs: list[dict[str, Any]] = [{"output_type": "stream", "name": "stdout", "text": f"step {i}\n" * 20}]
        if i < images:
            outputs.append({"output_type": "display_data", "data": {"image/png": png}, "metadata": {}})
        source = f"model_{i} = fit(X_train, y_train, depth={i})\nscore_{i} = model_{i}.score(X_test, y_test)\n"
        cells.append(
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "source": source,
                "outputs": outputs,
                "execution_count": i,
            }
        )
        if i % 4 == 0:
            tag = '<!-- mlt: note plot=roc.png doc="Findings" -->\n' if tagged > 0 else ""
            tagged -= 1
            cells.append({"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": f"{tag}## Step {i}\nWhy."})
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}


def median_us(fn: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20000, help="looks at the unchanged file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "analysis.ipynb"
        # Found as in a kernel under JupyterLab: JPY_SESSION_NAME, the absolute path.
        env, user_ns, start = {"JPY_SESSION_NAME": str(path)}, {"__session__": str(path)}, Path(tmp)
        locate = lambda: notebook_path(user_ns, env, start)  # noqa: E731
        notes = NotebookNotes(NoSession(), locate, lambda: None, lambda line: None)
        stamp = [0]

        def touch() -> None:  # a save: a new modification time
            stamp[0] += 1
            os.utime(path, ns=(stamp[0] * 10**9, stamp[0] * 10**9))

        path.write_text(json.dumps(notebook(30, 3, 45_000, 3)))
        notes.check()
        look = median_us(notes.check, args.repeat)
        lstat = median_us(lambda: os.lstat(path), args.repeat)
        print(f"(a) unchanged: {look:.1f} µs per look, bare lstat {lstat:.1f} µs (ratio {look / lstat:.1f})")

        cases = [
            ("typical, 3 tags", notebook(30, 3, 45_000, 3)),
            ("typical, no tag", notebook(30, 3, 45_000, 0)),
            ("20 MB of images, 1 tag", notebook(40, 40, 370_000, 1)),
        ]
        for name, nb in cases:
            path.write_text(json.dumps(nb))
            size = path.stat().st_size
            read = median_us(notes.check, 30, before=touch) / 1000
            naive = median_us(lambda: nbformat.read(path, as_version=4), 30) / 1000
            print(
                f"(b) changed, {name} ({size / 1e6:.2f} MB): {read:.2f} ms per read, "
                f"nbformat.read {naive:.2f} ms (ratio {read / naive:.2f})"
            )
        notes.close()


if __name__ == "__main__":
    main()
