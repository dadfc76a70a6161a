"""The bottom layer: facts every other layer shares, with no I/O of its own beyond files.

``schema`` (tables and columns), ``layout`` (the experiment folder's shape and
names), ``names`` (checks on names a user gives), ``units``, ``errors`` (every
exception), ``safeio`` (opening files below an untrusted folder), ``gilio`` and
``children`` (process helpers). Imports nothing else of MLTrack.
"""
