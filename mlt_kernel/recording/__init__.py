"""Recording cells: the kernel, the IPython extension, the recorder and its runs.

Uses every layer below it; only ``api`` and ``cli`` sit above.
"""
