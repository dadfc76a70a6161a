"""The layout of an experiment folder.

```text
EXP/
  mlt-experiment.json         written once, when the folder is first used
  journals/                   live, append-only JSON lines, one file per writer and role
  tables/{table}/             Parquet: s-{writer}.v1.parquet per closed writer, m-*.v1.parquet merged
  predictions/                Parquet files of logged predictions
  plots/                      figures that belong to the experiment
```
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from mlt_kernel.core.schema import SCHEMA_VERSION

MARKER = "mlt-experiment.json"
JOURNALS = "journals"
TABLES = "tables"
PLOTS = "plots"
PREDICTIONS = "predictions"
SUBDIRS = (JOURNALS, TABLES, PLOTS, PREDICTIONS)


def new_writer_id() -> str:
    """A time-ordered, collision-free id such as ``20261127T100052Z-3f9a1c2e``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def ensure_layout(path: str | os.PathLike[str]) -> Path:
    """Create the experiment folder and its layout; raises ``OSError`` when it cannot."""
    root = Path(path).expanduser().absolute()
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        info = {"format": "mlt-experiment", "schema_version": SCHEMA_VERSION, "name": root.name}
        try:
            # O_EXCL: the marker is written once, by whoever comes first.
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
    return root


def is_experiment(path: str | os.PathLike[str]) -> bool:
    root = Path(path)
    return (root / MARKER).is_file() or (root / JOURNALS).is_dir() or (root / TABLES).is_dir()


def find_experiments(path: str | os.PathLike[str]) -> list[Path]:
    """*path* itself if it is an experiment, else the experiments directly inside it."""
    root = Path(path)
    if is_experiment(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_experiment(p))
