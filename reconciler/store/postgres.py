"""The recorded state in PostgreSQL (``--state postgresql://...``): shared by CI runners,
dashboards, BI tools and many hosts.

:class:`PgStore` offers what :class:`reconciler.store.db.StateStore` offers for the DuckDB file
(``session``, ``writing``, ``reading``, ``looking``), so that every stage and command works on
either. What differs is underneath:

* readers never block writers (MVCC): a report reads in one ``REPEATABLE READ READ ONLY``
  transaction, a consistent snapshot however long it takes, and takes no lock;
* writes are short transactions, each of which first checks the run lock's fencing token
  (:mod:`reconciler.store.lease`): a command that lost its lease writes nothing more;
* the run lock is a lease with a heartbeat and a TTL instead of an ``flock``;
* the tables live in their own schema (default ``mediasync``), made with the same numbered
  migrations as the file (:mod:`reconciler.store.migrations`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from reconciler.errors import StateError
from reconciler.model import EventStatus, EventType
from reconciler.store.events import EventRow, insert_events
from reconciler.store.holding import Holding
from reconciler.store.lease import Lease
from reconciler.store.lock import Holder
from reconciler.store.migrations import (
    OutdatedSchema,
    check_not_newer,
    current_version,
    latest_version,
    migrate,
)
from reconciler.store.pg import PgConnection, PgLocation, connect, create_schema, schema_exists


class PgStore(Holding):
    """Access to one PostgreSQL state. Cheap to create; connects only when asked."""

    dialect = "postgresql"

    def __init__(
        self,
        location: PgLocation,
        lock_timeout: float = 30.0,
        command: str = "reconcile",
        lease: str = "run",
    ) -> None:
        self.location = location
        self.lock_timeout = lock_timeout
        self.command = command
        # "run": the run lock, one writing command at a time; a queue worker holds a lease of
        # its own ("worker:ID"), so that many write side by side, each fenced by its own
        self.lock = Lease(location, command, lease)
        Holding.__init__(self)
        self._writer: PgConnection | None = None

    @property
    def label(self) -> str:
        """The state, as messages name it."""
        return f"the PostgreSQL state {self.location.describe()}"

    @property
    def name(self) -> str:
        """The state as a plan records it: its URL and schema, never a password."""
        return self.location.describe()

    @property
    def home(self) -> Path:
        """Where this tool's own local files go by default (the rendition cache)."""
        return Path("state")

    def exists(self) -> bool:
        """Whether the schema holds a migrated state."""
        con = connect(self.location, self.command)
        try:
            return schema_exists(con) and current_version(con) > 0
        except psycopg.Error as exc:
            raise _failed(exc, self.label, "reading") from None
        finally:
            con.close()

    # -- writing -------------------------------------------------------------------------
    def _take(self) -> None:
        self._prepare()
        self.lock.acquire(self.lock_timeout)

    def _give(self) -> None:
        self._close_writer()
        self.lock.release()

    @contextmanager
    def writing(
        self, patience: float | None = None, threads: float | None = None
    ) -> Iterator[PgConnection]:
        """One short write transaction, fenced by the lease; migrates the schema first when
        it is behind. ``patience`` and ``threads`` are as for the DuckDB file; only other
        threads of this run can keep a write waiting here."""
        with self.guarded(patience, threads), self.session():
            lost = self.lock.lost_error()
            if lost is not None:  # known already: not even a connection for it
                raise lost
            con = self._writer_connection()
            try:
                migrate(con, self.label)
                con.execute("BEGIN")
            except psycopg.Error as exc:
                raise self._write_failed(exc) from None
            try:
                self.lock.fence(con)
                yield con
            except BaseException as exc:
                _rollback(con)
                if isinstance(exc, psycopg.Error):
                    raise self._write_failed(exc) from None
                raise
            try:
                con.execute("COMMIT")
            except psycopg.Error as exc:
                _rollback(con)
                raise self._write_failed(exc) from None

    def _write_failed(self, exc: psycopg.Error) -> StateError:
        """The error of a write that failed. One whose session PostgreSQL ended because the
        process stood still inside it for the TTL (SIGSTOP) has most likely lost the lease
        too: then that is what it says, as the fence would have."""
        if not self.lock.still_ours():
            lost = self.lock.lost_error()
            assert lost is not None
            return lost
        return _failed(exc, self.label, "writing")

    def _writer_connection(self) -> PgConnection:
        if self._writer is None or self._writer.raw.closed:
            con = connect(self.location, self.command)
            # a writer frozen inside a transaction (SIGSTOP) must not keep the lease's row
            # locked for ever: PostgreSQL ends its session after the TTL
            con.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', ?, false)",
                [str(int(self.lock.ttl * 1000))],
            )
            self._writer = con
        return self._writer

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _prepare(self) -> None:
        con = connect(self.location, self.command)
        try:
            if not schema_exists(con):
                create_schema(con)
        except psycopg.errors.UniqueViolation:
            pass  # made by another command at the same moment
        except psycopg.Error as exc:
            raise _failed(exc, self.label, "writing") from None
        finally:
            con.close()

    # -- reading -------------------------------------------------------------------------
    @contextmanager
    def reading(self, allow_migrate: bool = True) -> Iterator[PgConnection | None]:
        """One consistent read-only snapshot; None when there is no state yet. A state with
        an older schema is migrated first (a short write); with ``allow_migrate=False`` it
        raises :class:`OutdatedSchema` instead."""
        if not self.exists():
            yield None
            return
        con = connect(self.location, self.command)
        try:
            version = current_version(con)
            check_not_newer(version, self.label)
            if version < latest_version():
                if not allow_migrate:
                    raise OutdatedSchema(
                        f"{self.label} has schema version {version}; this reconcile uses "
                        f"version {latest_version()}"
                    )
                with self.writing():
                    pass
            con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield con
        except psycopg.Error as exc:
            raise _failed(exc, self.label, "reading") from None
        finally:
            _rollback(con)
            con.close()

    @contextmanager
    def looking(self) -> Iterator[PgConnection | None]:
        """A short read-only look for a thread of a writing run."""
        with self.reading(allow_migrate=False) as con:
            yield con

    def schema_version(self) -> int | None:
        con = connect(self.location, self.command)
        try:
            return current_version(con) if schema_exists(con) else None
        finally:
            con.close()

    def _record_takeover(self, dead: Holder) -> None:
        # not Holder.describe(): said of a holder that is stopped, its advice to resume or end
        # it (since "it holds the lock") is wrong once the lease is taken; and a shared state's
        # log names the host even when it is this one
        message = (
            f"took over the run lock of pid {dead.pid} on {dead.host or 'an unknown host'} "
            f"({dead.command}, since {dead.since}, last heartbeat {dead.heartbeat}), which "
            f"stopped renewing its lease for longer than its {dead.ttl or self.lock.ttl:g} s"
        )
        details = {"pid": dead.pid, "command": dead.command, "since": dead.since}
        details |= {"host": dead.host, "heartbeat": dead.heartbeat}
        with self.writing() as con:
            insert_events(
                con,
                [EventRow(EventType.LOCK_TAKEOVER, EventStatus.SUCCESS, message, details)],
            )


def _rollback(con: PgConnection) -> None:
    if con.raw.closed:
        return
    with contextlib.suppress(psycopg.Error):
        con.execute("ROLLBACK")


def _failed(exc: psycopg.Error, label: str, doing: str) -> StateError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    recorded = "; nothing of this transaction was recorded" if doing == "writing" else ""
    return StateError(f"{doing} {label} failed: {first}{recorded}")
