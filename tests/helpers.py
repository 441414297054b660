"""Paths of the repository's example files, and reading a state back as an outside tool
would, for tests (importable as `helpers`)."""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from psycopg import sql as pgsql

from reconciler.observe.payload import Payload
from reconciler.store.pg import PgLocation, is_url

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHIPPED_MANIFESTS = REPO / "manifests"
EXAMPLES = TESTS / "examples"
MEDIA = EXAMPLES / "media"


def payload_of(path: Path, expected: str | None = None) -> Payload:
    """A driver's payload for a file, as a job opens it (the descriptor closes with it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    digest = expected or hashlib.sha256(Path(path).read_bytes()).hexdigest()
    payload = Payload(fd, os.fstat(fd).st_size, digest, Path(path).name)
    weakref.finalize(payload, os.close, fd)
    return payload


def is_postgresql(state: str | Path) -> bool:
    """Whether a ``--state`` value (the ``state_at`` fixture's) is a PostgreSQL state."""
    return is_url(str(state))


def query(state: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one query on a state, read as a BI tool would, not through the store: the
    DuckDB file opened read-only, or psycopg in the state's schema (UTC). ``?`` placeholders
    on both."""
    if not is_postgresql(state):
        with duckdb.connect(str(state), read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()
    where = PgLocation.parse(str(state))
    with psycopg.connect(where.conninfo, autocommit=True) as con:
        con.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(where.schema)))
        con.execute("SET TIME ZONE 'UTC'")
        if params:
            sql = re.sub(r"\?", "%s", sql.replace("%", "%%"))
        return con.execute(sql, list(params) if params else None).fetchall()


def short_lease(state: str, seconds: float = 3.0) -> str:
    """``state`` for a test that SIGKILLs a run and then runs again at once. A DuckDB file's
    run lock (an ``flock``) dies with its process; a PostgreSQL state's lease is kept by a
    killed holder until its TTL (60 s by default, longer than the default --lock-timeout)
    runs out, so the PostgreSQL URL gets a TTL of ``seconds``."""
    if not is_postgresql(state):
        return state
    return f"{state}{'&' if '?' in state else '?'}lease_ttl={seconds:g}"


def created(state: str | Path) -> bool:
    """Whether a state was made: the DuckDB file, or the PostgreSQL state's schema in its
    database."""
    if not is_postgresql(state):
        return Path(state).exists()
    where = PgLocation.parse(str(state))
    with psycopg.connect(where.conninfo, autocommit=True) as con:
        row = con.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            [where.schema],
        ).fetchone()
    return bool(row and row[0])
