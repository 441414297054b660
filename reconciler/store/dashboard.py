"""The web dashboard's reads and its one write of its own: one asset and its copies, a page of
the distribution report (searched, sorted, counted), jobs completed and failed per hour, and
"sync now" for one copy.

Called by :mod:`reconciler.web.views` (through :mod:`reconciler.ops`'s workspace store). The
reports it shares with the CLI (status, events, jobs, conflicts) stay in :mod:`.queries`. Every
statement is a constant; the sort orders a caller may ask for are a fixed table of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.errors import StateError
from reconciler.model import EventStatus, EventType, SyncStatus
from reconciler.store.connection import Connection, utcnow
from reconciler.store.db import Store
from reconciler.store.events import EventRow, insert_events
from reconciler.store.queries import DISTRIBUTION_SQL, JOBS_SQL, OPEN, Report

ASSET_SQL = """
SELECT asset_code AS asset_code, title AS title, description AS description,
       asset_type AS asset_type, file_path AS file_path, file_size_bytes AS file_size_bytes,
       mime_type AS mime_type, checksum AS checksum, version AS version, status AS status,
       updated_at AS updated_at
 FROM source_assets WHERE asset_code = ?
"""

PLACEMENTS_SQL = f"""
SELECT sp.platform_code AS platform, sp.platform_name AS platform_name,
       pa.rule_code AS rule, pa.sync_status AS sync_status,
       pa.synced_version AS synced_version, sa.version AS source_version,
       pa.local_checksum AS local_checksum, pa.remote_checksum AS remote_checksum,
       pa.platform_asset_id AS platform_asset_id, pa.platform_url AS platform_url,
       pa.last_synced_at AS last_synced_at, pa.last_verified_at AS last_verified_at,
       pa.resync_requested_at AS resync_requested_at,
       CAST((SELECT COUNT(*) FROM sync_conflicts c WHERE c.platform_asset_id = pa.id
             AND c.resolution = '{OPEN}') AS BIGINT) AS open_conflicts
 FROM platform_assets pa
 JOIN source_assets sa ON sa.id = pa.source_asset_id
 JOIN sync_platforms sp ON sp.id = pa.platform_id
 WHERE sa.asset_code = ?
 ORDER BY sp.platform_code
"""

# the distribution report, filtered by a search over code, title and platforms, as a subquery
_FOUND = (
    "SELECT * FROM (" + DISTRIBUTION_SQL.rsplit(" ORDER BY ", 1)[0] + ") d "
    "WHERE ? = '' OR strpos(lower(d.asset_code || ' ' || coalesce(d.title, '') || ' ' || "
    "coalesce(d.platforms, '')), lower(?)) > 0"
)
SORTS = {
    "needs_update": "needs_update",
    "asset_code": "asset_code",
    "title": "lower(title)",
    "asset_type": "asset_type",
    "source_version": "source_version",
    "platforms_synced": "platforms_synced",
    "up_to_date": "up_to_date",
}
_PAGES = {
    (key, desc): f"{_FOUND} ORDER BY {expr} {'DESC' if desc else 'ASC'} NULLS LAST, asset_code "
    "LIMIT ? OFFSET ?"
    for key, expr in SORTS.items()
    for desc in (False, True)
}
_FOUND_COUNT = "SELECT COUNT(*) FROM (" + _FOUND + ") n"

NEWEST_JOBS_SQL = JOBS_SQL.rsplit(" ORDER BY ", 1)[0] + (
    " ORDER BY j.created_at DESC, j.id DESC LIMIT $limit"
)

ACTIVITY_SQL = """
SELECT date_trunc('hour', j.completed_at) AS hour, sp.platform_code AS platform,
       CAST(COUNT(CASE WHEN j.status = 'completed' THEN 1 END) AS BIGINT) AS completed,
       CAST(COUNT(CASE WHEN j.status = 'failed' THEN 1 END) AS BIGINT) AS failed
 FROM sync_jobs j JOIN sync_platforms sp ON sp.id = j.platform_id
 WHERE j.completed_at >= ? AND j.status IN ('completed', 'failed')
 GROUP BY 1, 2 ORDER BY 1, 2
