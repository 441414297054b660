"""The state file: where it lives, how commands open it, and how they write to it.

Connection discipline (DuckDB lets one process write a file at a time, and any process that
holds the file open, even read-only, keeps writers out):

* commands open the file for **short** transactions only, never across an upload or a wait;
* a writing command holds the run lock (:mod:`reconciler.store.lock`) for its whole run, and
  opens the file read-write only inside :meth:`StateStore.writing`;
* readers (reports, dry runs) open it read-only inside :meth:`StateStore.reading` and never
  take the run lock, so ``reconcile status`` answers while an apply is working;
* whoever finds the file busy retries with backoff until ``--lock-timeout``, then fails with
  a message naming the holder (:mod:`reconciler.store.connection`);
* rows are written in bulk (:mod:`reconciler.store.bulk`), never row by row;
* a new file appears in one step, already migrated, and a failure of the file or its disk
  (full, read-only, truncated) is a :class:`StateError` saying what to do
  (:mod:`reconciler.store.statefile`).

Every command that reads or writes state goes through :class:`StateStore`; the stages reach
it through the operations of :mod:`reconciler.store.backend`. The names the stages have
always imported from here (:data:`Connection`, :func:`insert_rows`, :func:`utcnow`, ...) stay
importable from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from reconciler.errors import LockTimeout
from reconciler.model import EventStatus, EventType
from reconciler.store.bulk import (
    SEED_TABLES,
    column_types,
    insert_rows,
    table_rows,
    temp_table,
    upsert_rows,
)
from reconciler.store.connection import (
    CONNECTION_CONFIG,
    Busy,
    Connection,
    busy_message,
    connect,
    transaction,
    utcnow,
)
from reconciler.store.events import STATE_FILE_REPLACED, EventRow, insert_events
from reconciler.store.holding import Holding
from reconciler.store.lock import Holder, RunLock, lock_path_for, real_path
from reconciler.store.migrations import (
    OutdatedSchema,
    check_not_newer,
    current_version,
    latest_version,
    migrate,
)
from reconciler.store.pg import PgLocation, is_url
from reconciler.store.postgres import PgStore
from reconciler.store.statefile import STORAGE_ERRORS, close, create, never_held_data, storage_error

# Where the store's callers have always found these; they live in .connection and .bulk.
__all__ = [
    "CONNECTION_CONFIG",
    "DEFAULT_STATE",
    "SEED_TABLES",
    "Busy",
    "Connection",
    "OutdatedSchema",
    "PgStore",
    "StateStore",
    "Store",
    "column_types",
    "insert_rows",
    "open_state",
    "table_rows",
    "temp_table",
    "upsert_rows",
    "utcnow",
]

DEFAULT_STATE = Path("state") / "reconciler.duckdb"


@dataclass
class StateStore(Holding):
    """Access to one state file. Cheap to create; opens the file only when asked."""

    path: Path
    lock_timeout: float = 30.0
    command: str = "reconcile"
    lock: RunLock = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        # the lock belongs to the file, whatever name (symlink, .., hard link) reaches it
        self.real_path = real_path(self.path)
        self.lock = RunLock(lock_path_for(self.path), self.command, identity=self.real_path)
        Holding.__init__(self)

    dialect = "duckdb"

    @property
    def label(self) -> str:
        """The state, as messages name it."""
        return f"the state file {self.path}"

    @property
    def name(self) -> str:
        """The state as a plan records it: the file's path as given."""
        return str(self.path)

    @property
    def home(self) -> Path:
        """Where this tool's own local files go by default (the rendition cache)."""
        return self.path.parent

    def exists(self) -> bool:
        """Whether there is a state file; one that never held data (DuckDB's headers left by
        a process killed while it created the file) counts as none, and is replaced by the
        first write."""
        return self.path.exists() and not never_held_data(self.real_path)

    # -- writing -------------------------------------------------------------------------
    def _take(self) -> None:
        self.lock.acquire(self.lock_timeout)

    def _give(self) -> None:
        self.lock.release()

    @contextmanager
    def writing(
        self, patience: float | None = None, threads: float | None = None
    ) -> Iterator[Connection]:
        """One short write transaction. Creates and migrates the file on first use.

        ``patience``: seconds to wait for a busy file (default ``lock_timeout``); after that
        (at once with 0) :class:`Busy` is raised, for writes that can wait (see
        :mod:`reconciler.drivers.state`). ``threads``: seconds to wait for another thread of
        this process that is writing (default: ``patience``), whose transaction is short
        unless it is itself waiting for a busy file."""
        with self.guarded(patience, threads), self.session():
            if not self.exists():
                self._create()
            con = self._open(read_only=False, patience=patience)
            try:
                migrate(con, str(self.path))
                with transaction(con, self.path):
                    yield con
            finally:
                close(con, self.path)

    def _create(self) -> None:
        """Make the file (under the run lock), migrated, in one step; note in its event log
        a file that never held data that it replaced."""
        replaced = self.real_path.stat().st_size if self.real_path.exists() else None

        def prepare(con: Connection) -> None:
            migrate(con, str(self.path))
            if replaced is not None:
                message = (
                    f"replaced {self.path} ({replaced} bytes: DuckDB's headers and nothing "
                    "else, left by a process killed while it created the file)"
                )
                insert_events(con, [EventRow(STATE_FILE_REPLACED, EventStatus.SUCCESS, message)])

        create(self.real_path, prepare, CONNECTION_CONFIG)
        self.lock.bind_identity(self.lock_timeout)

    # -- reading -------------------------------------------------------------------------
    @contextmanager
    def reading(self, allow_migrate: bool = True) -> Iterator[Connection | None]:
        """A short read-only look at the file; None when there is no state file yet.

        A file with an older schema is migrated first (a short write), as on every open;
        with ``allow_migrate=False`` (a dry run must not write) it raises
        :class:`OutdatedSchema` instead.
        """
        if not self.exists():
            yield None
            return
        con = self._open(read_only=True)
        try:
            version = current_version(con)
            check_not_newer(version, str(self.path))
            if version < latest_version():
                if not allow_migrate:
                    raise OutdatedSchema(
                        f"the state file {self.path} has schema version {version}; this "
                        f"reconcile uses version {latest_version()}"
                    )
                con.close()
                with self.writing():
                    pass
                con = self._open(read_only=True)
            yield con
        except STORAGE_ERRORS as exc:  # a truncated file opens, then fails to read
            raise storage_error(exc, self.path, "reading") from None
        finally:
            close(con, self.path)

    @contextmanager
    def looking(self) -> Iterator[Connection | None]:
        """A short read-only look for a thread of a writing run (a driver finding its upload
        sessions): serialised with this process's writes, and not kept out by other
        processes' read-only connections (a BI tool), as a write would be. None when there
        is no state file yet."""
        with self._guard:
            if not self.path.exists():
                yield None
                return
            con = self._open(read_only=True)
            try:
                yield con
            finally:
                close(con, self.path)

    def schema_version(self) -> int | None:
        with self.reading() as con:
            return None if con is None else current_version(con)

    # -- internals -----------------------------------------------------------------------
    def _open(self, read_only: bool, patience: float | None = None) -> duckdb.DuckDBPyConnection:
        wait = self.lock_timeout if patience is None else patience
        try:
            return connect(self.path, read_only, wait)
        except duckdb.IOException as exc:  # still busy after ``wait``
            if patience == 0:
                raise Busy(f"the state file {self.path} is busy") from None
            message = busy_message(self.path, exc, self.lock.holder(), self.lock_timeout)
            raise LockTimeout(message) from None

    def _record_takeover(self, dead: Holder) -> None:
        with self.writing() as con:
            insert_events(
                con,
                [
                    EventRow(
                        event_type=EventType.LOCK_TAKEOVER,
                        event_status=EventStatus.SUCCESS,
                        message=f"took over the run lock of {dead.describe()}, which had died",
                        details={
                            "pid": dead.pid,
                            "command": dead.command,
                            "since": dead.since,
                            "host": dead.host,
                        },
                    )
                ],
            )


Store = StateStore | PgStore
"""A state, whichever database holds it: the DuckDB file or a PostgreSQL schema."""

Location = Path | PgLocation
"""Where a state is: a DuckDB file's path, or a PostgreSQL server and schema."""


def location(value: str | Path | PgLocation) -> Location:
    """``--state`` as given: a ``postgresql://`` URL, else a file's path."""
    if isinstance(value, Path | PgLocation):
        return value
    return PgLocation.parse(value) if is_url(value) else Path(value)


def state_name(where: Location) -> str:
    """A state as people are shown it (never with a password)."""
    return str(where) if isinstance(where, Path) else where.describe()


def open_state(where: Location, lock_timeout: float = 30.0, command: str = "reconcile") -> Store:
    """The store of a state (nothing is opened yet)."""
    if isinstance(where, PgLocation):
        return PgStore(where, lock_timeout=lock_timeout, command=command)
    return StateStore(where, lock_timeout=lock_timeout, command=command)
