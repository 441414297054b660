"""The run lock of a PostgreSQL state: a lease, held by one writing command at a time.

Many hosts share one PostgreSQL state, so the DuckDB file's ``flock`` cannot serve: a holder
on another host cannot be seen dying. Instead one row of ``run_lease`` names the holder (host,
pid, command), when it took the lease and when it last renewed it, the lease's TTL, and a
**fencing token** that grows by one at every acquisition.

* A holder renews the lease (its heartbeat) from a thread, every quarter TTL, on the server's
  clock (hosts' clocks may differ).
* A holder that stops renewing (killed, its host lost, SIGSTOPped past the TTL) is taken over:
  the next command takes the row with a new token, and reports whom it took over from, for a
  ``lock_takeover`` event.
* Every write transaction of the store first checks, under a key-share lock of the row (which
  keeps a takeover out but lets the holder's own heartbeat through), that the token is still
  its own (:meth:`Lease.fence`): a holder that wakes after losing its lease stops at its next
  write with :class:`LeaseLost`, having written nothing more, and so does every later write
  of that process (:meth:`Lease.lost_error`, which apply also asks before it sends more). A
  takeover waits for the key-share lock, so a write is committed either before the takeover
  or not at all.
  A holder frozen inside a transaction loses its session to PostgreSQL's
  ``idle_in_transaction_session_timeout`` (set to the TTL), which lets the takeover through.

The table is the lock's, not the schema's: it is made outside the numbered migrations, since
migrating needs the lock. Used by :class:`reconciler.store.postgres.PgStore`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from reconciler.errors import LockTimeout, StateError
from reconciler.store.lock import Holder, alive
from reconciler.store.pg import PgConnection, PgLocation, connect, unreachable

LEASE_TABLE = """
CREATE TABLE IF NOT EXISTS run_lease (
    name VARCHAR PRIMARY KEY,
    token BIGINT NOT NULL,
    host VARCHAR,
    pid INTEGER,
    command VARCHAR,
    acquired_at TIMESTAMP,
    heartbeat_at TIMESTAMP,
    ttl_seconds DOUBLE PRECISION,
    released BOOLEAN NOT NULL
)"""
_SEED_ROW = (
    "INSERT INTO run_lease (name, token, released) VALUES (?, 0, TRUE) "
    "ON CONFLICT (name) DO NOTHING"
)
_NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"
_ROW = (
    "SELECT token, host, pid, command, acquired_at, heartbeat_at, ttl_seconds, released, "
    f"{_NOW} FROM run_lease WHERE name = ?"
)
_TAKE = (
    "UPDATE run_lease SET token = token + 1, host = ?, pid = ?, command = ?, "
    f"acquired_at = {_NOW}, heartbeat_at = {_NOW}, ttl_seconds = ?, released = FALSE "
    "WHERE name = ? RETURNING token"
)
_RENEW = f"UPDATE run_lease SET heartbeat_at = {_NOW} WHERE name = ? AND token = ? AND NOT released"
_RELEASE = "UPDATE run_lease SET released = TRUE WHERE name = ? AND token = ?"
# KEY SHARE: it keeps a takeover (FOR UPDATE) out until the write ends, yet lets the holder's
# own heartbeat (an UPDATE of no key column) through, so a long write cannot starve it
_FENCE = "SELECT 1 FROM run_lease WHERE name = ? AND token = ? AND NOT released FOR KEY SHARE"


class LeaseLost(StateError):
    """This process's lease was taken over while it was stopped or cut off: it must stop
    writing."""


def _stamp(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _holder(row: tuple[Any, ...]) -> Holder:
    _token, host, pid, command, acquired, heartbeat, ttl, _released, _now = row
    return Holder(
        int(pid or 0),
        str(command or ""),
        _stamp(acquired),
        str(host or ""),
        heartbeat=_stamp(heartbeat),
        ttl=float(ttl) if ttl is not None else None,
    )


def prepare(con: PgConnection, name: str = "run") -> None:
    """Make the lease's table and row if they are not there (idempotent, races included)."""
    with contextlib.suppress(psycopg.errors.UniqueViolation):  # two first commands at once
        con.execute(LEASE_TABLE)
    con.execute(_SEED_ROW, [name])


