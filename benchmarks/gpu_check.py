"""What the watcher records for a real torch allocation on an NVIDIA GPU.

```text
python benchmarks/gpu_check.py [--gib 2]
```

Starts a watcher on this very process (standing in for the kernel), then runs
two "cells": the first creates the CUDA context, the second allocates
``--gib`` GiB with torch and holds it for a moment. It prints what the watcher
recorded through NVML (per-process memory, which includes the CUDA context)
against what torch says it allocated. Needs only torch, psutil, nvidia-ml-py
and pyarrow: the records are read from the watcher's journal before any
compaction. Without torch or a CUDA GPU it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GiB = 1 << 30


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:8.3f} GiB"


def cuda_torch(tool: str) -> Any:
    """torch when it sees a CUDA GPU; else None, after one line saying why."""
    try:
        import torch
    except ImportError:
        print(f"{tool}: torch is not installed; nothing to check")
        return None
    if not torch.cuda.is_available():
        print(f"{tool}: no CUDA GPU visible to torch; nothing to check")
        return None
    return torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="GiB to allocate (default 2)")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds to hold the allocation (default 0.5)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # the watcher's log lines
    torch = cuda_torch("gpu_check")
    if torch is None:
        return 0

    from mlt_kernel.hooks import CellContext
    from mlt_kernel.hooks.gpu import GpuHook
    from mlt_kernel.store.journal import journal_name, read_lines
    from mlt_kernel.watcher.handle import WatcherHandle
    from mlt_kernel.watcher.nvml import Gpu

    size = int(args.gib * GiB)
    session = "gpu-check"
    with tempfile.TemporaryDirectory(prefix="mlt-gpu-check-") as tmp:
        exp = Path(tmp)
        handle = WatcherHandle.start(os.getpid(), session, busy_interval=0.05, idle_interval=1.0)
        handle.set_experiment(exp)
        time.sleep(1.0)  # the watcher starts (imports, NVML init)

        handle.cell_started(1, None)  # cell 1: the CUDA context alone
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        time.sleep(args.hold)
        handle.cell_finished(1)
        time.sleep(0.2)  # let the watcher take cell 1's last sample before cell 2 allocates

        hook, cell = GpuHook(), CellContext({})  # what the kernel records for the cell
        hook.pre_cell(cell)
        handle.cell_started(2, None)  # cell 2: the allocation
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
        time.sleep(args.hold)
        direct = Gpu()
        nvml_now = direct.process_memory({os.getpid()})
        direct.close()
        handle.cell_finished(2)
        hook.post_cell(cell)
        allocated_peak = torch.cuda.max_memory_allocated()
        reserved_peak = torch.cuda.max_memory_reserved()
        del block
        torch.cuda.empty_cache()
        time.sleep(0.2)
        handle.stop()

        records, _, _ = read_lines(exp / "journals" / journal_name(session, "watcher"))
    usage = {r["cell_seq"]: r for r in records if r["table"] == "cell_usage"}
    samples = [r for r in records if r["table"] == "samples"]
    utils = [s["gpu_util"] for s in samples if s["gpu_util"] is not None]
    context = usage.get(1, {}).get("peak_gpu_bytes")
    peak = usage.get(2, {}).get("peak_gpu_bytes")

    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'what':<52} {'bytes':>12}")
    print(f"{'allocated by this check':<52} {gib(size):>12}")
    print(f"{'torch.cuda.max_memory_allocated (cell 2)':<52} {gib(allocated_peak):>12}")
    print(f"{'torch.cuda.max_memory_reserved (cell 2)':<52} {gib(reserved_peak):>12}")
    print(
        f"{'kernel hook: gpu_allocator_peak_bytes (cell 2)':<52} {gib(cell.record.get('gpu_allocator_peak_bytes')):>12}"
    )
    print(f"{'watcher: peak_gpu_bytes, cell 1 (CUDA context only)':<52} {gib(context):>12}")
    print(f"{'watcher: peak_gpu_bytes, cell 2 (context + allocation)':<52} {gib(peak):>12}")
    print(f"{'NVML read in this process during cell 2':<52} {gib(nvml_now):>12}")
    if peak is not None and context is not None:
        print(f"{'watcher cell 2 - cell 1 (allocation as NVML saw it)':<52} {gib(peak - context):>12}")
        print(f"ratio (cell 2 - cell 1) / allocated: {(peak - context) / size:.3f}")
    print(
        f"samples: {len(samples)}, cell 2 spans {usage.get(2, {}).get('samples')}; max gpu_util {max(utils, default=None)}"
    )
    if peak is None:
        print("the watcher recorded no GPU memory: see the mlt_kernel.watcher.nvml log line above")
        return 1
    if peak == 0:
        print("NVML lists none of this process's pids on the GPU (a container with its own pid namespace?)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
