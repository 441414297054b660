"""Whole tables moved between states: a PostgreSQL state's tables into an in-memory DuckDB
for planning, and every table of one state into another (``reconcile state migrate``).

Rows travel as CSV, which both databases write and read in bulk: ``COPY ... TO STDOUT`` and
``COPY ... FROM STDIN`` on PostgreSQL, ``COPY ... TO`` and ``read_csv`` on DuckDB. In both,
NULL is an empty unquoted field and an empty string a quoted one, so neither becomes the
other. Columns are named, in the order of the target's table, so the two schemas may order
them differently (a migration's ``ADD COLUMN`` appends).

The planner's SQL is DuckDB's (its joins, ``arg_max``, ``GLOB``, the fingerprint): for a
PostgreSQL state it runs over a snapshot of the recorded tables copied into memory here, read
in one ``REPEATABLE READ`` transaction, so that planning never holds anything on the server.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from reconciler.store.bulk import column_types
from reconciler.store.connection import Connection
from reconciler.store.migrations import migrate
from reconciler.store.pg import PgConnection

# What planning never reads: the event log, the largest table, and the migrations (the copy
# is migrated by itself). Of the jobs, the plan names only the last apply: its newest row.
NOT_PLANNED = frozenset({"sync_events_log", "schema_migrations"})
SNAPSHOT_ROWS = {
    "sync_jobs": "WHERE id IN (SELECT id FROM sync_jobs WHERE completed_at IS NOT NULL "
    "ORDER BY completed_at DESC, id DESC LIMIT 1)",
}


def tables(con: Connection) -> list[str]:
    """The state's tables (not the run lock's), in name order."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        "current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'run_lease' "
        "ORDER BY table_name"
    ).fetchall()
    return [name for (name,) in rows]


def export_table(
    con: Connection, table: str, columns: Sequence[str], path: Path, rows: str = ""
) -> None:
    """Write the rows of ``table`` (those columns, in that order; only those a ``WHERE``
    clause of this module's, ``rows``, picks) to a CSV file."""
    names = ", ".join(columns)
    if isinstance(con, PgConnection):
        with (
            open(path, "wb") as out,
            con.raw.cursor().copy(
                f"COPY (SELECT {names} FROM {table} {rows}) TO STDOUT (FORMAT csv)"
            ) as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        return
    # DuckDB writes a header line unless told not to; PostgreSQL's COPY and read_csv take none
    con.execute(
        f"COPY (SELECT {names} FROM {table} {rows}) TO ? (FORMAT csv, HEADER false)",
        [os.fspath(path)],
    )


def import_table(con: Connection, table: str, columns: Sequence[str], path: Path) -> int:
    """Append the rows of a CSV file to ``table``; how many."""
    if path.stat().st_size == 0:
        return 0
    if isinstance(con, PgConnection):
        with (
            con.raw.cursor().copy(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
            ) as copy,
            open(path, "rb") as source,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
    else:
        types = column_types(con, table, columns)
        spec = ", ".join(f"'{c}': '{types[c]}'" for c in columns)
        con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM read_csv(?, "
            f"columns = {{{spec}}}, header = false, delim = ',', quote = '\"', escape = '\"', "
            "auto_detect = false, allow_quoted_nulls = false)",
            [os.fspath(path)],
        )
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def copy_tables(
    source: Connection,
    target: Connection,
    names: Sequence[str],
    scratch: Path,
    picked: dict[str, str] | None = None,
) -> dict[str, int]:
    """Copy the rows of each table in ``names`` from ``source`` to ``target`` (whose tables
    exist, with every column of the source's); rows per table."""
    counts = {}
    picked = picked or {}
    for table in names:
        columns = list(column_types(target, table))
        path = scratch / f"{table}.csv"
        export_table(source, table, columns, path, picked.get(table, ""))
        counts[table] = import_table(target, table, columns, path)
        path.unlink()
    return counts


@contextmanager
def planning_snapshot(con: PgConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding the recorded tables that planning reads, copied from
    ``con`` (a read transaction: one consistent snapshot)."""
    memory = duckdb.connect(config={"threads": 1})
    try:
        migrate(memory, ":memory:")
        with tempfile.TemporaryDirectory(prefix="reconcile-snapshot-") as scratch:
            wanted = [t for t in tables(memory) if t not in NOT_PLANNED]
            copy_tables(con, memory, wanted, Path(scratch), SNAPSHOT_ROWS)
        yield memory
    finally:
        memory.close()
