"""Copying a whole state into another, with its ids and history (``reconcile state migrate
--to TARGET``): the DuckDB file into PostgreSQL, PostgreSQL into a DuckDB file, or either into
one of its own kind.

What it promises:

* Every table of the state is copied with every row as it is: ids (new ones continue above
  them), the event log, the jobs, the pruned copies, upload sessions, quota, hash cache, and
  the rows of ``schema_migrations`` (when each migration was first applied). Not the run
  lock's own table.
* The source must hold a state; one with an older schema is migrated first, as every open of
  it does. The target is made, or migrated, to the same schema version before any row is
  written.
* Both run locks are held for the whole copy (:meth:`session`, the source's first): nothing
  writes either state meanwhile, so the copy is of one moment.
* The target is written in one transaction: a target holding any row is refused, unless
  ``force``, which empties its tables in that same transaction; the tables are filled from
  CSV (:mod:`reconciler.store.copying`) and each one's row count compared with the source's
  before the commit. A failure leaves the target's rows as they were. A new DuckDB file is made
  under a temporary name and renamed into place once complete
  (:func:`reconciler.store.statefile.create`): it appears whole or not at all.
* After the commit the target is read again: the row counts of every table must equal the
  source's.

Called by :func:`reconciler.ops.migrate_state`; nothing else writes two states at once.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
from psycopg.conninfo import conninfo_to_dict

from reconciler.errors import StateError, UsageError
from reconciler.store.connection import CONNECTION_CONFIG, Connection
from reconciler.store.copying import export_table, import_table, tables
from reconciler.store.db import StateStore, Store
from reconciler.store.migrations import current_version, latest_version, migrate
from reconciler.store.pg import PgConnection, PgLocation
from reconciler.store.postgres import PgStore
from reconciler.store.statefile import create, rollback

MIGRATIONS_TABLE = "schema_migrations"  # copied, but a target holding only it is empty
_DATABASE_ERRORS = (duckdb.Error, psycopg.Error)


class TargetNotEmpty(StateError):
    """The target already holds rows, and ``force`` was not given."""


@dataclass(frozen=True)
class Migrated:
    """What one migrate did: from where, into where, the rows of each table as counted in the
    target after the commit (equal to the source's), and the rows ``force`` replaced."""

    source: str
    target: str
    rows: dict[str, int]
    replaced: int
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class _Dump:
    """The source's tables as CSV files in ``folder``: their columns and row counts."""

    folder: Path
    version: int
    columns: dict[str, list[str]]
    rows: dict[str, int]


def migrate_state(source: Store, target: Store, force: bool = False) -> Migrated:
    """Copy every table of ``source`` into ``target`` (see the module's docstring)."""
    started = time.monotonic()
    if same_state(source, target):
        raise UsageError(f"{source.label} is the target too: migrate --to another state")
    if not source.exists():
        raise StateError(
            f"there is no state in {source.label} to migrate (a command that writes creates it)"
        )
    with ExitStack() as held:
        held.enter_context(source.session())
        held.enter_context(target.session())
        with tempfile.TemporaryDirectory(prefix="reconcile-migrate-") as scratch:
            dump = _export(source, Path(scratch))
            replaced = _write(target, dump, force)
        counted = _counts(target)
    if counted != dump.rows:
        differ = ", ".join(
            f"{table} {counted.get(table, 0)} (source {dump.rows.get(table, 0)})"
            for table in sorted(set(counted) | set(dump.rows))
            if counted.get(table) != dump.rows.get(table)
        )
        raise StateError(f"{target.label} was written, but its row counts differ: {differ}")
    return Migrated(source.name, target.name, counted, replaced, time.monotonic() - started)


def same_state(one: Store, other: Store) -> bool:
    """Whether two stores are one state (as far as their names tell)."""
    if isinstance(one, StateStore) and isinstance(other, StateStore):
        return os.path.realpath(one.path) == os.path.realpath(other.path)
    if isinstance(one, PgStore) and isinstance(other, PgStore):
        return _where(one.location) == _where(other.location)
    return False


def _where(location: PgLocation) -> tuple[str, ...]:
    found = conninfo_to_dict(location.conninfo)
    host = str(found.get("host") or "localhost")
    host = "localhost" if host in ("127.0.0.1", "::1") else host
    return host, str(found.get("port") or "5432"), str(found.get("dbname")), location.schema


# -- the source -------------------------------------------------------------------------------


def _export(source: Store, folder: Path) -> _Dump:
    """Every table of the source as a CSV file, from one read (migrated first if older)."""
    with source.reading() as con, _failures(source.label, "reading"):
        if con is None:
            raise StateError(f"there is no state in {source.label} to migrate")
        version = current_version(con)
        if version != latest_version():  # reading() migrates an older one
            raise StateError(
                f"{source.label} has schema version {version}; this reconcile migrates "
                f"version {latest_version()}"
            )
        _iso_dates(con)
        columns = {table: _columns(con, table) for table in tables(con)}
        rows = {}
        for table, names in columns.items():
            rows[table] = _count(con, table)
            export_table(con, table, names, folder / f"{table}.csv")
    return _Dump(folder, version, columns, rows)


# -- the target -------------------------------------------------------------------------------


def _write(target: Store, dump: _Dump, force: bool) -> int:
    """Write the dump into the target in one transaction; the rows it replaced."""
    if isinstance(target, StateStore) and not target.exists():
        replaced = 0

        def fill(con: duckdb.DuckDBPyConnection) -> None:
            nonlocal replaced
            migrate(con, str(target.path))
            con.execute("BEGIN TRANSACTION")
            try:
                replaced = _fill(con, target.label, dump, force)
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise

        with _failures(target.label, "writing"):
            create(target.real_path, fill, CONNECTION_CONFIG)
        target.lock.bind_identity(target.lock_timeout)  # the file it now locks is a new one
        return replaced
    with target.writing() as con, _failures(target.label, "writing"):
        return _fill(con, target.label, dump, force)


def _fill(con: Connection, label: str, dump: _Dump, force: bool) -> int:
    """Inside the target's transaction: check it, empty it, copy the dump into it."""
    version = current_version(con)
    if version != dump.version:
        raise StateError(
            f"{label} has schema version {version} and the source {dump.version}; nothing was "
            "copied"
        )
    found = {table: _columns(con, table) for table in tables(con)}
    if {t: set(c) for t, c in found.items()} != {t: set(c) for t, c in dump.columns.items()}:
        differ = sorted(set(found) ^ set(dump.columns)) or sorted(
            t for t in found if set(found[t]) != set(dump.columns[t])
        )
        raise StateError(
            f"{label} has tables or columns the source has not ({', '.join(differ)}), at the "
            "same schema version; nothing was copied"
        )
    held = {t: n for t in found if t != MIGRATIONS_TABLE and (n := _count(con, t))}
    if held and not force:
        where = ", ".join(f"{n} in {t}" for t, n in sorted(held.items()))
        raise TargetNotEmpty(
            f"{label} already holds {sum(held.values())} rows ({where}); nothing was copied. "
            "Pass --force to replace them, or migrate --to a new state"
        )
    _iso_dates(con)
    for table in found:
        con.execute(f"DELETE FROM {table}")
    for table, columns in dump.columns.items():
        copied = import_table(con, table, columns, dump.folder / f"{table}.csv")
        if copied != dump.rows[table]:
            raise StateError(
                f"copying {table} into {label} gave {copied} rows where the source has "
                f"{dump.rows[table]}; nothing was copied"
            )
    return sum(held.values())


def _counts(target: Store) -> dict[str, int]:
    """The rows of each table of the target, read afresh after the commit."""
    with target.reading() as con, _failures(target.label, "reading"):
        if con is None:
            raise StateError(f"{target.label} holds no state after the copy")
        return {table: _count(con, table) for table in tables(con)}


# -- helpers ----------------------------------------------------------------------------------


def _columns(con: Connection, table: str) -> list[str]:
    """A table's columns in order, asked afresh (the two states are two databases)."""
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [name for (name,) in rows]


def _count(con: Connection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _iso_dates(con: Connection) -> None:
    """PostgreSQL writes dates as its DateStyle says; the CSV must hold ISO ones, which DuckDB
    reads and writes. For this transaction only."""
    if isinstance(con, PgConnection):
        con.execute("SET LOCAL DateStyle = 'ISO, YMD'")


@contextmanager
def _failures(label: str, doing: str) -> Iterator[None]:
    """A database error in the copy as a one-line StateError (the transaction it happened in
    is rolled back by the store on its way out)."""
    try:
        yield
    except _DATABASE_ERRORS as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise StateError(f"{doing} {label} failed: {first}; nothing was copied") from None
