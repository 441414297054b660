"""The job rows of apply runs (``sync_jobs``) and the bookkeeping around them: the SQL of apply.

Called by :mod:`reconciler.apply` only: admission inserts one row per change
(:func:`insert_jobs`) after reading the hourly budgets, the checksums the last failed jobs set
out to write and the schedules; the recorder writes the jobs' changing state
(:func:`record_job_states`); recovery reads the jobs an interrupted run left open and closes
them (:func:`stale_jobs`, :func:`close_jobs`). Rows travel as dataclasses whose fields are the
column names, turned into tuples by :func:`row_of` (a shallow read of the fields: their values
are plain immutable values, so ``dataclasses.astuple``'s deep copy of each one, which cost
more than the insert at 100,000 jobs, bought nothing). Every function takes an open
connection; none opens a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from reconciler.store.bulk import insert_batched
from reconciler.store.db import Connection, upsert_rows


@dataclass(frozen=True)
class JobState:
    """The part of a sync_jobs row that changes while its job runs (fields: column names)."""

    id: int
    status: str  # a JobStatus
    progress_percent: float | None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    retry_count: int | None
    eligible_at: datetime | None
    expected_checksum: str | None
    expected_size: int | None
    job_type: str | None  # a JobType


def row_of(kind: type) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving the values of a row dataclass ``kind``'s fields, in field order."""
    names = tuple(f.name for f in fields(kind))
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda row: (get(row),)
    return get


STATE_COLUMNS = tuple(f.name for f in fields(JobState))
_state_row = row_of(JobState)
# set once, never unset: what the job set out to write, and its kind once known
KEPT = ("expected_checksum", "expected_size", "job_type")
# recovery knows only how a job ended: everything else stays as the run recorded it
KEPT_BY_RECOVERY = ("progress_percent", "started_at", "retry_count", *KEPT)


def record_job_states(con: Connection, states: Sequence[JobState]) -> None:
    """Write the latest state of running jobs, in bulk."""
    upsert_rows(con, "sync_jobs", "id", STATE_COLUMNS, [_state_row(s) for s in states], KEPT)


def close_jobs(con: Connection, states: Sequence[JobState]) -> None:
    """Close jobs an interrupted run left open: NULL fields keep what was recorded."""
    rows = [_state_row(s) for s in states]
    upsert_rows(con, "sync_jobs", "id", STATE_COLUMNS, rows, keep_when_null=KEPT_BY_RECOVERY)


@dataclass(frozen=True)
class NewJob:
    """One sync_jobs row as admission creates it (fields: column names)."""

    job_code: str
    config_id: int
    asset_id: int
    platform_id: int
    job_type: str  # a JobType
    status: str  # a JobStatus
    source_version: int | None
    target_version: int | None
    completed_at: datetime | None
    error_message: str | None
    created_at: datetime
    run_id: str
    remote_key: str
    previous_key: str | None
    expected_checksum: str | None
    metadata_hash: str | None
    transform_hash: str | None
    eligible_at: datetime | None
    git_commit: str | None
    git_dirty: bool | None
    rendition_id: str | None
    source_checksum: str | None
    expected_size: int | None
    progress_percent: float = 0
    retry_count: int = 0
    queued: bool | None = None  # written by `reconcile --queue`, for a worker to claim
    priority: int | None = None  # the claim order, highest first
    work_spec: str | None = None  # JSON: what the worker needs (reconciler.apply.queue)


_new_job_row = row_of(NewJob)


def insert_jobs(con: Connection, jobs: Sequence[NewJob]) -> list[int]:
    """Insert the run's jobs in one statement; their new ids, in order."""
    columns = tuple(f.name for f in fields(NewJob))
    return insert_batched(con, "sync_jobs", columns, [_new_job_row(j) for j in jobs])


def hourly_calls(con: Connection, now: datetime) -> dict[str, tuple[int, datetime | None]]:
    """Per platform code: the jobs started in the hour before ``now``, and the oldest start."""
    rows = con.execute(
        "SELECT sp.platform_code, count(*), min(j.started_at) FROM sync_jobs j "
        "JOIN sync_platforms sp ON sp.id = j.platform_id WHERE j.started_at >= ? "
        "GROUP BY sp.platform_code",
        [now - timedelta(hours=1)],
    ).fetchall()
    return {code: (used, oldest) for code, used, oldest in rows}


