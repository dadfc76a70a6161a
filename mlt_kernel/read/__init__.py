"""Reading an experiment: the journal and Parquet scan, DuckDB queries, ``Experiment``.

The only layer that imports DuckDB. Uses ``store`` and ``core``.
"""
