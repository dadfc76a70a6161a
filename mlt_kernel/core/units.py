"""Numbers as a person writes them: ``1.2 GiB``, ``3.4 s``, ``0.963``."""

from __future__ import annotations

import math
from typing import Any

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_bytes(value: Any) -> str:
    """``1288490188`` → ``1.2 GiB``; empty values → ``—``."""
    if _missing(value):
        return "—"
    size = float(value)
    for unit in _BYTE_UNITS:
        if abs(size) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_seconds(value: Any) -> str:
    """``0.0123`` → ``12 ms``, ``3.41`` → ``3.4 s``, ``125`` → ``2 min 5 s``, ``7300`` → ``2 h 1 min``."""
    if _missing(value):
        return "—"
    s = float(value)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1e6:.0f} µs"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def format_metric(value: Any) -> str:
    """Metrics with three decimals: ``0.963``."""
    if _missing(value):
        return "—"
    return f"{float(value):.3f}"
