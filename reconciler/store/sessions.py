"""The drivers' rows in the state file: upload sessions, remote ids and spent API quota.

:class:`StoredSessions` is the DuckDB file's implementation of
:class:`reconciler.drivers.state.SessionRecords`, the protocol through which drivers persist
what they must find again after a restart (drivers never import the store). Apply, verify and
recovery make one over their :class:`~reconciler.store.db.StateStore` and pass it to
:func:`reconciler.drivers.driver_for`; the drivers' :class:`~reconciler.drivers.state.DriverState`
keeps the sessions in memory and calls :meth:`StoredSessions.write` with what changed.

Sessions live in ``upload_sessions``, keyed by (platform, remote key); a row is handed over
as a dict of its columns (``remote_key`` among them). Spent units are counted per quota day
in ``platform_quota``; a write adds to the units already recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from reconciler.errors import LockTimeout
from reconciler.model import SyncStatus
from reconciler.store.db import Store, utcnow

THREAD_PATIENCE = 2.0
"""Seconds a session write waits for another thread of this run that is writing (the
recorder's flush, tens of milliseconds) before it is kept for later. Without it, chunks that
land faster than a flush takes are all deferred, and a kill then loses where the upload
stood: the next run cannot vouch for the bytes the platform holds and starts over."""

COLUMNS = (
    "protocol",
    "state",
    "session_url",
    "remote_id",
    "remote_url",
    "file_sha256",
    "file_size",
    "bytes_confirmed",
    "remote_checksum",
    "confirmed_sha256",
)
_SELECT = f"SELECT remote_key, {', '.join(COLUMNS)} FROM upload_sessions WHERE platform_code = ?"
_UPSERT = (
    f"INSERT INTO upload_sessions (platform_code, remote_key, {', '.join(COLUMNS)}, "
    f"created_at, updated_at) VALUES ({', '.join('?' * (len(COLUMNS) + 4))}) "
    "ON CONFLICT (platform_code, remote_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)
    + ", updated_at = excluded.updated_at"
)
_DELETE = "DELETE FROM upload_sessions WHERE platform_code = ? AND remote_key = ?"
_RECORDED_COPY = (
    "SELECT pa.platform_asset_id, pa.platform_url, pa.remote_checksum "
    "FROM platform_assets pa JOIN sync_platforms sp ON sp.id = pa.platform_id "
    "WHERE sp.platform_code = ? AND pa.remote_key = ? "
    "AND pa.platform_asset_id IS NOT NULL AND pa.sync_status <> ? "
    "ORDER BY pa.id DESC LIMIT 1"
)
_QUOTA = (
    "SELECT units_used, exhausted FROM platform_quota WHERE platform_code = ? AND quota_day = ?"
)
_SPEND = (
    "INSERT INTO platform_quota (platform_code, quota_day, units_used, exhausted) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (platform_code, quota_day) DO UPDATE SET "
    "units_used = platform_quota.units_used + excluded.units_used, "
    "exhausted = platform_quota.exhausted OR excluded.exhausted"
)


_QUOTA_ROW = (
    "INSERT INTO platform_quota (platform_code, quota_day, units_used, exhausted) "
    "VALUES (?, ?, 0, FALSE) ON CONFLICT (platform_code, quota_day) DO NOTHING"
)
_TAKE = (
    "UPDATE platform_quota SET units_used = units_used + ? WHERE platform_code = ? "
    "AND quota_day = ? AND NOT exhausted AND units_used + ? <= ? RETURNING units_used"
)


class StoredSessions:
    """Upload sessions and quota of every platform, in one state file."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def lock_timeout(self) -> float:
        """How long a write that must land before an upload's first byte waits."""
        return float(self.store.lock_timeout)

    def load_sessions(self, platform: str) -> list[dict[str, Any]]:
        """Every session of ``platform``, as dicts of ``remote_key`` and :data:`COLUMNS`."""
        with self.store.looking() as con:
            rows = [] if con is None else con.execute(_SELECT, [platform]).fetchall()
        return [dict(zip(("remote_key", *COLUMNS), row, strict=True)) for row in rows]

    def recorded_copy(self, platform: str, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, remote checksum) of the copy at ``key`` recorded in
        platform_assets, the newest one not deleted."""
        with self.store.looking() as con:
            row = (
                None
                if con is None
                else con.execute(
                    _RECORDED_COPY, [platform, key, str(SyncStatus.DELETED)]
                ).fetchone()
            )
        return None if row is None else (str(row[0]), row[1], row[2])

    def load_quota(self, platform: str, day: date) -> tuple[int, bool]:
        """(units spent, whether the quota was said to be spent) of ``platform`` on ``day``."""
        with self.store.looking() as con:
            row = None if con is None else con.execute(_QUOTA, [platform, day]).fetchone()
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def take_quota(
        self, platform: str, day: date, units: int, limit: int
    ) -> tuple[bool, int, bool] | None:
        """Spend ``units`` of ``platform``'s quota day ``day`` only if that keeps it within
        ``limit``, in one write: (whether they were taken, units spent now, whether the
        quota was said to be spent). Many processes on one PostgreSQL state (queue workers)
        take from the same row, which the update locks: together they never exceed it. None
        when the state cannot be written this instant (a busy DuckDB file)."""
        try:
            # a shared state is asked whatever the wait (its writes never stay busy long);
            # only a DuckDB file a reader holds falls back to this process's own count
            shared = self.store.dialect == "postgresql"
            with self.store.writing(None if shared else 0.0, threads=THREAD_PATIENCE) as con:
                con.execute(_QUOTA_ROW, [platform, day])
                row = con.execute(_TAKE, [units, platform, day, units, limit]).fetchone()
                if row is not None:
                    return True, int(row[0]), False
                used, exhausted = con.execute(_QUOTA, [platform, day]).fetchone() or (0, False)
                return False, int(used), bool(exhausted)
        except LockTimeout:
            return None

    def write(
        self,
        platform: str,
        sessions: Mapping[str, Mapping[str, Any] | None],
        spent: Mapping[date, tuple[int, bool]],
        patience: float | None,
    ) -> None:
        """In one transaction: each session of ``sessions`` kept (its columns) or, for None,
        forgotten; each day's ``spent`` (units, exhausted) added to what is recorded. Waits
        for a busy file up to ``patience`` seconds (None: the lock timeout), then raises
        :class:`~reconciler.errors.StateError`."""
        with self.store.writing(patience, threads=THREAD_PATIENCE) as con:
            now = utcnow()
            for key, columns in sessions.items():
                if columns is None:
                    con.execute(_DELETE, [platform, key])
                else:
                    values = [columns.get(c) for c in COLUMNS]
                    con.execute(_UPSERT, [platform, key, *values, now, now])
            for day, (units, exhausted) in spent.items():
                con.execute(_SPEND, [platform, day, units, exhausted])
