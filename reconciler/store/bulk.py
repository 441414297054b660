"""Bulk writes to the state file: many rows in one statement, never row by row.

:func:`insert_rows` appends rows with new ids, :func:`upsert_rows` updates or inserts them by a
key, :func:`temp_table` stages Python rows as a temporary table for set-based SQL (planning
joins against it). Every store module that records rows writes through these; they run inside
the caller's transaction (:meth:`reconciler.store.db.StateStore.writing`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from reconciler.store.connection import Connection, dialect

SEED_TABLES = (
    "source_assets",
    "sync_platforms",
    "sync_configurations",
    "sync_jobs",
    "platform_assets",
    "sync_conflicts",
    "sync_events_log",
)
CSV_ROWS = 20_000  # above this, rows travel through a temporary CSV file

_TYPES: dict[tuple[str, str], dict[str, str]] = {}


def column_types(con: Connection, table: str, need: Sequence[str] = ()) -> dict[str, str]:
    """The SQL type of each column of a table, in the connection's database. Cached: the
    schema only grows (by migration), so a cached answer lacking a needed column is simply
    asked again."""
    cached = _TYPES.get((dialect(con), table))
    if cached is not None and all(c in cached for c in need):
        return cached
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        [table],
    ).fetchall()
    _TYPES[(dialect(con), table)] = types = {name: dtype for name, dtype in rows}
    return types


# Tables whose rows move on to a history table, keeping their id: new ids go above both, so
# that an id that jobs, events or conflicts refer to is never given to another row.
ID_HISTORY = {"platform_assets": "platform_assets_pruned"}


# PostgreSQL: the advisory lock that new ids are given under, until the transaction ends.
# Queue workers write side by side (each under its own lease, not the run lock): two of
# them reading the same max(id) would give one id twice. One key for every table, so that
# two writers can never wait for each other's in opposite order.
ID_LOCK = 0x6D656469  # "medi"


def _last_id(con: Connection, table: str) -> int:
    if dialect(con) == "postgresql":
        con.execute("SELECT pg_advisory_xact_lock(?)", [ID_LOCK])
    sql = f"SELECT coalesce(max(id), 0) FROM {table}"
    history = ID_HISTORY.get(table)
    if history is not None:
        sql = f"SELECT greatest(({sql}), (SELECT coalesce(max(id), 0) FROM {history}))"
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def insert_rows(
    con: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[int]:
    """Insert many rows in one statement, with new ids (max(id) + 1, + 2, ...).

    One ``unnest`` of a Python list per column is a single statement whatever the row count:
    10,000 rows take milliseconds, where row-by-row inserts take seconds.
    """
    if not rows:
        return []
    types = column_types(con, table, columns)
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise ValueError(f"{table} has no column {unknown}")
    base = _last_id(con, table)
    n = len(rows)
    values = [list(col) for col in zip(*rows, strict=True)]
    unnests = ", ".join(f"unnest(?::{types[c]}[]) AS c{i}" for i, c in enumerate(columns))
    picks = ", ".join(f"c{i}" for i in range(len(columns)))
    con.execute(
        f"INSERT INTO {table} (id, {', '.join(columns)}) "
        f"SELECT ? + ord, {picks} FROM (SELECT unnest(?::BIGINT[]) AS ord, {unnests}) AS rows",
        [base, list(range(1, n + 1)), *values],
    )
    return list(range(base + 1, base + n + 1))


BATCH_ROWS = 10_000  # rows per statement of insert_batched


def insert_batched(
    con: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[int]:
    """:func:`insert_rows` for many rows: one statement per :data:`BATCH_ROWS`, in the
    caller's transaction, with the same ids one statement would give. DuckDB holds every
    value of a statement's lists at once: admitting 100,000 jobs (their rows and their
    copies', one statement each) peaked 330 MB higher than in batches, for the same time."""
    ids: list[int] = []
    for start in range(0, len(rows), BATCH_ROWS):
        ids += insert_rows(con, table, columns, rows[start : start + BATCH_ROWS])
    return ids


