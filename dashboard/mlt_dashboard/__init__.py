"""The MLTrack dashboard: a local Panel app over an experiment folder.

``mlt-dashboard PATH`` (``cli``) serves four pages (``summary``, ``run``,
``cells``, ``documents``), each a ``pn.viewable.Viewer`` built per browser
session inside the shell of ``app``; ``server`` serves them from 127.0.0.1 with
local resources only, behind the access token of ``access``. All SQL lives in
``queries``; charts are Bokeh models from ``charts``; ``export`` writes the same
content as one offline HTML file. The dashboard reads the folder through
``mlt_kernel``'s read API and writes only through its documents API; it never
imports the kernel.
"""