def intended_checksums(con: Connection) -> dict[tuple[str, str], str]:
    """Per (asset code, platform code): what the last failed job set out to write."""
    rows = con.execute(
        "SELECT asset_code, platform_code, expected_checksum FROM ("
        "SELECT sa.asset_code, sp.platform_code, j.expected_checksum, row_number() OVER "
        "(PARTITION BY j.asset_id, j.platform_id ORDER BY j.id DESC) AS newest FROM sync_jobs j "
        "JOIN source_assets sa ON sa.id = j.asset_id "
        "JOIN sync_platforms sp ON sp.id = j.platform_id "
        "WHERE j.status = 'failed' AND j.expected_checksum IS NOT NULL) AS failed "
        "WHERE newest = 1"
    ).fetchall()
    return {(asset, platform): expected for asset, platform, expected in rows}


def scheduled_runs(con: Connection) -> dict[str, datetime | None]:
    """When each recorded rule with a schedule last ran, by rule code."""
    rows = con.execute(
        "SELECT config_code, last_run_at FROM sync_configurations WHERE schedule_cron IS NOT NULL"
    ).fetchall()
    return dict(rows)


@dataclass(frozen=True)
class Schedule:
    """A scheduled rule's clock (fields: column names of sync_configurations)."""

    config_code: str
    last_run_at: datetime | None
    next_run_at: datetime | None


def record_schedules(con: Connection, schedules: Sequence[Schedule]) -> None:
    columns = tuple(f.name for f in fields(Schedule))
    rows = [row_of(Schedule)(s) for s in schedules]
    upsert_rows(con, "sync_configurations", "config_code", columns, rows)


# -- recovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleJob:
    """A job an interrupted run left pending or processing, with what recovery needs."""

    id: int
    code: str
    job_type: str
    remote_key: str | None
    expected_checksum: str | None
    source_version: int | None
    metadata_hash: str | None
    transform_hash: str | None
    asset: str
    platform: str
    rule: str | None
    rendition_id: str | None
    source_checksum: str | None
    previous_key: str | None
    previous_platform_id: str | None  # the platform's id of the copy recorded before
    imported: bool = False  # the copy recorded before is an imported object: the team's


# Whether the copy ``pa`` is an object taken over by an import (not made by this tool, and
# an import job ran for it): it stays the team's, never pruned, whatever updates it gets.
IMPORTED_SQL = (
    "coalesce(NOT coalesce(pa.managed, FALSE) AND EXISTS (SELECT 1 FROM sync_jobs ij "
    "WHERE ij.job_type = 'import' AND ij.asset_id = pa.source_asset_id "
    "AND ij.platform_id = pa.platform_id), FALSE)"
)

STALE_SQL = f"""
SELECT j.id, j.job_code, j.job_type, j.remote_key, j.expected_checksum, j.source_version,
       j.metadata_hash, j.transform_hash, sa.asset_code, sp.platform_code, c.config_code,
       j.rendition_id, j.source_checksum, j.previous_key, pa.platform_asset_id,
       {IMPORTED_SQL}
FROM sync_jobs j
JOIN source_assets sa ON sa.id = j.asset_id
JOIN sync_platforms sp ON sp.id = j.platform_id
LEFT JOIN sync_configurations c ON c.id = j.config_id
LEFT JOIN (SELECT source_asset_id, platform_id, max(id) AS id FROM platform_assets
           GROUP BY source_asset_id, platform_id) latest
       ON latest.source_asset_id = j.asset_id AND latest.platform_id = j.platform_id
LEFT JOIN platform_assets pa ON pa.id = latest.id
WHERE {{which}} ORDER BY j.id
"""


def stale_jobs(con: Connection) -> list[StaleJob]:
    """The jobs a run left pending or processing, oldest first; not the queue's, whose
    pending jobs wait for workers and whose lost ones workers take back (``reclaim``)."""
    which = "j.status IN ('pending', 'processing') AND NOT coalesce(j.queued, FALSE)"
    return [StaleJob(*row) for row in con.execute(STALE_SQL.format(which=which)).fetchall()]


def jobs_to_check(con: Connection, ids: Sequence[int]) -> list[StaleJob]:
    """The jobs ``ids`` (taken from a lost worker), as recovery checks them."""
    if not ids:
        return []
    which = "j.id IN (SELECT unnest(?::BIGINT[]))"
    rows = con.execute(STALE_SQL.format(which=which), [list(ids)]).fetchall()
    return [StaleJob(*row) for row in rows]


def uploading_platforms(con: Connection) -> set[str]:
    """Platforms with an S3 multipart upload recorded as still in progress."""
    rows: list[Any] = con.execute(
        "SELECT DISTINCT platform_code FROM upload_sessions "
        "WHERE protocol = 's3' AND state = 'uploading'"
    ).fetchall()
    return {code for (code,) in rows}
