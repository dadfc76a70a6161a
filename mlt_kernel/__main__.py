"""``python -m mlt_kernel -f CONNECTION_FILE``: start the Python (MLTrack) kernel."""

import os
import sys

# Like ipykernel_launcher: the working directory must not shadow our imports
# (a notebook folder with its own duckdb.py or pandas.py).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    from mlt_kernel.recording.kernel import MLTrackKernel

    IPKernelApp.launch_instance(kernel_class=MLTrackKernel)
