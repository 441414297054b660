"""Paths of the repository's example files, and reading a state back as an outside tool
would, for tests (importable as `helpers`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from psycopg import sql as pgsql

from reconciler.observe.payload import Payload
from reconciler.store.lock import lock_path_for
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


@contextmanager
def reader(state: str | Path) -> Iterator[Any]:
    """A connection to a state as a BI tool would open one, not through the store: the DuckDB
    file read-only, or psycopg in the state's schema (UTC, autocommit). Its ``execute(sql)``
    returns something with ``fetchone``/``fetchall`` on both; for parameters use ``query``."""
    if not is_postgresql(state):
        with duckdb.connect(str(state), read_only=True) as con:
            yield con
        return
    where = PgLocation.parse(str(state))
    with psycopg.connect(where.conninfo, autocommit=True) as con:
        con.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(where.schema)))
        con.execute("SET TIME ZONE 'UTC'")
        yield con


def query(state: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one query on a state, read through :func:`reader`; ``?`` placeholders on
    both backends."""
    with reader(state) as con:
        if params and is_postgresql(state):
            sql = re.sub(r"\?", "%s", sql.replace("%", "%%"))
        return con.execute(sql, list(params) if params else None).fetchall()


def snapshot(state: str | Path) -> Any:
    """Everything a state holds, to compare before and after something that must change
    nothing: the DuckDB file's bytes, or every row of every table of the PostgreSQL schema
    but the run lock's (``run_lease``, as the file's lock lives beside it in ``.lock``)."""
    if not is_postgresql(state):
        return Path(state).read_bytes()
    tables = [
        name
        for (name,) in query(
            state,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name <> 'run_lease' ORDER BY table_name",
        )
    ]
    return {t: sorted(map(repr, query(state, f'SELECT * FROM "{t}"'))) for t in tables}


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


def lock_record(state: str | Path) -> dict[str, Any] | None:
    """What the run lock records of its holder, or of a holder that died holding it (pid,
    command); None once it was released cleanly. The DuckDB file's ``<state>.lock``, or the
    PostgreSQL state's lease row."""
    if not is_postgresql(state):
        text = lock_path_for(Path(state)).read_text()
        return json.loads(text) if text else None
    ((pid, command, released),) = query(state, "SELECT pid, command, released FROM run_lease")
    return None if released else {"pid": pid, "command": command}


def held_bytes(state: str | Path) -> bytes:
    """Every byte a state holds, to look for a secret that must not be recorded: the DuckDB
    file as it is on disk, or the text of every row of every table of the PostgreSQL schema
    (the run lock's included)."""
    if not is_postgresql(state):
        return Path(state).read_bytes() if Path(state).exists() else b""
    tables = [
        name
        for (name,) in query(
            state,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() ORDER BY table_name",
        )
    ]
    return "\n".join(repr(query(state, f'SELECT * FROM "{t}"')) for t in tables).encode()
