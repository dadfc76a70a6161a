"""GPU memory and utilisation through NVML: the one module that imports ``pynvml``.

``pynvml`` comes from the ``nvidia-ml-py`` distribution (the ``pynvml``
distribution is deprecated and warns on import). Import and ``nvmlInit()`` are
attempted once, when a :class:`Gpu` is made. Without the package, a driver or
a GPU, the object degrades to a no-op whose readings are None, and one line
goes to the logger ``mlt_kernel.watcher.nvml`` — never a warning that a user would see
in a cell.

NVML reports memory per process (the pids match the kernel's) and includes the
CUDA context (~0.5 GiB), which an allocator's own counters leave out. Listing
the processes of a device costs ~40 µs, cheap enough for a 50 ms timeline.
MIG instances are not looked into: a GPU in MIG mode reads as not supported.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mlt_kernel.watcher.nvml")


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One look at the GPUs on behalf of a set of processes."""

    memory_bytes: int | None  #: GPU memory used by those processes, over all devices
    utilization: float | None  #: device utilisation, percent (the busiest device they use)


_NO_READING = GpuReading(None, None)


class Gpu:
    """NVML, initialised once; a no-op with None readings when there is no GPU or driver."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._failed: set[str] = set()
        self._start()

    @property
    def available(self) -> bool:
        """Whether NVML is initialised and shows at least one device."""
        return bool(self._handles)

    @property
    def device_count(self) -> int:
        return len(self._handles)

    def _start(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            log.warning("GPU memory is not recorded: pynvml (nvidia-ml-py) cannot be imported (%s)", exc)
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            # The usual state of a machine without an NVIDIA GPU: not a warning.
            log.info("GPU memory is not recorded: no NVIDIA driver or GPU (NVML: %s)", exc)
            return
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            log.info("GPU memory is not recorded: NVML lists no usable device (%s)", exc)
            self.close()
            return
        if not self._handles:
            log.info("GPU memory is not recorded: NVML shows no GPU")
            self.close()

    def _fail_once(self, what: str, exc: Exception) -> None:
        if what not in self._failed:
            self._failed.add(what)
            log.info("NVML: %s failed (%s); left empty from now on where it fails", what, exc)

    def _device_memory(self, handle: Any, pids: Collection[int]) -> tuple[int | None, bool]:
        """``(bytes of *pids* on this device or None, whether any of them is there)``."""
        nvml = self._nvml
        used: dict[int, int | None] = {}
        listed = False
        for lister in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                procs = getattr(nvml, lister)(handle)
            except nvml.NVMLError as exc:
                self._fail_once(lister, exc)
                continue
            listed = True
            for proc in procs:
                if proc.pid in pids:
                    # A process with compute and graphics contexts appears in
                    # both lists with the same memory: count it once.
                    mem = proc.usedGpuMemory  # None where the driver does not tell (WDDM)
                    prev = used.get(proc.pid)
                    used[proc.pid] = mem if prev is None else max(prev, mem or 0)
        if not listed:
            return None, False
        known = [m for m in used.values() if m is not None]
        if used and not known:
            return None, True
        return sum(known), bool(used)

    def _device_util(self, handle: Any) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except self._nvml.NVMLError as exc:
            self._fail_once("nvmlDeviceGetUtilizationRates", exc)
            return None

    def read(self, pids: Collection[int]) -> GpuReading:
        """GPU memory of *pids* over all devices and the utilisation of the devices they use.

        Utilisation is that of the busiest device the processes use; when they
        use none, of the busiest device of the machine. Memory is 0 when the
        processes hold none, None when NVML cannot tell.
        """
        if not self._handles:
            return _NO_READING
        total: int | None = 0
        any_unknown = False
        used_devices = []
        for handle in self._handles:
            mem, present = self._device_memory(handle, pids)
            if mem is None:
                any_unknown = True
            else:
                total = (total or 0) + mem
            if present:
                used_devices.append(handle)
        if any_unknown and not total:
            total = None
        utils = [u for u in (self._device_util(h) for h in used_devices or self._handles) if u is not None]
        return GpuReading(total, max(utils) if utils else None)

    def process_memory(self, pids: Collection[int]) -> int | None:
        """Bytes of GPU memory used by *pids* over all devices; None without NVML."""
        return self.read(pids).memory_bytes

    def utilization(self, pids: Collection[int] = ()) -> float | None:
        """Utilisation (percent) of the busiest device *pids* use, or of all devices."""
        return self.read(pids).utilization

    def devices(self) -> list[dict[str, Any]]:
        """Each GPU: ``name``, ``memory_bytes`` (total), ``driver`` and ``cuda`` (the driver's CUDA version)."""
        nvml = self._nvml
        if nvml is None:
            return []
        system: dict[str, Any] = {}
        for key, call in (("driver", "nvmlSystemGetDriverVersion"), ("cuda", "nvmlSystemGetCudaDriverVersion")):
            try:
                system[key] = getattr(nvml, call)()
            except (nvml.NVMLError, AttributeError) as exc:
                self._fail_once(call, exc)
        if isinstance(system.get("cuda"), int):  # 12040 -> "12.4"
            system["cuda"] = f"{system['cuda'] // 1000}.{system['cuda'] % 1000 // 10}"
        out = []
        for handle in self._handles:
            device: dict[str, Any] = {"name": None, "memory_bytes": None}
            try:
                device["name"] = _text(nvml.nvmlDeviceGetName(handle))
                device["memory_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            except (nvml.NVMLError, AttributeError) as exc:
                self._fail_once("nvmlDeviceGetName", exc)
            device.update({k: _text(v) for k, v in system.items()})
            out.append(device)
        return out

    def close(self) -> None:
        """Shut NVML down; later readings are None."""
        nvml, self._nvml, self._handles = self._nvml, None, []
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass


def _text(value: Any) -> Any:
    """NVML strings: ``bytes`` from older bindings, ``str`` from newer ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


__all__ = ["Gpu", "GpuReading"]
