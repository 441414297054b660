"""Connections to the DuckDB state file: opening one (retried while another process has the
file), one short write transaction on it, and the messages for a file that stays busy or
cannot be used.

:class:`reconciler.store.db.StateStore` opens every connection through :func:`connect` and
writes inside :func:`transaction`; every other store module takes the :data:`Connection` it
hands out, and stamps rows with :func:`utcnow`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from reconciler.errors import LockTimeout, StateError
from reconciler.store.lock import Holder, alive, describe_pid, patiently
from reconciler.store.statefile import (
    STORAGE_ERRORS,
    DuckDBConfig,
    recognised,
    rollback,
    storage_error,
)


class Cursor(Protocol):
    """What a query hands back, in DuckDB and in psycopg alike."""

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...


class Connection(Protocol):
    """A connection to the state, whatever database holds it: the store's modules need
    nothing else of it. Its SQL takes DuckDB's placeholders (``?``, ``$name``); a PostgreSQL
    connection (:class:`reconciler.store.pg.PgConnection`) translates them."""

    def execute(self, query: str, parameters: Any = None, /) -> Any: ...

    def close(self) -> None: ...


def dialect(con: Connection) -> str:
    """``duckdb`` or ``postgresql``: which SQL the connection speaks."""
    return str(getattr(con, "dialect", "duckdb"))


# Our transactions are short and small: one DuckDB thread avoids starting a pool of threads on
# every open (a run opens the file many times) and the lock traffic that comes with them.
CONNECTION_CONFIG: DuckDBConfig = {"threads": 1}

_BUSY = "Could not set lock on file"
_PID = re.compile(r"\(PID (\d+)\)")


class Busy(LockTimeout):
    """The state file cannot be written this instant (a write that was asked not to wait)."""


def utcnow() -> datetime:
    """Now, as the naive UTC timestamp the state file stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def is_busy(exc: BaseException) -> bool:
    """Whether DuckDB refused to open the file because another process holds it."""
    return isinstance(exc, duckdb.IOException) and _BUSY in str(exc)


def connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """Open the file, retrying for ``wait`` seconds while another process holds it.

    A file still busy after that raises DuckDB's own error (:func:`is_busy` holds for it), for
    the caller to name the holder; a file that cannot be used at all raises a
    :class:`StateError` saying why.
    """
    try:
        con = patiently(wait, is_busy)(
            duckdb.connect, str(path), read_only=read_only, config=CONNECTION_CONFIG
        )
    except duckdb.Error as exc:
        if is_busy(exc):
            raise
        raise unusable(exc, path) from None
    con.execute("SET TimeZone = 'UTC'")
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT`` on ``con``: rolled back on any error, and a failure of the file
    or its disk (a full disk shows at the commit, as the WAL is written) becomes a
    :class:`StateError` saying that nothing was recorded."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException as exc:
        rollback(con)
        if isinstance(exc, STORAGE_ERRORS):
            raise storage_error(exc, path, "writing") from None
        raise
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        rollback(con)
        raise storage_error(exc, path, "writing") from None


def unusable(exc: Exception, path: Path) -> StateError:
    """The error for a file DuckDB cannot open: full, read-only or truncated when it is one of
    those, else one that asks whether it is a state file at all."""
    found = recognised(exc, path)
    if found is not None:
        return found
    first = str(exc).splitlines()[0]
    return StateError(
        f"cannot use the state file {path}: {first}. Is it a reconcile state file? "
        "Pass --state to choose another"
    )


def busy_message(path: Path, exc: Exception, holder: Holder | None, timeout: float) -> str:
    """What to say when the file stayed busy for ``timeout`` seconds: who holds it, from the
    run lock's record when its holder is alive, else from DuckDB's message."""
    if holder is not None and holder.pid != os.getpid() and alive(holder.pid):
        who = holder.describe()
    else:
        match = _PID.search(str(exc))
        who = describe_pid(int(match[1])) if match else "another process"
    return (
        f"the state file {path} is busy: held by {who}; gave up after "
        f"{timeout:g} s. Wait for it to finish, or pass a longer --lock-timeout"
    )
