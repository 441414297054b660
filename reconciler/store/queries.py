"""Read-only reports over the state file: status, distribution, events, jobs, conflicts.

Each function takes a read connection (or None when there is no state file yet) and returns a
:class:`Report`, a plain table that :mod:`~reconciler.render.formats`
shows as a terminal table, JSON or
CSV. ``status`` and ``distribution`` are the seed's Step 14 and Step 15 queries, with a
``failed`` column added and ties broken by name so that the order is stable. Copies deleted
from their platform are not in ``platform_assets`` (they moved to ``platform_assets_pruned``),
so neither report counts them; events and conflicts still name their asset and platform.
Jobs and events carry the git commit of the manifests they came from (``git_commit``,
``git_dirty``: NULL outside a git work tree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.errors import UsageError
from reconciler.model import JobStatus, Resolution, SyncStatus
from reconciler.store.connection import Connection, utcnow

# ``reconcile jobs --status``: sync_jobs.status as the apply stage writes it.
JOB_STATUSES = tuple(status.value for status in JobStatus)
OPEN = Resolution.PENDING


@dataclass
class Report:
    """A table: named columns, rows of plain values, and what to say when it is empty."""

    name: str  # the key that holds the rows in JSON output
    columns: list[str]
    rows: list[tuple[Any, ...]]
    empty: str = "nothing to show"
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _run(
    con: Connection | None,
    name: str,
    sql: str,
    params: list[Any] | dict[str, Any],
    empty: str,
    empty_without_state: str | None = None,
    oldest_first: bool = False,
) -> Report:
    """Run one report's SELECT. Without a state file: its columns, no rows, and
    ``empty_without_state`` (default ``empty``) to say so. ``oldest_first`` reverses rows that
    the SELECT picked newest first (to keep the newest ``limit``)."""
    if con is None:
        columns = _columns_of(sql)
        notes = ["no state file yet: nothing has been synced"]
        return Report(name, columns, [], empty_without_state or empty, notes)
    cursor = con.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    rows = [tuple(r) for r in cursor.fetchall()]
    if oldest_first:
        rows.reverse()
    return Report(name, columns, rows, empty)


def _columns_of(sql: str) -> list[str]:
    """Output column names of one of our SELECTs (each item ends in `AS name`)."""
    head = sql.split(" FROM ", 1)[0]
    return re.findall(r"\bAS (\w+)", head)


STATUS_SQL = f"""
SELECT sp.platform_code AS platform_code,
       sp.platform_name AS platform_name,
       sp.health_status AS health_status,
       COUNT(DISTINCT pa.source_asset_id) AS synced_assets,
       COUNT(CASE WHEN pa.sync_status = '{SyncStatus.SYNCED}' THEN 1 END) AS up_to_date,
       COUNT(CASE WHEN pa.sync_status = '{SyncStatus.OUTDATED}' THEN 1 END) AS outdated,
       COUNT(CASE WHEN pa.sync_status = '{SyncStatus.SYNCING}' THEN 1 END) AS in_progress,
       COUNT(CASE WHEN pa.sync_status = '{SyncStatus.FAILED}' THEN 1 END) AS failed,
       CAST(COALESCE(SUM(oc.open_conflicts), 0) AS BIGINT) AS conflicts,
       COUNT(CASE WHEN pa.sync_status = '{SyncStatus.OUTDATED}' AND sc.next_run_at > $now
                   AND pa.resync_requested_at IS NULL THEN 1 END) AS scheduled,
       MIN(CASE WHEN pa.sync_status = '{SyncStatus.OUTDATED}' AND sc.next_run_at > $now
                 AND pa.resync_requested_at IS NULL THEN sc.next_run_at END) AS next_run,
       CAST(MAX(COALESCE(q.queued, 0)) AS BIGINT) AS queued
 FROM sync_platforms sp
 LEFT JOIN (SELECT platform_id, COUNT(*) AS queued FROM sync_jobs
            WHERE queued AND status IN ('pending', 'processing', 'deferred')
            GROUP BY platform_id) q ON q.platform_id = sp.id
 LEFT JOIN platform_assets pa ON sp.id = pa.platform_id
 LEFT JOIN sync_configurations sc ON sc.config_code = pa.rule_code
 LEFT JOIN (SELECT platform_asset_id, COUNT(*) AS open_conflicts FROM sync_conflicts
            WHERE resolution = '{OPEN}' GROUP BY platform_asset_id) oc
        ON pa.id = oc.platform_asset_id
 WHERE sp.sync_enabled = TRUE
 GROUP BY sp.id, sp.platform_code, sp.platform_name, sp.health_status
 ORDER BY conflicts DESC, synced_assets DESC, sp.platform_name