def temp_table(
    con: Connection, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> None:
    """(Re)create a temporary table from Python rows in one statement; columns are
    (name, SQL type) pairs."""
    if dialect(con) == "postgresql":
        _pg_temp_table(con, name, columns, rows)
        return
    if not rows:
        spec = ", ".join(f"{c} {t}" for c, t in columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({spec})")
        return
    if len(rows) > CSV_ROWS and not any(t.endswith("]") for _, t in columns):
        _temp_table_from_csv(con, name, columns, rows)
        return
    unnests = ", ".join(f"unnest(?::{t}[]) AS {c}" for c, t in columns)
    values = [list(col) for col in zip(*rows, strict=True)]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {unnests}", values)


PG_TYPES = {"DOUBLE": "DOUBLE PRECISION", "UBIGINT": "NUMERIC(20)"}


def _pg_temp_table(
    con: Connection, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> None:
    """PostgreSQL: a temporary table dropped with the transaction, filled by one statement."""
    con.execute(f"DROP TABLE IF EXISTS {name}")
    spec = ", ".join(f"{c} {PG_TYPES.get(t, t)}" for c, t in columns)
    con.execute(f"CREATE TEMP TABLE {name} ({spec}) ON COMMIT DROP")
    if rows:
        unnests = ", ".join(f"unnest(?::{PG_TYPES.get(t, t)}[])" for _c, t in columns)
        values = [list(col) for col in zip(*rows, strict=True)]
        con.execute(f"INSERT INTO {name} SELECT {unnests}", values)


def _temp_table_from_csv(
    con: Connection, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> None:
    """Large tables: a CSV file that DuckDB reads itself costs half the memory of handing
    it millions of Python values (None is written as an empty field, read back as NULL)."""
    with tempfile.TemporaryDirectory(prefix="reconcile-rows-") as folder:
        path = os.path.join(folder, "rows.csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
        spec = ", ".join(f"'{c}': '{t}'" for c, t in columns)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv(?, header = false, "
            f"delim = ',', quote = '\"', escape = '\"', columns = {{{spec}}})",
            [path],
        )


def upsert_rows(
    con: Connection,
    table: str,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    keep_when_null: Sequence[str] = (),
) -> dict[Any, int]:
    """Update rows whose ``key`` exists, insert the others with new ids; all in bulk.

    ``columns`` must include ``key``; a column in ``keep_when_null`` keeps its old value
    when the new one is NULL. Returns the id of every row by key.
    """
    if not rows:
        return {}
    types = column_types(con, table, columns)
    staged = f"_incoming_{table}"
    temp_table(con, staged, [(c, types[c]) for c in columns], rows)
    others = [c for c in columns if c != key]
    if others:
        sets = ", ".join(
            f"{c} = coalesce(i.{c}, {table}.{c})" if c in keep_when_null else f"{c} = i.{c}"
            for c in others
        )
        con.execute(f"UPDATE {table} SET {sets} FROM {staged} i WHERE {table}.{key} = i.{key}")
    names = ", ".join(columns)
    picks = ", ".join(f"i.{c}" for c in columns)
    missing = f"FROM {staged} i WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = i.{key})"
    if key == "id" or "id" not in types:  # the rows bring their own key
        con.execute(f"INSERT INTO {table} ({names}) SELECT {picks} {missing}")
        con.execute(f"DROP TABLE {staged}")
        return {}
    base = _last_id(con, table)
    con.execute(
        f"INSERT INTO {table} (id, {names}) "
        f"SELECT ? + row_number() OVER (ORDER BY i.{key}), {picks} {missing}",
        [base],
    )
    con.execute(f"DROP TABLE {staged}")
    ids = con.execute(
        f"SELECT t.{key}, t.id FROM {table} t JOIN (SELECT unnest(?::{types[key]}[]) AS k) ks "
        f"ON t.{key} = ks.k",
        [[r[columns.index(key)] for r in rows]],
    ).fetchall()
    return dict(ids)


def table_rows(con: Connection) -> dict[str, int]:
    """Row count of each of the seed's tables."""
    out = {}
    for table in SEED_TABLES:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        out[table] = int(row[0]) if row else 0
    return out
