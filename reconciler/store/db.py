"""The state file: where it lives, how commands open it, and how they write to it.

Connection discipline (DuckDB lets one process write a file at a time, and any process that
holds the file open, even read-only, keeps writers out):

* commands open the file for **short** transactions only, never across an upload or a wait;
* a writing command holds the run lock (:mod:`reconciler.store.lock`) for its whole run, and
  opens the file read-write only inside :meth:`StateStore.writing`;
* readers (reports, dry runs) open it read-only inside :meth:`StateStore.reading` and never
  take the run lock, so ``reconcile status`` answers while an apply is working;
* whoever finds the file busy retries with backoff until ``--lock-timeout``, then fails with
  a message naming the holder;
* rows are written in bulk (:func:`insert_rows`), never row by row;
* a new file appears in one step, already migrated, and a failure of the file or its disk
  (full, read-only, truncated) is a :class:`StateError` saying what to do
  (:mod:`reconciler.store.statefile`).

Every command that reads or writes state goes through :class:`StateStore`.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from reconciler.errors import LockTimeout, StateError
from reconciler.store.lock import (
    Holder,
    RunLock,
    alive,
    describe_pid,
    lock_path_for,
    patiently,
    real_path,
)
from reconciler.store.migrations import (
    check_not_newer,
    current_version,
    latest_version,
    migrate,
)
from reconciler.store.statefile import (
    STORAGE_ERRORS,
    close,
    create,
    never_held_data,
    recognised,
    rollback,
    storage_error,
)

DEFAULT_STATE = Path("state") / "reconciler.duckdb"
SEED_TABLES = (
    "source_assets",
    "sync_platforms",
    "sync_configurations",
    "sync_jobs",
    "platform_assets",
    "sync_conflicts",
    "sync_events_log",
)
_BUSY = "Could not set lock on file"
_PID = re.compile(r"\(PID (\d+)\)")

Connection = duckdb.DuckDBPyConnection

# Our transactions are short and small: one DuckDB thread avoids starting a pool of threads on
# every open (a run opens the file many times) and the lock traffic that comes with them.
CONNECTION_CONFIG = {"threads": 1}


class Busy(LockTimeout):
    """The state file cannot be written this instant (a write that was asked not to wait)."""


class OutdatedSchema(StateError):
    """The state file needs a migration that the caller may not run (a dry run)."""


def utcnow() -> datetime:
    """Now, as the naive UTC timestamp the state file stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _BUSY in str(exc)


