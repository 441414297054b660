"""The recorded state: one DuckDB file holding the seed's seven tables.

:mod:`.db` opens it (briefly) and writes in bulk, :mod:`.lock` keeps one writing command at a
time, :mod:`.migrations` versions its schema, :mod:`.queries` reads reports out of it, and
:mod:`.records` writes events, conflict resolutions and the seed's sample rows.
"""
