"""The kernel's side of the memory guard: its settings, and the interrupt that stops a cell.

The watcher decides (``mlt_kernel.watcher.guard``), writes what it read with
the cell's number, and signals the kernel (``guard.SIGNAL``, a real-time
signal); the handler raises ``MemoryGuardInterrupt`` in the running cell, with
a message that says how much memory was in use, of what limit, and which
variables of the notebook are the largest. It raises only for the cell the
watcher named, only while that cell's own code runs (not during MLTrack's or
IPython's work around it, nor while the main thread waits in the event loop
for an ``await``), and only for a cell that did not opt out (``# mlt: guard off``).
The handler is installed only where the signal is free and in the main thread;
otherwise the guard stays off and the kernel log says why.
"""

from __future__ import annotations

import inspect
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
from mlt_kernel.watcher.guard import DEFAULT_FRACTION, SIGNAL
from mlt_kernel.watcher.protocol import GuardFired

#: The smallest memory limit taken from a setting: below it, a typo (``12`` for ``12GiB``).
MIN_LIMIT_BYTES = 64 << 20
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
        if limit is not None and limit < MIN_LIMIT_BYTES:
            log.error(
                "MLTrack: a memory limit of %d bytes is below %d; using the cgroup's or the machine's",
                limit,
                MIN_LIMIT_BYTES,
            )
            limit = None
    fraction = guard_option
    env = os.environ.get("MLT_MEMORY_GUARD", "").strip()
    if env:
        try:
            fraction = float(env)
        except ValueError:
            log.error("MLTrack: MLT_MEMORY_GUARD=%r is not a number; using %s", env, guard_option)
    if not 0 <= fraction <= 1:  # NaN too
        log.error(
            "MLTrack: the memory guard is a share of the limit, 0 to 1, got %s; using %s", fraction, DEFAULT_FRACTION
        )
        fraction = DEFAULT_FRACTION
    return GuardSettings(limit, fraction)


def install(handler: Callable[[int, FrameType | None], None], log: logging.Logger) -> bool:
    """Handle ``SIGNAL`` with *handler*, if nothing else does; whether it was installed."""
    try:
        current = signal.getsignal(SIGNAL)
        if current not in (signal.SIG_DFL, None) and current is not handler:
            log.warning("MLTrack: signal %d is handled by %r already; the memory guard is off", SIGNAL, current)
            return False
        signal.signal(SIGNAL, handler)
    except ValueError:  # not the main thread
        log.warning("MLTrack: the memory guard needs the main thread; it is off")
        return False
    return True


def uninstall(handler: Callable[[int, FrameType | None], None]) -> None:
    """Give ``SIGNAL`` back, if *handler* still has it."""
    try:
        if signal.getsignal(SIGNAL) is handler:
            signal.signal(SIGNAL, signal.SIG_DFL)
    except ValueError:
        pass


def in_cell_code(frame: FrameType | None, run_code: object) -> bool:
    """Whether *frame* runs inside a cell's code: IPython's ``run_code`` is on the stack.

    Not while MLTrack's or IPython's own work runs before or after the code, nor
    while the main thread waits in the event loop for a cell's ``await``: an
    exception raised there would end the kernel, not the cell.
    """
    while frame is not None:
        if frame.f_code is run_code:
            return True
        frame = frame.f_back
    return False


def interrupt(fired: GuardFired | None, fraction: float, namespace: Mapping[str, Any]) -> MemoryGuardInterrupt:
    """The exception that stops the cell, with the message the user reads."""
    if fired is not None and fired.limit_bytes:
        where = (
            f"at {format_bytes(fired.rss_bytes)} of a {format_bytes(fired.limit_bytes)} memory limit "
            f"({100 * fired.rss_bytes / fired.limit_bytes:.0f} %)"
        )
    else:
        where = f"at {100 * fraction:.0f} % of its memory limit"
    try:
        largest = ", ".join(
            f"{name} {format_bytes(size)} ({kind})" for name, size, kind in largest_variables(namespace)
        )
    except Exception:  # noqa: BLE001 - the interrupt must come whatever the namespace holds
        largest = ""
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
    """``(name, bytes, type)`` of the largest variables of *namespace*, measured cheaply within *budget_s*.

    Sizes come from the types' own bookkeeping (NumPy, pandas, torch) or
    ``sys.getsizeof``; no attribute of a user's object is looked up, so no
    user ``__getattr__`` runs inside the signal handler.
    """
    deadline = time.perf_counter() + budget_s
    sizes: list[tuple[str, int, str]] = []
    for name, value in list(namespace.items()):
        if time.perf_counter() > deadline:
            break
        if not isinstance(name, str) or name.startswith("_") or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        if isinstance(value, (ModuleType, type)) or inspect.isroutine(value):
            continue
        try:
            size = _size(value, deadline)
        except Exception:  # noqa: BLE001 - a variable that cannot be sized is left out
            continue
        if size >= MIN_NAMED_BYTES:
            sizes.append((name, size, type(value).__name__))
    sizes.sort(key=lambda item: item[1], reverse=True)
    return sizes[:count]


def _known_size(value: Any) -> int | None:
    """The bytes of an array, frame or tensor, by its type; None for other values."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return int(value.nbytes)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series, pandas.Index)):
        usage = value.memory_usage(deep=False)
        return int(usage.sum()) if hasattr(usage, "sum") else int(usage)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    return None


def _size(value: Any, deadline: float) -> int:
    known = _known_size(value)
    if known is not None:
        return known
    size = sys.getsizeof(value)
    if type(value) in (list, tuple, set, frozenset, dict):
        items = value.values() if isinstance(value, dict) else value
        for i, item in enumerate(items):
            if i >= _CONTAINER_ITEMS or time.perf_counter() > deadline:
                break
            inner = _known_size(item)
            size += inner if inner is not None else sys.getsizeof(item)
    return size


__all__ = [
    "MIN_LIMIT_BYTES",
    "SIGNAL",
    "GuardSettings",
    "in_cell_code",
    "install",
    "interrupt",
    "largest_variables",
    "settings",
    "uninstall",
]
