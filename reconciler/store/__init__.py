"""The recorded state: one DuckDB file holding the seed's seven tables, and the only package
that runs SQL or imports a database driver.

:mod:`.backend` names what the stages need from the state (the protocol a PostgreSQL backend
would implement too) and :mod:`.embedded` is the DuckDB file behind it. Beneath it:
:mod:`.db` opens the file (briefly) through :mod:`.connection`, :mod:`.bulk` writes rows in
bulk, :mod:`.lock` keeps one writing command at a time, :mod:`.statefile` makes the file
safely and explains a broken one, :mod:`.migrations` versions its schema, :mod:`.events`
appends to the event log, :mod:`.records` writes conflict resolutions, retired copies and
the seed's sample rows, :mod:`.hash_cache` keeps the hashes of masters, and :mod:`.queries`
reads reports out of it.
"""
