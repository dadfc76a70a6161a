"""The kernel's side of the memory guard: its settings, and the interrupt that stops a cell.

The watcher decides (``mlt_kernel.watcher.guard``) and signals the kernel with
``SIGUSR1``; the handler installed here raises ``MemoryGuardInterrupt`` in the
running cell, with a message that says how much memory was in use, of what
limit, and which variables of the notebook are the largest. A signal that
arrives between cells, or during a cell that opted out (``# mlt: guard off``),
is ignored. The handler is installed only where ``SIGUSR1`` is free (nothing
else handles it) and in the main thread; otherwise the guard stays off and the
kernel log says why.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

from mlt_kernel.core.errors import MemoryGuardInterrupt
from mlt_kernel.core.units import format_bytes, parse_bytes
from mlt_kernel.watcher.guard import DEFAULT_FRACTION
from mlt_kernel.watcher.protocol import GuardFired

SIGNAL = signal.SIGUSR1
#: Time the message may spend measuring the notebook's variables.
SIZING_BUDGET_S = 0.1
#: Variables named in the message.
LARGEST = 3
#: Variables smaller than this are not worth naming.
MIN_NAMED_BYTES = 1 << 20
#: Items of a list, tuple, dict or set looked at to size it.
_CONTAINER_ITEMS = 10_000


@dataclass(frozen=True)
class GuardSettings:
    """The memory guard's settings after the environment and the options."""

    limit_bytes: int | None  #: None: the cgroup's limit, else the machine's
    fraction: float  #: 0: off


def settings(limit_option: str, guard_option: float, log: logging.Logger) -> GuardSettings:
    """``MLT_MEMORY_LIMIT``/``MLT_MEMORY_GUARD`` over the options; a bad value is one log line and the default."""
    limit_text = os.environ.get("MLT_MEMORY_LIMIT", "").strip() or limit_option.strip()
    limit: int | None = None
    if limit_text:
        try:
            limit = parse_bytes(limit_text) or None
        except ValueError as exc:
            log.error("MLTrack: memory limit %s; using the cgroup's or the machine's", exc)
    fraction = guard_option
    env = os.environ.get("MLT_MEMORY_GUARD", "").strip()
    if env:
        try:
            fraction = float(env)
        except ValueError:
            log.error("MLTrack: MLT_MEMORY_GUARD=%r is not a number; using %s", env, guard_option)
    if not 0 <= fraction <= 1:
        log.error(
            "MLTrack: the memory guard is a share of the limit, 0 to 1, got %s; using %s", fraction, DEFAULT_FRACTION
        )
        fraction = DEFAULT_FRACTION
    return GuardSettings(limit, fraction)


def install(handler: Callable[[int, FrameType | None], None], log: logging.Logger) -> bool:
    """Handle ``SIGUSR1`` with *handler*, if nothing else does; whether it was installed."""
    try:
        current = signal.getsignal(SIGNAL)
        if current not in (signal.SIG_DFL, None) and current is not handler:
            log.warning("MLTrack: SIGUSR1 is handled by %r already; the memory guard is off", current)
            return False
        signal.signal(SIGNAL, handler)
    except ValueError:  # not the main thread
        log.warning("MLTrack: the memory guard needs the main thread; it is off")
        return False
    return True


def uninstall(handler: Callable[[int, FrameType | None], None]) -> None:
    """Give ``SIGUSR1`` back, if *handler* still has it."""
    try:
        if signal.getsignal(SIGNAL) is handler:
            signal.signal(SIGNAL, signal.SIG_DFL)
    except ValueError:
        pass


def interrupt(fired: GuardFired | None, fraction: float, namespace: Mapping[str, Any]) -> MemoryGuardInterrupt:
    """The exception that stops the cell, with the message the user reads."""
    if fired is not None and fired.limit_bytes:
        where = (
            f"at {format_bytes(fired.rss_bytes)} of a {format_bytes(fired.limit_bytes)} memory limit "
            f"({100 * fired.rss_bytes / fired.limit_bytes:.0f} %)"
        )
    else:
        where = f"at {100 * fraction:.0f} % of its memory limit"
    largest = ", ".join(f"{name} {format_bytes(size)} ({kind})" for name, size, kind in largest_variables(namespace))
    advice = (
        f"--MLTrackKernel.memory_guard={min(0.95, round(fraction + 0.05, 2))}"
        if fraction < 0.95
        else "--MLTrackKernel.memory_limit=…"
    )
    return MemoryGuardInterrupt(
        f"MLTrack stopped this cell {where} to keep the kernel alive; your variables are intact."
        + (f" Largest: {largest}." if largest else "")
        + f" Free memory with del, or raise the limit: {advice}"
    )


def largest_variables(
    namespace: Mapping[str, Any], count: int = LARGEST, budget_s: float = SIZING_BUDGET_S
) -> list[tuple[str, int, str]]:
    """``(name, bytes, type)`` of the largest variables of *namespace*, measured cheaply within *budget_s*."""
    deadline = time.perf_counter() + budget_s
    sizes: list[tuple[str, int, str]] = []
    for name, value in list(namespace.items()):
        if time.perf_counter() > deadline:
            break
        if name.startswith("_") or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        if isinstance(value, (ModuleType, type)) or (callable(value) and not hasattr(value, "nbytes")):
            continue
        try:
            size = _size(value, deadline)
        except Exception:  # noqa: BLE001 - a variable that cannot be sized is left out
            continue
        if size >= MIN_NAMED_BYTES:
            sizes.append((name, size, type(value).__name__))
    sizes.sort(key=lambda item: item[1], reverse=True)
    return sizes[:count]


def _size(value: Any, deadline: float) -> int:
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, and torch tensors
    if isinstance(nbytes, int):
        return nbytes
    memory_usage = getattr(value, "memory_usage", None)  # pandas
    if callable(memory_usage) and type(value).__module__.startswith("pandas"):
        usage = memory_usage(deep=False)
        return int(usage.sum()) if hasattr(usage, "sum") else int(usage)
    size = sys.getsizeof(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        items = value.values() if isinstance(value, dict) else value
        for i, item in enumerate(items):
            if i >= _CONTAINER_ITEMS or time.perf_counter() > deadline:
                break
            inner = getattr(item, "nbytes", None)
            size += inner if isinstance(inner, int) else sys.getsizeof(item)
    return size


__all__ = ["SIGNAL", "GuardSettings", "install", "interrupt", "largest_variables", "settings", "uninstall"]
