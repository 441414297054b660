"""Read-only access to a PostgreSQL state for a role (``reconcile state grant-readonly ROLE``):
BI tools, dashboards and people who run the seed's SQL, none of whom may write.

The statements are the shipped template ``grant_readonly.sql`` (beside this module), with the
database, the state's schema, the role and the role reconcile writes as put in as identifiers
by :mod:`psycopg.sql` (quoted, never spliced in as text). Run, they are one transaction; with
``run=False`` they are only composed, without connecting, for a DBA to read and run.

A DuckDB file has no roles: asking is a :class:`UsageError` that says how a BI tool reads it
without keeping writers out. Called by :func:`reconciler.ops.grant_readonly`.
"""

from __future__ import annotations

import getpass
import os
from functools import cache
from importlib import resources

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict

from reconciler.errors import StateError, UsageError
from reconciler.store.db import Store
from reconciler.store.migrations import current_version
from reconciler.store.pg import PgLocation, connect, schema_exists
from reconciler.store.postgres import PgStore

NO_ROLES = (
    "{label} is a DuckDB file, which has no roles to grant: a BI tool reads a copy of it "
    "without keeping writers out (`reconcile state migrate --to copy.duckdb`, taken under the "
    "run lock), or the state moves to PostgreSQL (`reconcile state migrate --to "
    "postgresql://...`), where `grant-readonly` gives a role read-only access"
)


@cache
def template() -> str:
    """The shipped statements, with ``{database}``, ``{schema}``, ``{role}`` and ``{owner}``."""
    return resources.files(__package__).joinpath("grant_readonly.sql").read_text("utf-8")


def compose(database: str, schema: str, role: str, owner: str) -> pgsql.Composed:
    """The statements for these names, each one quoted as an identifier."""
    return pgsql.SQL(template()).format(
        database=pgsql.Identifier(database),
        schema=pgsql.Identifier(schema),
        role=pgsql.Identifier(role),
        owner=pgsql.Identifier(owner),
    )


def grant_readonly(store: Store, role: str, run: bool = True) -> str:
    """Give ``role`` read-only access to the state (``run``), or only compose the statements;
    the SQL, as run or to run."""
    if not isinstance(store, PgStore):
        raise UsageError(NO_ROLES.format(label=store.label))
    if not role:
        raise UsageError("grant-readonly needs the name of a role")
    if not run:
        database, owner = _named(store.location)
        return compose(database, store.location.schema, role, owner).as_string(None)
    con = connect(store.location, store.command)
    try:
        if not schema_exists(con) or current_version(con) == 0:
            raise StateError(
                f"there is no state in {store.label} yet: a command that writes creates it "
                "(or grant-readonly --print gives the statements to run later)"
            )
        database = con.raw.info.dbname
        owner = con.raw.info.user  # who reconcile writes as, and so who makes new tables
        statements = compose(database, store.location.schema, role, owner)
        with con.raw.transaction():
            con.raw.execute(statements)
        return statements.as_string(con.raw)
    except psycopg.Error as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise StateError(
            f"granting {role} read-only access to {store.label} failed: {first}; nothing was "
            "granted"
        ) from None
    finally:
        con.close()


def _named(location: PgLocation) -> tuple[str, str]:
    """The database and user a connection to ``location`` would have, as libpq picks them
    without connecting: the URL's, else PGDATABASE and PGUSER, else the login name."""
    found = conninfo_to_dict(location.conninfo)
    user = str(found.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    database = str(found.get("dbname") or os.environ.get("PGDATABASE") or user)
    return database, user