"""


def status(con: Connection | None) -> Report:
    """The seed's Step 14 dashboard, one row per enabled platform; ``queued``: the jobs of
    the queue for workers not done yet (pending, in progress or deferred).

    Open conflicts are counted per placement first, so that a placement with two open
    conflicts does not count twice as synced (the seed's join would).
    """
    return _run(con, "platforms", STATUS_SQL, {"now": utcnow()}, "no platforms recorded yet")


DISTRIBUTION_SQL = """
SELECT sa.asset_code AS asset_code,
       sa.title AS title,
       sa.asset_type AS asset_type,
       sa.version AS source_version,
       COUNT(pa.id) AS platforms_synced,
       COUNT(CASE WHEN pa.synced_version = sa.version THEN 1 END) AS up_to_date,
       COUNT(CASE WHEN pa.synced_version < sa.version THEN 1 END) AS needs_update,
       STRING_AGG(sp.platform_name, ', ' ORDER BY sp.platform_name) AS platforms
 FROM source_assets sa
 LEFT JOIN platform_assets pa ON sa.id = pa.source_asset_id
 LEFT JOIN sync_platforms sp ON pa.platform_id = sp.id
 WHERE sa.status = 'active'
 GROUP BY sa.id, sa.asset_code, sa.title, sa.asset_type, sa.version
 ORDER BY needs_update DESC, sa.asset_code
"""


def distribution(con: Connection | None) -> Report:
    """The seed's Step 15 view: where each active asset is, and what needs an update."""
    return _run(con, "assets", DISTRIBUTION_SQL, [], "no assets recorded yet")


EVENTS_SQL = """
SELECT e.id AS id,
       e.event_time AS event_time,
       e.event_type AS event_type,
       e.event_status AS event_status,
       j.job_code AS job,
       sa.asset_code AS asset,
       sp.platform_code AS platform,
       e.message AS message,
       e.details AS details,
       e.git_commit AS git_commit,
       e.git_dirty AS git_dirty
 FROM sync_events_log e
 LEFT JOIN sync_jobs j ON j.id = e.job_id
 LEFT JOIN (SELECT id, source_asset_id, platform_id FROM platform_assets UNION ALL
            SELECT id, source_asset_id, platform_id FROM platform_assets_pruned) pa
        ON pa.id = e.platform_asset_id
 LEFT JOIN source_assets sa ON sa.id = COALESCE(pa.source_asset_id, j.asset_id)
 LEFT JOIN sync_platforms sp ON sp.id = COALESCE(pa.platform_id, j.platform_id)
 WHERE ($asset IS NULL OR sa.asset_code = $asset)
   AND ($platform IS NULL OR sp.platform_code = $platform)
   AND ($job IS NULL OR j.job_code = $job)
   AND ($since IS NULL OR e.event_time >= $since)
 ORDER BY e.event_time DESC, e.id DESC
 LIMIT $limit
"""


def events(
    con: Connection | None,
    asset: str | None = None,
    platform: str | None = None,
    job: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> Report:
    """The most recent ``limit`` events matching the filters, oldest first."""
    params = {"asset": asset, "platform": platform, "job": job, "since": since, "limit": limit}
    return _run(con, "events", EVENTS_SQL, params, "no events match", "no events", True)


JOBS_SQL = """
SELECT j.job_code AS job_code,
       c.config_code AS rule,
       sa.asset_code AS asset,
       sp.platform_code AS platform,
       j.job_type AS job_type,
       j.status AS status,
       j.progress_percent AS progress_percent,
       j.source_version AS source_version,
       j.target_version AS target_version,
       j.retry_count AS retry_count,
       j.created_at AS created_at,
       j.started_at AS started_at,
       j.completed_at AS completed_at,
       j.error_message AS error_message,
       j.git_commit AS git_commit,
       j.git_dirty AS git_dirty
 FROM sync_jobs j
 LEFT JOIN sync_configurations c ON c.id = j.config_id
 LEFT JOIN source_assets sa ON sa.id = j.asset_id
 LEFT JOIN sync_platforms sp ON sp.id = j.platform_id
 WHERE ($status IS NULL OR j.status = $status)
 ORDER BY j.created_at, j.id
"""


def jobs(con: Connection | None, status_filter: str | None = None) -> Report:
    """Every job, oldest first; only those in ``status_filter`` when given."""
    return _run(con, "jobs", JOBS_SQL, {"status": status_filter}, "no jobs match", "no jobs")


CONFLICTS_SQL = f"""
SELECT c.id AS id,
       sa.asset_code AS asset,
       sp.platform_code AS platform,
       c.conflict_type AS conflict_type,
       c.source_value AS source_value,
       c.target_value AS target_value,
       c.detected_at AS detected_at,
       c.resolution AS resolution,
       c.resolved_by AS resolved_by,
       c.resolved_at AS resolved_at,
       c.notes AS notes
 FROM sync_conflicts c
 LEFT JOIN (SELECT id, source_asset_id, platform_id FROM platform_assets UNION ALL
            SELECT id, source_asset_id, platform_id FROM platform_assets_pruned) pa
        ON pa.id = c.platform_asset_id
 LEFT JOIN source_assets sa ON sa.id = pa.source_asset_id
 LEFT JOIN sync_platforms sp ON sp.id = pa.platform_id
 WHERE $all OR c.resolution = '{OPEN}'
 ORDER BY c.detected_at, c.id
"""


def conflicts(con: Connection | None, include_resolved: bool = False) -> Report:
    """The open conflicts, oldest first; the resolved ones too with ``include_resolved``."""
    empty = "no conflicts" if include_resolved else "no open conflicts"
    return _run(con, "conflicts", CONFLICTS_SQL, {"all": include_resolved}, empty)


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date or date-time (UTC), or an age such as 30m, 2h, 7d."""
    match = _RELATIVE.match(text.strip())
    if match:
        try:
            return (now or utcnow()) - timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            raise UsageError(f"--since '{text}' is further back than dates go") from None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since '{text}' is neither a date-time such as 2024-01-25T08:00 nor an age "
            "such as 30m, 2h or 7d"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
