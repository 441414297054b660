"""What drivers keep in the state file between runs: upload sessions, remote ids, quota.

A driver for a REST platform (``http``, ``youtube``, ``vimeo``) names its objects by the
platform's own ids, and a resumable upload by a session URI or upload link; the ``s3`` driver
keeps the multipart uploads it started and the checksum S3 reported for each object it put.
All of it lives in ``upload_sessions``, keyed by (platform, remote key); spent API units are
counted per quota day in ``platform_quota``.

Writes happen in the middle of transfers (after every chunk), so they must never fail one:
a :class:`DriverState` keeps the platform's sessions in memory (read once, on first use) and
writes each change at once when the state file is free, or later when it is busy (another
process holding it open, this run's recorder writing). Whatever is still unwritten is written
by :meth:`DriverState.flush` at the end of the run. The run lock makes this process the only
writer meanwhile, so the memory copy stays true.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from reconciler.errors import StateError
from reconciler.redact import redact
from reconciler.store.db import StateStore, utcnow

_COLUMNS = (
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
_SELECT = (
    "SELECT remote_key, protocol, state, session_url, remote_id, remote_url, file_sha256, "
    "file_size, bytes_confirmed, remote_checksum, confirmed_sha256 FROM upload_sessions "
    "WHERE platform_code = ?"
)
_UPSERT = (
    "INSERT INTO upload_sessions (platform_code, remote_key, protocol, state, session_url, "
    "remote_id, remote_url, file_sha256, file_size, bytes_confirmed, remote_checksum, "
    "confirmed_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (platform_code, remote_key) DO UPDATE SET protocol = excluded.protocol, "
    "state = excluded.state, session_url = excluded.session_url, "
    "remote_id = excluded.remote_id, remote_url = excluded.remote_url, "
    "file_sha256 = excluded.file_sha256, file_size = excluded.file_size, "
    "bytes_confirmed = excluded.bytes_confirmed, remote_checksum = excluded.remote_checksum, "
    "confirmed_sha256 = excluded.confirmed_sha256, "
    "updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class Session:
    """One object's upload on one platform: in progress, uploaded (processing) or done."""

    key: str
    protocol: str  # http | youtube | vimeo | s3
    state: str  # uploading | uploaded | done
    file_sha256: str
    file_size: int
    session_url: str | None = None  # the resumable session URI, tus link or S3 upload id
    remote_id: str | None = None
    remote_url: str | None = None
    bytes_confirmed: int = 0
    remote_checksum: str | None = None  # what the platform itself reported for the object
    confirmed_sha256: str | None = None  # of the bytes_confirmed bytes, as they were sent

    def moved(self, **changes: Any) -> Session:
        return replace(self, **changes)


def _recordable(column: str, value: Any) -> Any:
    """A session's value as it may be written: a link a platform handed back is redacted
    (it could carry the credential it was given); a session link that held one is not kept
    at all (it would not work redacted: that upload starts over after a restart)."""
    if column not in ("session_url", "remote_url") or not isinstance(value, str):
        return value
    clean = redact(value)
    if clean != value and column == "session_url":
        return None
    return clean


