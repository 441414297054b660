"""Versioned, forward-only migrations of the state file's schema.

Each migration is a SQL file ``vNNN_name.sql`` in this folder, applied in order, each in its
own transaction together with its row in ``schema_migrations``: a migration that fails leaves
the file exactly as it was. Called by :mod:`reconciler.store.db` whenever a command opens the
state file for writing, and by :mod:`reconciler.store.postgres` for a PostgreSQL state. A
state whose schema is newer than this code knows is refused.

PostgreSQL runs the same numbered files. Where DuckDB's SQL is not PostgreSQL's, the file
``postgresql/vNNN_name.sql`` replaces it (the same version, the same tables and columns), and
DuckDB's unsigned 64-bit type becomes ``NUMERIC(20)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import duckdb
import psycopg

from reconciler.errors import StateError
from reconciler.store.connection import Connection, dialect, utcnow

_NAME = re.compile(r"^v(\d{3})_([a-z0-9_]+)\.sql$")


class OutdatedSchema(StateError):
    """The state needs a migration that the caller may not run (a dry run)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def for_postgresql(migration: Migration) -> Migration:
    """The migration as PostgreSQL runs it."""
    override = resources.files(__package__).joinpath(
        "postgresql", f"v{migration.version:03d}_{migration.name}.sql"
    )
    sql = override.read_text("utf-8") if override.is_file() else migration.sql
    return Migration(migration.version, migration.name, re.sub(r"\bUBIGINT\b", "NUMERIC(20)", sql))


@cache
def all_migrations() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1)), f"migration numbers have gaps: {versions}"
    return tuple(found)


def latest_version() -> int:
    return all_migrations()[-1].version


def current_version(con: Connection) -> int:
    """The schema version of an open state; 0 for an empty one."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations' "
        "AND table_schema = current_schema()"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def check_not_newer(version: int, where: str) -> None:
    if version > latest_version():
        raise StateError(
            f"the state file {where} has schema version {version}, written by a newer version "
            f"of reconcile (this one knows up to version {latest_version()}); upgrade reconcile"
        )


def migrate(con: Connection, where: str) -> list[int]:
    """Apply every pending migration, one transaction each. Returns the versions applied."""
    version = current_version(con)
    check_not_newer(version, where)
    applied = []
    for migration in all_migrations():
        if migration.version <= version:
            continue
        if dialect(con) == "postgresql":
            migration = for_postgresql(migration)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP)"
            )
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, utcnow()],
            )
            con.execute("COMMIT")
        except (duckdb.Error, psycopg.Error) as exc:
            con.execute("ROLLBACK")
            raise StateError(
                f"migrating the state file {where} to schema version {migration.version} "
                f"({migration.name}) failed, and it was left as it was: {exc}"
            ) from exc
        applied.append(migration.version)
    return applied
