"""Connections to a PostgreSQL state: where it is (a ``postgresql://`` URL and a schema), the
password (from libpq's own ``PGPASSWORD`` or ``~/.pgpass``, or an environment variable the
URL names, never from the command line), and a connection that takes the store's SQL as the
DuckDB file does.

The store's modules write their SQL once, with DuckDB's ``?`` and ``$name`` placeholders and
SQL that both databases run; :class:`PgConnection` turns the placeholders into psycopg's and
hands out psycopg cursors, which fetch like DuckDB's. Each connection works in the state's
schema (``search_path``), in autocommit mode: the store's ``BEGIN`` ... ``COMMIT`` make its
transactions.

Used by :mod:`reconciler.store.postgres` (the store) and :mod:`reconciler.store.lease` (its
run lock).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql

from reconciler.errors import StateError

SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "mediasync"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OUR_PARAMS = ("schema", "password_env", "lease_ttl")


def is_url(value: str) -> bool:
    """Whether a ``--state`` value names a PostgreSQL state rather than a DuckDB file."""
    return value.lower().startswith(SCHEMES)


@dataclass(frozen=True)
class PgLocation:
    """A PostgreSQL state: the server and database (``conninfo``, a libpq URL without our own
    parameters), the schema holding the tables, and where the password comes from."""

    conninfo: str
    schema: str = DEFAULT_SCHEMA
    password_env: str | None = None  # an environment variable holding the password
    lease_ttl: float = 60.0  # seconds a run lock lives without a heartbeat

    @staticmethod
    def parse(value: str) -> PgLocation:
        """Read ``postgresql://USER@HOST:PORT/DB?schema=S&password_env=VAR``; other query
        parameters (``sslmode`` ...) go to libpq. A password written in the URL is refused:
        it would be seen in the process list and the shell history."""
        parts = urlsplit(value)
        if parts.password is not None:
            raise StateError(
                "the state URL holds a password: remove it, and give it in PGPASSWORD, "
                "~/.pgpass, or an environment variable named by ?password_env=NAME"
            )
        if not parts.hostname and not parts.path.strip("/"):
            raise StateError(f"the state URL {value!r} names no server or database")
        params = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in params if k in _OUR_PARAMS}
        rest = [(k, v) for k, v in params if k not in _OUR_PARAMS]
        schema = ours.get("schema", DEFAULT_SCHEMA)
        if not _IDENTIFIER.match(schema):
            raise StateError(
                f"the state schema {schema!r} is not a plain lower-case SQL name "
                "(letters, digits and _, starting with a letter or _)"
            )
        try:
            ttl = float(ours.get("lease_ttl", "60"))
        except ValueError:
            ttl = -1.0
        if not 1 <= ttl <= 86_400:
            raise StateError("the state URL's lease_ttl must be a number of seconds, 1 to 86400")
        conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
        return PgLocation(conninfo, schema, ours.get("password_env") or None, ttl)

    def describe(self) -> str:
        """The state as people are shown it: the URL with its schema, never a password."""
        parts = urlsplit(self.conninfo)
        user = f"{quote(unquote(parts.username))}@" if parts.username else ""
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{user}{host}{port}{parts.path} (schema {self.schema})"

    def password(self) -> str | None:
        """The password from the named environment variable (else libpq finds one)."""
        if self.password_env is None:
            return None
        found = os.environ.get(self.password_env)
        if not found:
            raise StateError(
                f"the state URL takes its password from ${self.password_env}, which is not set"
            )
        return found


# -- the SQL ----------------------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|\$[a-z_]+|%", re.IGNORECASE)


@lru_cache(maxsize=512)
def translate(sql: str, with_params: bool) -> str:
    """DuckDB's placeholders as psycopg's: ``?`` as ``%s``, ``$name`` as ``%(name)s``, and a
    literal ``%`` doubled when parameters are given (in quoted text too, where psycopg still
    looks for placeholders). A ``?`` or ``$`` in quoted text stays as it is."""

    def swap(match: re.Match[str]) -> str:
        token = match[0]
        if token == "?":
            return "%s"
        if token == "%":
            return "%%" if with_params else "%"
        if token.startswith("$"):
            return f"%({token[1:]})s"
        return token.replace("%", "%%")  # psycopg reads % inside quoted text too

    return _TOKENS.sub(swap, sql) if with_params else sql


class PgCursor:
    """A psycopg cursor that fetches as DuckDB's does: a statement that returns no rows (an
    ``UPDATE`` without ``RETURNING``) fetches one row holding the number of rows it changed,
    which the store's modules read."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor
        self._counted = False

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def _count(self) -> list[tuple[int]]:
        if self._counted:
            return []
        self._counted = True
        return [(self._cursor.rowcount,)]

    def fetchone(self) -> Any:
        if self._cursor.description is None:
            counted = self._count()
            return counted[0] if counted else None
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        if self._cursor.description is None:
            return list(self._count())
        return self._cursor.fetchall()

    def fetchmany(self, size: int = 1) -> list[Any]:
        if self._cursor.description is None:
            return list(self._count())
        return self._cursor.fetchmany(size)


class PgConnection:
    """A psycopg connection that takes the store's SQL: ``execute`` returns a cursor with
    ``fetchone``, ``fetchall``, ``fetchmany`` and ``description``, as DuckDB's does."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any], location: PgLocation) -> None:
        self.raw = raw
        self.location = location

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> PgCursor:
        with_params = params is not None and len(params) > 0
        cursor = self.raw.cursor()
        query = translate(sql, with_params)
        cursor.execute(query, params if with_params else None)
        return PgCursor(cursor)

    def close(self) -> None:
        self.raw.close()


def connect(location: PgLocation, application: str = "reconcile") -> PgConnection:
    """Open a connection to the state's database, working in its schema."""
    try:
        raw = psycopg.connect(
            location.conninfo,
            autocommit=True,
            # values bound on the client, as DuckDB's SQL expects: a NULL parameter needs no
            # type (``? IS NULL``), and a list is an array literal for ``?::T[]``
            cursor_factory=psycopg.ClientCursor,
            connect_timeout=10,
            application_name=application[:60],
            password=location.password(),
        )
    except psycopg.Error as exc:
        raise unreachable(exc, location) from None
    try:
        raw.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(location.schema)))
        raw.execute("SET TIME ZONE 'UTC'")
    except psycopg.Error as exc:
        raw.close()
        raise unreachable(exc, location) from None
    return PgConnection(raw, location)


def unreachable(exc: BaseException, location: PgLocation) -> StateError:
    """A one-line error for a server that cannot be reached or refuses us."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StateError(f"cannot use the PostgreSQL state {location.describe()}: {first}")


def schema_exists(con: PgConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
        [con.location.schema],
    ).fetchone()
    return bool(row and row[0])


def create_schema(con: PgConnection) -> None:
    con.raw.execute(
        pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(con.location.schema))
    )
