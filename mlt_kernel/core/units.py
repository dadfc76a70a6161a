"""Numbers as a person writes them: ``1.2 GiB``, ``3.4 s``, ``0.963``."""

from __future__ import annotations

import math
import re
from typing import Any

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "b": 1}
for _i, _unit in enumerate(("k", "m", "g", "t", "p"), start=1):
    _MULTIPLIERS |= {_unit: 1024**_i, f"{_unit}b": 1000**_i, f"{_unit}ib": 1024**_i, f"{_unit}i": 1024**_i}


def parse_bytes(text: str | int) -> int:
    """``"12GiB"`` → 12884901888; ``"12GB"`` is decimal (12e9), ``"12G"`` binary; an int is bytes.

    Raises:
        ValueError: not a size (the message names the value).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a size is not negative, got {text}")
        return text
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 12GiB, 800MB or 1073741824")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    size = number * _MULTIPLIERS[unit]
    if not math.isfinite(size) or size >= 2**63:
        raise ValueError(f"{match.group(0).strip()[:40]!r} is too large a size")
    return int(size)


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