class Lease:
    """The run lock of one PostgreSQL state, for one process."""

    def __init__(self, location: PgLocation, command: str, name: str = "run") -> None:
        self.location = location
        self.command = command
        self.name = name  # the row: "run" for the run lock, "worker:ID" for a queue worker
        self.ttl = location.lease_ttl
        self.token: int | None = None
        self.taken_over: Holder | None = None  # whom the last acquire took the lease from
        self.lost: Holder | None = None  # who took it from us, once a heartbeat or fence sees it
        self._lost_message: str | None = None  # why this process may write nothing more
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()
        self._con: PgConnection | None = None
        self._renewed = 0.0  # time.monotonic() of the last renewal known to have landed
        self._confirming = threading.Lock()
        self._asked = 0.0  # time.monotonic() of the last renewal asked out of turn

    # -- holding -------------------------------------------------------------------------
    def acquire(self, timeout: float) -> None:
        """Take the lease, waiting up to ``timeout`` s for a live holder to finish."""
        con = connect(self.location, f"{self.command} (run lock)")
        try:
            prepare(con, self.name)
            con.execute("SET lock_timeout = '1s'")
            deadline = time.monotonic() + timeout
            while True:
                held = self._try(con)
                if held is None:
                    break
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"the state {self.location.describe()} is locked by "
                        f"{held.describe()}; gave up after {timeout:g} s. Wait for it to "
                        "finish, or pass a longer --lock-timeout"
                    )
                time.sleep(min(0.25, max(0.01, deadline - time.monotonic())))
        except psycopg.errors.InsufficientPrivilege as exc:
            con.close()
            first = str(exc).strip().splitlines()[0]
            raise StateError(
                f"cannot take the run lock of {self.location.describe()}: {first}. This role "
                "may only read (reports and dry runs); a command that writes needs a role "
                "that owns the state's schema"
            ) from None
        except psycopg.Error as exc:
            con.close()
            raise unreachable(exc, self.location) from None
        except BaseException:
            con.close()
            raise
        self._con = con
        self._renewed = time.monotonic()
        self.lost, self._lost_message = None, None
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="run-lease", daemon=True)
        self._beat.start()

    def _try(self, con: PgConnection) -> Holder | None:
        """One attempt: None once the lease is ours, else its live holder."""
        con.execute("BEGIN")
        try:
            row = con.execute(_ROW + " FOR UPDATE", [self.name]).fetchone()
        except psycopg.errors.LockNotAvailable:
            con.execute("ROLLBACK")
            return self.holder() or Holder(0, "a write in progress", "", "")
        assert row is not None  # prepare() made it
        token, host, pid, _command, _acquired, heartbeat, ttl, released, now = row
        expired = heartbeat is None or (now - heartbeat).total_seconds() > float(ttl or 0)
        # a holder on this host whose process is gone (killed) need not be waited for
        dead = host == socket.gethostname() and pid is not None and not alive(int(pid))
        expired = expired or (dead and int(pid) != os.getpid())
        if not released and not expired:
            con.execute("ROLLBACK")
            return _holder(row)
        me = [socket.gethostname(), os.getpid(), self.command[:200], self.ttl, self.name]
        taken = con.execute(_TAKE, me).fetchone()
        con.execute("COMMIT")
        assert taken is not None
        self.token = int(taken[0])
        self.taken_over = None if released or token == 0 else _holder(row)
        return None

    def _heartbeat(self) -> None:
        every = self.ttl / 4
        while not self._stop.wait(every):
            con = self._con
            if con is None:
                return
            try:
                renewed = con.execute(_RENEW, [self.name, self.token]).rowcount
            except psycopg.Error:
                # the server is away, or ended our session: a new connection for the next
                # beat (the fence of the next write tells whether the lease was lost)
                self._reconnect(con)
                continue
            if renewed == 0:
                self._lose()
                return
            self._renewed = time.monotonic()

    def _reconnect(self, old: PgConnection) -> None:
        """A new connection for the heartbeat when its session is gone (else the lease would
        run out under a live holder after a blip); at the next beat again if this fails."""
        if not (old.raw.closed or old.raw.broken):
            return
        try:
            con = connect(self.location, f"{self.command} (run lock)")
        except StateError:
            return
        try:
            con.execute("SET lock_timeout = '1s'")
        except psycopg.Error:
            con.close()
            return
        if self._con is old and not self._stop.is_set():
            self._con = con
            old.close()
        else:
            con.close()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        con, self._con = self._con, None
        if con is None:
            return
        try:
            if self.token is not None:
                con.execute(_RELEASE, [self.name, self.token])
        except psycopg.Error:
            pass  # the lease runs out by itself
        finally:
            self.token = None
            con.close()

    # -- checking ------------------------------------------------------------------------
    def fence(self, con: PgConnection) -> None:
        """Inside a write transaction on ``con``: stop unless the lease is still ours."""
        if self.token is None:
            raise StateError("a write to the PostgreSQL state outside its run lock")
        found = con.execute(_FENCE, [self.name, self.token]).fetchone()
        if self._lost_message is None and found is None:
            self._lose()
        if self._lost_message is not None:
            raise LeaseLost(self._lost_message)

    def lost_error(self) -> LeaseLost | None:
        """Once the lease is known to be lost (a heartbeat or a fence found another token):
        the error saying so; None while it is ours as far as this process knows. When no
        renewal has landed for half the TTL (the process was stopped, and its heartbeat
        thread has not run yet), the lease is renewed first, on the server: a process woken
        after a takeover learns it here, before it sends another block."""
        if self._lost_message is None and self._overdue():
            self._confirm()
        return None if self._lost_message is None else LeaseLost(self._lost_message)

    def _overdue(self) -> bool:
        return self.token is not None and time.monotonic() - self._renewed > self.ttl / 2

    def _confirm(self) -> None:
        """Renew now (at most once a second: a server that is away is not asked at every
        block sent)."""
        with self._confirming:
            con = self._con
            if not self._overdue() or con is None or time.monotonic() - self._asked < 1.0:
                return
            self._asked = time.monotonic()
            try:
                renewed = con.execute(_RENEW, [self.name, self.token]).rowcount
            except psycopg.Error:
                return  # cannot tell now: the heartbeat reconnects, the next fence decides
            if renewed == 0:
                self._lose()
            else:
                self._renewed = time.monotonic()

    def still_ours(self) -> bool:
        """Asked afresh of the server, after a write failed: whether the lease is still ours.
        A server that cannot be asked is given the benefit of the doubt (the write's own
        error is then what the caller reports)."""
        if self._lost_message is not None:
            return False
        try:
            con = connect(self.location, f"{self.command} (run lock)")
        except StateError:
            return True
        try:
            row = con.execute(
                "SELECT token, released FROM run_lease WHERE name = ?", [self.name]
            ).fetchone()
        except psycopg.Error:
            return True
        finally:
            con.close()
        if row is not None and row[0] == self.token and not row[1]:
            return True
        self._lose()
        return False

    def _lose(self) -> None:
        """Remember, for every later write of this process, that the lease was taken."""
        try:
            holder = self.holder(released_too=True)
        except (StateError, psycopg.Error):
            holder = None
        self.lost = holder or Holder(0, "another command", "", "")
        who = "another command" if holder is None else holder.describe()
        self._lost_message = (
            f"this run lost its lock on {self.location.describe()} to {who} (it was "
            f"stopped or cut off for longer than the lease's {self.ttl:g} s); it stops "
            "here and writes nothing more. Run reconcile again to continue"
        )

    def holder(self, released_too: bool = False) -> Holder | None:
        """Who holds the lease, or last held it and never released it; None if no one (with
        ``released_too``: also whoever held it last and released it)."""
        con = connect(self.location, f"{self.command} (run lock)")
        try:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = 'run_lease'"
            ).fetchone()
            row = con.execute(_ROW, [self.name]).fetchone() if found and found[0] else None
        finally:
            con.close()
        if row is None or row[0] == 0 or (row[7] and not released_too):
            return None
        return _holder(row)
