"""Writing and keeping records: append-only journals, Parquet files, compaction, recovery.

``journal`` (the line format, writers, incremental readers), ``parquet`` (files,
footers, merges), ``destinations`` (a session's writers per folder),
``compaction`` and ``recovery`` (sessions that ended or died), ``postmortem``
(what a dead kernel left open). Uses only ``core``; never DuckDB.
"""
