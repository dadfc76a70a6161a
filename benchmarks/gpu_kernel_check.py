"""A real MLTrack kernel on an NVIDIA GPU: what a run that allocates with torch records.

```text
python benchmarks/gpu_kernel_check.py [--gib 2]
```

Installs the kernelspec into a temporary prefix, starts the kernel through
jupyter_client in an isolated Jupyter environment, and runs three cells: one
that sets ``EXP_PATH`` and creates the CUDA context, a ``# mlt: record`` run
that allocates ``--gib`` GiB with torch, and a CPU-only run. After shutdown it
reads the experiment back through ``mlt_kernel.Experiment`` and prints each
run's peak GPU memory (NVML, from the watcher), torch's allocator peak (from
the kernel) and the largest GPU sample of the run's timeline. Exits 1 when the
GPU run shows no GPU memory, 0 otherwise; without torch or a CUDA GPU it says
so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

GiB = 1 << 30


def gib(n: object) -> str:
    try:
        return f"{int(n) / GiB:8.3f} GiB"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "       -"


def run_cell(kc: object, code: str) -> str:
    reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: None)  # type: ignore[attr-defined]
    return reply["content"]["status"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="GiB the run allocates (default 2)")
    args = parser.parse_args()
    from gpu_check import cuda_torch

    torch = cuda_torch("gpu_kernel_check")
    if torch is None:
        return 0

    from jupyter_client.manager import KernelManager

    from mlt_kernel import Experiment
    from mlt_kernel.kernelspec import install

    size = int(args.gib * GiB)
    with tempfile.TemporaryDirectory(prefix="mlt-gpu-kernel-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        env = {
            **os.environ,
            "HOME": str(home),
            "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
            "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
            "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
            "JUPYTER_PATH": str(tmp / "prefix/share/jupyter"),
            "IPYTHONDIR": str(home / ".ipython"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        home.mkdir()
        os.environ.update(env)  # the kernelspec lookup below happens in this process
        install(prefix=str(tmp / "prefix"))
        exp = tmp / "exp"
        km = KernelManager(kernel_name="mltrack")
        km.start_kernel(cwd=str(tmp), env=env)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            statuses = [
                run_cell(
                    kc,
                    f"EXP_PATH = {str(exp)!r}\nimport time, torch\ntorch.zeros(1, device='cuda'); torch.cuda.synchronize()",
                ),
                run_cell(
                    kc,
                    "# mlt: record name=gpu-alloc\n"
                    f"block = torch.empty({size}, dtype=torch.uint8, device='cuda')\n"
                    "block.fill_(1); torch.cuda.synchronize(); time.sleep(0.6)\n"
                    "del block; torch.cuda.empty_cache()",
                ),
                run_cell(kc, "# mlt: record name=cpu-only\nsum(range(10**6)); time.sleep(0.3)"),
            ]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        time.sleep(0.5)
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}; cell statuses {statuses}")
        ex = Experiment(exp)
        runs = ex.runs().set_index("name")
        cells = ex.cells()
        print(f"{'run':<12} {'status':<8} {'peak_gpu (NVML)':>16} {'torch peak':>14} {'max gpu sample':>16} samples")
        for name in ("gpu-alloc", "cpu-only"):
            row = runs.loc[name]
            samples = ex.samples(run=name)
            top = samples["gpu_bytes"].max() if len(samples) else None
            print(
                f"{name:<12} {row['status']:<8} {gib(row.get('peak_gpu_bytes')):>16} "
                f"{gib(row.get('gpu_allocator_peak_bytes')):>14} {gib(top):>16} {len(samples)}"
            )
        print(f"allocated by the run: {gib(size)}")
        print("cells:")
        print(
            cells[
                ["execution_count", "status", "wall_s", "peak_rss_bytes", "peak_gpu_bytes", "gpu_allocator_peak_bytes"]
            ].to_string(index=False)
        )
        gpu_peak = runs.loc["gpu-alloc"].get("peak_gpu_bytes")
        ex.close()
    if gpu_peak is None or gpu_peak != gpu_peak or int(gpu_peak) < size:
        print(f"FAIL: the GPU run's peak_gpu_bytes {gpu_peak} is below the {size} bytes it allocated")
        return 1
    print("OK: the GPU run's peak covers its allocation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
