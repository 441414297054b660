"""What API drivers keep in the state file between runs: upload sessions, remote ids, quota.

A driver for a REST platform (``http``, ``youtube``, ``vimeo``) names its objects by the
platform's own ids, and a resumable upload by a session URI or upload link. Both are kept in
``upload_sessions``, keyed by (platform, remote key), and written at once, each in its own
short transaction: a session is on disk before its first byte is sent, so a run killed in
the middle of an upload leaves what the next run needs to resume it.

Spent API units are counted per quota day in ``platform_quota``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

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
)
_SELECT = (
    "SELECT protocol, state, session_url, remote_id, remote_url, file_sha256, file_size, "
    "bytes_confirmed FROM upload_sessions WHERE platform_code = ? AND remote_key = ?"
)
_UPSERT = (
    "INSERT INTO upload_sessions (platform_code, remote_key, protocol, state, session_url, "
    "remote_id, remote_url, file_sha256, file_size, bytes_confirmed, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (platform_code, remote_key) DO UPDATE SET protocol = excluded.protocol, "
    "state = excluded.state, session_url = excluded.session_url, "
    "remote_id = excluded.remote_id, remote_url = excluded.remote_url, "
    "file_sha256 = excluded.file_sha256, file_size = excluded.file_size, "
    "bytes_confirmed = excluded.bytes_confirmed, updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class Session:
    """One object's upload on one platform: in progress, uploaded (processing) or done."""

    key: str
    protocol: str  # http | youtube | vimeo
    state: str  # uploading | uploaded | done
    file_sha256: str
    file_size: int
    session_url: str | None = None  # the resumable session URI or tus upload link
    remote_id: str | None = None
    remote_url: str | None = None
    bytes_confirmed: int = 0

    def moved(self, **changes: Any) -> Session:
        return replace(self, **changes)


class DriverState:
    """One platform's sessions and quota in one state file; safe to use from worker threads
    (the store serialises writes)."""

    def __init__(self, store: StateStore, platform: str) -> None:
        self.store = store
        self.platform = platform

    # -- sessions ------------------------------------------------------------------------
    def session(self, key: str) -> Session | None:
        with self.store.writing() as con:
            row = con.execute(_SELECT, [self.platform, key]).fetchone()
        if row is None:
            return None
        values = dict(zip(_COLUMNS, row, strict=True))
        return Session(key=key, **values)

    def save(self, session: Session) -> None:
        now = utcnow()
        values = [getattr(session, c) for c in _COLUMNS]
        with self.store.writing() as con:
            con.execute(_UPSERT, [self.platform, session.key, *values, now, now])

    def forget(self, key: str) -> None:
        with self.store.writing() as con:
            con.execute(
                "DELETE FROM upload_sessions WHERE platform_code = ? AND remote_key = ?",
                [self.platform, key],
            )

    def remote(self, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, sha256 of what was sent) of the finished object at ``key``: from
        its session once done (an upload still going, or a video still processing, is not an
        object yet), else from the copy recorded in platform_assets."""
        with self.store.writing() as con:
            row = con.execute(
                "SELECT remote_id, remote_url, file_sha256 FROM upload_sessions "
                "WHERE platform_code = ? AND remote_key = ? AND remote_id IS NOT NULL "
                "AND state = 'done'",
                [self.platform, key],
            ).fetchone()
            if row is None:
                row = con.execute(
                    "SELECT pa.platform_asset_id, pa.platform_url, pa.remote_checksum "
                    "FROM platform_assets pa JOIN sync_platforms sp ON sp.id = pa.platform_id "
                    "WHERE sp.platform_code = ? AND pa.remote_key = ? "
                    "AND pa.platform_asset_id IS NOT NULL AND pa.sync_status <> 'deleted' "
                    "ORDER BY pa.id DESC LIMIT 1",
                    [self.platform, key],
                ).fetchone()
        return None if row is None else (str(row[0]), row[1], row[2])

    # -- quota ---------------------------------------------------------------------------
    def quota(self, day: date) -> tuple[int, bool]:
        """(units spent, whether the platform said the quota is spent) on quota day ``day``."""
        with self.store.writing() as con:
            row = con.execute(
                "SELECT units_used, exhausted FROM platform_quota "
                "WHERE platform_code = ? AND quota_day = ?",
                [self.platform, day],
            ).fetchone()
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def spend(self, day: date, units: int, exhausted: bool = False) -> None:
        with self.store.writing() as con:
            con.execute(
                "INSERT INTO platform_quota (platform_code, quota_day, units_used, exhausted) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (platform_code, quota_day) DO UPDATE SET "
                "units_used = platform_quota.units_used + excluded.units_used, "
                "exhausted = platform_quota.exhausted OR excluded.exhausted",
                [self.platform, day, units, exhausted],
            )