"""

_PLACEMENT = (
    "SELECT pa.id, pa.sync_status, CAST((SELECT COUNT(*) FROM sync_conflicts c "
    "WHERE c.platform_asset_id = pa.id AND c.resolution = ?) AS BIGINT) FROM platform_assets pa "
    "JOIN source_assets sa ON sa.id = pa.source_asset_id "
    "JOIN sync_platforms sp ON sp.id = pa.platform_id "
    "WHERE sa.asset_code = ? AND sp.platform_code = ?"
)
_REQUEST_RESYNC = (
    "UPDATE platform_assets SET sync_status = ?, resync_requested_at = ? WHERE id = ? RETURNING id"
)


def _report(con: Connection, name: str, sql: str, params: list[Any] | dict[str, Any]) -> Report:
    cursor = con.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    return Report(name, columns, [tuple(r) for r in cursor.fetchall()])


def asset(con: Connection | None, code: str) -> dict[str, Any] | None:
    """The recorded master of ``code`` (source_assets), or None."""
    if con is None:
        return None
    found = _report(con, "asset", ASSET_SQL, [code]).records()
    return found[0] if found else None


def placements(con: Connection | None, code: str) -> Report:
    """Every recorded copy of asset ``code``: platform, status, versions, checksums, where."""
    if con is None:
        return Report("placements", [], [], "no state yet")
    return _report(con, "placements", PLACEMENTS_SQL, [code])


@dataclass(frozen=True)
class Page:
    """One page of the distribution report: its rows and how many match in all."""

    report: Report
    total: int
    offset: int
    limit: int


def distribution_page(
    con: Connection | None,
    search: str = "",
    sort: str = "needs_update",
    desc: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> Page:
    """The rows of the distribution report matching ``search`` (in code, title or platform
    names, any case), sorted by ``sort`` (a key of :data:`SORTS`), from ``offset``."""
    if sort not in SORTS:
        raise StateError(f"cannot sort by '{sort}'; one of {', '.join(SORTS)}")
    if con is None:
        return Page(Report("assets", [], [], "no assets recorded yet"), 0, offset, limit)
    found = [search, search]
    total = con.execute(_FOUND_COUNT, found).fetchone()
    report = _report(con, "assets", _PAGES[(sort, desc)], [*found, limit, offset])
    return Page(report, int(total[0]) if total else 0, offset, limit)


def newest_jobs(con: Connection | None, status: str | None, limit: int) -> Report:
    """The newest ``limit`` jobs (in ``status``), newest first: the jobs report's columns."""
    if con is None:
        return Report("jobs", [], [], "no jobs")
    return _report(con, "jobs", NEWEST_JOBS_SQL, {"status": status, "limit": limit})


def activity(con: Connection | None, hours: int = 24, now: datetime | None = None) -> Report:
    """Jobs completed and failed per hour and platform over the last ``hours`` hours."""
    if con is None:
        return Report("activity", ["hour", "platform", "completed", "failed"], [])
    since = (now or utcnow()) - timedelta(hours=hours)
    return _report(con, "activity", ACTIVITY_SQL, [since])


def request_sync(store: Store, asset_code: str, platform: str, by: str) -> None:
    """Mark one copy to be sent again at the next reconcile, whatever its rule's schedule
    (as a conflict resolved with --use source does), and log who asked. Refused for a copy
    with an open conflict (resolve that instead) and for one that is not recorded."""
    if not by.strip():
        raise StateError("a sync request must name who asks for it")
    if not store.exists():
        raise StateError(f"there is no state in {store.name} yet")
    with store.writing() as con:
        row = con.execute(_PLACEMENT, [OPEN, asset_code, platform]).fetchone()
        if row is None:
            raise StateError(f"{asset_code} has no recorded copy on {platform}")
        pa_id, status, conflicts = row
        if conflicts:
            raise StateError(
                f"{asset_code} on {platform} has an open conflict; resolve it (--use source "
                "sends the master again)"
            )
        if status in (SyncStatus.PENDING, SyncStatus.SYNCING):
            raise StateError(f"{asset_code} on {platform} is {status} already")
        now = utcnow()
        con.execute(_REQUEST_RESYNC, [SyncStatus.OUTDATED, now, pa_id]).fetchall()
        insert_events(
            con,
            [
                EventRow(
                    EventType.RESYNC_REQUESTED,
                    EventStatus.SUCCESS,
                    f"{asset_code} on {platform}: sync requested (by {by})",
                    {"requested_by": by, "was": str(status)},
                    platform_asset_id=pa_id,
                )
            ],
        )
