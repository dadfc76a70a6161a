"""The resource watcher: a process beside the kernel that samples memory, CPU and GPU.

``handle`` (the kernel's side), ``protocol`` (the lines between the two),
``loop`` (the watcher process), ``sampler``, ``procfs`` and ``nvml`` (readings).
Uses ``store`` and ``core``.
"""