class DriverState:
    """One platform's sessions and quota in one state file; safe to use from worker threads."""

    def __init__(self, store: StateStore, platform: str) -> None:
        self.store = store
        self.platform = platform
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] | None = None
        self._unwritten: dict[str, Session | None] = {}  # None: forget the key
        self._quota: dict[date, tuple[int, bool]] = {}
        self._spent: dict[date, tuple[int, bool]] = {}  # units and exhaustion not yet written

    # -- sessions ------------------------------------------------------------------------
    def sessions(self) -> dict[str, Session]:
        """Every session of the platform (read from the state file once)."""
        with self._lock:
            if self._sessions is None:
                with self.store.looking() as con:
                    rows = [] if con is None else con.execute(_SELECT, [self.platform]).fetchall()
                self._sessions = {
                    row[0]: Session(row[0], **dict(zip(_COLUMNS, row[1:], strict=True)))
                    for row in rows
                }
            return self._sessions

    def session(self, key: str) -> Session | None:
        return self.sessions().get(key)

    def save(self, session: Session, patience: float = 0.0) -> None:
        """Keep ``session``; written now if the state file is free within ``patience``
        seconds (a session that must be on disk before the first byte waits a little: what
        a job is about to write), else later."""
        with self._lock:
            self.sessions()[session.key] = session
            self._unwritten[session.key] = session
        self.flush(patience)

    def record_before_sending(self, session: Session) -> bool:
        """Keep a session that must be on disk before its first byte goes (what recovery needs
        to abort or resume it after a kill): wait up to the lock timeout for a busy state
        file. False when it is still busy; the caller then sends nothing."""
        with self._lock:
            self.sessions()[session.key] = session
            self._unwritten[session.key] = session
        return self.flush(float(self.store.lock_timeout))

    def forget(self, key: str) -> None:
        with self._lock:
            self.sessions().pop(key, None)
            self._unwritten[key] = None
        self.flush(0.0)

    def remote(self, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, sha256 of what was sent) of the finished object at ``key``: from
        its session once done (an upload still going, or a video still processing, is not an
        object yet), else from the copy recorded in platform_assets."""
        found = self.session(key)
        if found is not None and found.remote_id is not None and found.state == "done":
            return found.remote_id, found.remote_url, found.file_sha256
        with self.store.looking() as con:
            row = (
                None
                if con is None
                else con.execute(
                    "SELECT pa.platform_asset_id, pa.platform_url, pa.remote_checksum "
                    "FROM platform_assets pa JOIN sync_platforms sp ON sp.id = pa.platform_id "
                    "WHERE sp.platform_code = ? AND pa.remote_key = ? "
                    "AND pa.platform_asset_id IS NOT NULL AND pa.sync_status <> 'deleted' "
                    "ORDER BY pa.id DESC LIMIT 1",
                    [self.platform, key],
                ).fetchone()
            )
        return None if row is None else (str(row[0]), row[1], row[2])

    # -- quota ---------------------------------------------------------------------------
    def quota(self, day: date) -> tuple[int, bool]:
        """(units spent, whether the platform said the quota is spent) on quota day ``day``."""
        with self._lock:
            if day not in self._quota:
                with self.store.looking() as con:
                    row = (
                        None
                        if con is None
                        else con.execute(
                            "SELECT units_used, exhausted FROM platform_quota "
                            "WHERE platform_code = ? AND quota_day = ?",
                            [self.platform, day],
                        ).fetchone()
                    )
                self._quota[day] = (0, False) if row is None else (int(row[0]), bool(row[1]))
            return self._quota[day]

    def spend(self, day: date, units: int, exhausted: bool = False) -> None:
        with self._lock:
            used, was = self.quota(day)
            self._quota[day] = (used + units, was or exhausted)
            pending, flag = self._spent.get(day, (0, False))
            self._spent[day] = (pending + units, flag or exhausted)
        self.flush(0.0)

    # -- writing -------------------------------------------------------------------------
    @property
    def unwritten(self) -> int:
        with self._lock:
            return len(self._unwritten) + len(self._spent)

    def flush(self, patience: float | None = None) -> bool:
        """Write what is not written yet, waiting for a busy state file up to ``patience``
        seconds (None: the store's lock timeout, then it raises). Returns whether everything
        is written."""
        with self._lock:
            sessions, spent = dict(self._unwritten), dict(self._spent)
        if not sessions and not spent:
            return True
        try:
            with self.store.writing(patience) as con:
                now = utcnow()
                for key, session in sessions.items():
                    if session is None:
                        con.execute(
                            "DELETE FROM upload_sessions WHERE platform_code = ? "
                            "AND remote_key = ?",
                            [self.platform, key],
                        )
                    else:
                        values = [_recordable(c, getattr(session, c)) for c in _COLUMNS]
                        con.execute(_UPSERT, [self.platform, key, *values, now, now])
                for day, (units, exhausted) in spent.items():
                    con.execute(
                        "INSERT INTO platform_quota (platform_code, quota_day, units_used, "
                        "exhausted) VALUES (?, ?, ?, ?) ON CONFLICT (platform_code, quota_day) "
                        "DO UPDATE SET units_used = platform_quota.units_used + "
                        "excluded.units_used, exhausted = platform_quota.exhausted OR "
                        "excluded.exhausted",
                        [self.platform, day, units, exhausted],
                    )
        except StateError:  # busy (or failing): kept, and written later
            if patience is None:
                raise
            return False
        with self._lock:
            for key, session in sessions.items():
                if self._unwritten.get(key, ...) is session:
                    del self._unwritten[key]
            for day, (units, exhausted) in spent.items():
                pending, flag = self._spent.get(day, (0, False))
                if (pending, flag) == (units, exhausted):
                    del self._spent[day]
                else:
                    self._spent[day] = (pending - units, flag)
        return True