@dataclass
class StateStore:
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
        self._depth = 0
        # Threads of one run (the recorder, drivers keeping upload sessions) write through
        # this store: one write transaction at a time, and the lock depth kept exactly.
        self._guard = threading.RLock()

    def exists(self) -> bool:
        """Whether there is a state file; one that never held data (DuckDB's headers left by
        a process killed while it created the file) counts as none, and is replaced by the
        first write."""
        return self.path.exists() and not never_held_data(self.real_path)

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[StateStore]:
        """Hold the run lock for a writing command's whole run (re-entrant)."""
        with self._guard:
            if self._depth == 0:
                self.lock.acquire(self.lock_timeout)
            self._depth += 1
        try:
            taken = self.lock.taken_over
            if taken is not None:
                self.lock.taken_over = None
                self._record_takeover(taken)
            yield self
        finally:
            with self._guard:
                self._depth -= 1
                if self._depth == 0:
                    self.lock.release()

    @contextmanager
    def writing(self, patience: float | None = None) -> Iterator[Connection]:
        """One short write transaction. Creates and migrates the file on first use.

        ``patience``: seconds to wait for a busy file (default ``lock_timeout``), or for
        another thread of this process that is writing; after that (at once with 0)
        :class:`Busy` is raised, for writes that can wait (see
        :mod:`reconciler.drivers.state`)."""
        if patience is None:
            acquired = self._guard.acquire()
        elif patience <= 0:
            acquired = self._guard.acquire(blocking=False)
        else:
            acquired = self._guard.acquire(timeout=patience)
        if not acquired:
            raise Busy(f"the state file {self.path} is being written by another thread")
        try:
            with self.session():
                if not self.exists():
                    self._create()
                con = self._open(read_only=False, patience=patience)
                try:
                    migrate(con, str(self.path))
                    con.execute("BEGIN TRANSACTION")
                    try:
                        yield con
                    except BaseException as exc:
                        rollback(con)
                        if isinstance(exc, STORAGE_ERRORS):
                            raise storage_error(exc, self.path, "writing") from None
                        raise
                    try:
                        con.execute("COMMIT")
                    except duckdb.Error as exc:  # a full disk shows here, as the WAL is written
                        rollback(con)
                        raise storage_error(exc, self.path, "writing") from None
                finally:
                    close(con, self.path)
        finally:
            self._guard.release()

    def _create(self) -> None:
        """Make the file (under the run lock), migrated, in one step; note in its event log
        a file that never held data that it replaced."""
        from reconciler.store.records import EventRow, insert_events

        replaced = self.real_path.stat().st_size if self.real_path.exists() else None

        def prepare(con: Connection) -> None:
            migrate(con, str(self.path))
            if replaced is not None:
                message = (
                    f"replaced {self.path} ({replaced} bytes: DuckDB's headers and nothing "
                    "else, left by a process killed while it created the file)"
                )
                insert_events(con, [EventRow("state_file_replaced", "success", message)])

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
    def _open(self, read_only: bool, patience: float | None = None) -> Connection:
        wait = self.lock_timeout if patience is None else patience
        try:
            con = patiently(wait, _is_busy)(
                duckdb.connect, str(self.path), read_only=read_only, config=CONNECTION_CONFIG
            )
        except duckdb.IOException as exc:
            if _is_busy(exc):
                if patience == 0:
                    raise Busy(f"the state file {self.path} is busy") from None
                raise LockTimeout(self._busy_message(exc)) from None
            raise self._unusable(exc) from None
        except duckdb.Error as exc:
            raise self._unusable(exc) from None
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _unusable(self, exc: Exception) -> StateError:
        first = str(exc).splitlines()[0]
        found = recognised(exc, self.path)  # full, read-only or truncated: say so
        if found is not None:
            return found
        return StateError(
            f"cannot use the state file {self.path}: {first}. Is it a reconcile state file? "
            "Pass --state to choose another"
        )

    def _busy_message(self, exc: Exception) -> str:
        holder = self.lock.holder()
        if holder is not None and holder.pid != os.getpid() and alive(holder.pid):
            who = holder.describe()
        else:
            match = _PID.search(str(exc))
            who = describe_pid(int(match[1])) if match else "another process"
        return (
            f"the state file {self.path} is busy: held by {who}; gave up after "
            f"{self.lock_timeout:g} s. Wait for it to finish, or pass a longer --lock-timeout"
        )

    def _record_takeover(self, dead: Holder) -> None:
        from reconciler.store.records import EventRow, insert_events

        with self.writing() as con:
            insert_events(
                con,
                [
                    EventRow(
                        event_type="lock_takeover",
                        event_status="success",
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


# -- bulk writes -------------------------------------------------------------------------------


_TYPES: dict[str, dict[str, str]] = {}


def column_types(con: Connection, table: str, need: Sequence[str] = ()) -> dict[str, str]:
    """The DuckDB type of each column of a table. Cached: the schema only grows (by
    migration), so a cached answer lacking a needed column is simply asked again."""
    cached = _TYPES.get(table)
    if cached is not None and all(c in cached for c in need):
        return cached
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
        [table],
    ).fetchall()
    _TYPES[table] = types = {name: dtype for name, dtype in rows}
    return types


# Tables whose rows move on to a history table, keeping their id: new ids go above both, so
# that an id that jobs, events or conflicts refer to is never given to another row.
ID_HISTORY = {"platform_assets": "platform_assets_pruned"}


def _last_id(con: Connection, table: str) -> int:
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
        f"SELECT ? + ord, {picks} FROM (SELECT unnest(?::BIGINT[]) AS ord, {unnests})",
        [base, list(range(1, n + 1)), *values],
    )
    return list(range(base + 1, base + n + 1))


def temp_table(
    con: Connection, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> None:
    """(Re)create a temporary table from Python rows in one statement; columns are
    (name, DuckDB type) pairs."""
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


CSV_ROWS = 20_000  # above this, rows travel through a temporary CSV file


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
        f"SELECT t.{key}, t.id FROM {table} t JOIN (SELECT unnest(?::{types[key]}[]) AS k) "
        f"ON t.{key} = k",
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
