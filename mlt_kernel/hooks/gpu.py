"""The CUDA allocator's exact per-cell peak, when the user's code uses torch.

Device-wide and per-process GPU memory (including the CUDA context) come from
the watcher through NVML; this hook adds what only the kernel process can see:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. Torch is
never imported here: the hook looks only at modules the user already imported.
"""

from __future__ import annotations

import sys
from typing import Any

from mlt_kernel.hooks import CellContext, Hook, register


def _cuda() -> Any:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return None
    return cuda


@register
class GpuHook(Hook):
    name = "gpu"

    def pre_cell(self, cell: CellContext) -> None:
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()

    def post_cell(self, cell: CellContext) -> None:
        # A cell may initialise CUDA itself: its peak is then counted from zero.
        cuda = _cuda()
        if cuda is not None:
            peak = int(cuda.max_memory_allocated())
            cell.record["gpu_allocator_peak_bytes"] = peak
            cell.record["peak_gpu_bytes"] = peak
