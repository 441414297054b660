"""The job queue in a shared PostgreSQL state: the SQL of `reconcile --queue` and `reconcile
worker`.

`reconcile --queue` inserts its jobs as queued (:mod:`reconciler.store.jobs`, with
``queued``, ``priority`` and ``work_spec``); workers on any host then:

* :func:`claim` the next one, highest priority first, with ``FOR UPDATE SKIP LOCKED``: two
  workers never get one job, and neither waits for the other. A platform with an hourly rate
  limit is claimed under a lock of its ``sync_platforms`` row, so that counting the hour's
  starts and starting one more is atomic across workers; a job beyond the budget is
  deferred to when the budget frees up, and claimed again then;
* record what happens through the same store modules as a local run, each write fenced by
  the worker's own lease (``run_lease``, name ``worker:ID``);
* :func:`take_lost` the jobs of workers whose lease ran out (killed, stopped, cut off):
  their lease is ended (its fence fails from then on), and their jobs become the taker's,
  who checks the platform and then closes them or puts them back (:func:`requeue`);
* :func:`hand_back` what they did not finish when they stop.

Every function takes an open connection inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.model import EventStatus, EventType
from reconciler.redact import redact
from reconciler.store.connection import Connection, dialect, utcnow
from reconciler.store.events import EventRow, insert_events

OPEN = ("pending", "processing", "deferred")  # a queued job in these is not done yet
WORKER_LEASE = "worker:"  # run_lease.name of a worker's lease: this and its id
NOW_SQL = "(clock_timestamp() AT TIME ZONE 'UTC')"


@dataclass(frozen=True)
class Claimed:
    """A queued job as a worker claims it (fields: sync_jobs columns)."""

    id: int
    job_code: str
    job_type: str
    remote_key: str | None
    previous_key: str | None
    expected_checksum: str | None
    expected_size: int | None
    platform_id: int
    asset_id: int
    config_id: int
    work_spec: str | None
    retry_count: int | None


_CLAIMED = (
    "id, job_code, job_type, remote_key, previous_key, expected_checksum, expected_size, "
    "platform_id, asset_id, config_id, work_spec, retry_count"
)
# sync_jobs alone, in the order of its partial index (sync_jobs_queue): the first row not
# locked is the claim, whatever the queue's length (a join here made every claim sort it all)
_NEXT = """
SELECT j.id, j.platform_id,
       (SELECT sp.rate_limit_per_hour FROM sync_platforms sp WHERE sp.id = j.platform_id)
FROM sync_jobs j
WHERE j.queued AND j.status IN ('pending', 'deferred')
  AND (j.eligible_at IS NULL OR j.eligible_at <= ?) {only}
ORDER BY j.priority DESC NULLS LAST, j.id
LIMIT 1 FOR UPDATE OF j SKIP LOCKED
"""


def analyze(con: Connection) -> None:
    """Fresh statistics of the jobs after many were queued at once (PostgreSQL): the claims'
    plan then follows the queue's index rather than a guess made before they existed."""
    if dialect(con) == "postgresql":
        con.execute("ANALYZE sync_jobs")


_TAKE = (
    "UPDATE sync_jobs SET status = 'processing', claimed_by = ?, claimed_at = ?, "
    f"started_at = ?, eligible_at = NULL WHERE id = ? RETURNING {_CLAIMED}"
)
_DRAINED = (
    "SELECT count(*) FROM sync_jobs j WHERE j.queued AND (j.status = 'processing' OR "
    "(j.status IN ('pending', 'deferred') AND (j.eligible_at IS NULL OR j.eligible_at <= ?)))"
    "{only}"
)
_WORKER_LEASES = WORKER_LEASE + "%"  # LIKE: every worker's lease row
_LIVE = (
    "SELECT (SELECT count(*) FROM run_lease WHERE name LIKE ? AND NOT released) "
    "+ (SELECT count(*) FROM sync_jobs WHERE queued AND status = 'processing')"
)
_LOST = (
    f"SELECT name FROM run_lease WHERE name LIKE ? AND NOT released AND heartbeat_at < {NOW_SQL} "
    "- ttl_seconds * INTERVAL '1 second' FOR UPDATE SKIP LOCKED"
)
_REGISTER = (
    "INSERT INTO sync_workers (worker_id, host, pid, started_at, concurrency, only_platform, "
    "only_rule, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'live')"
)


def queued_placements(con: Connection) -> set[tuple[str, str]]:
    """The (asset code, platform code) placements with a queued job not done yet: a plan
    queues nothing more for them, and a local run leaves them to the workers."""
    rows = con.execute(
        "SELECT sa.asset_code, sp.platform_code FROM sync_jobs j "
        "JOIN source_assets sa ON sa.id = j.asset_id "
        "JOIN sync_platforms sp ON sp.id = j.platform_id "
        "WHERE j.queued AND j.status IN ('pending', 'processing', 'deferred')"
    ).fetchall()
    return {(asset, platform) for asset, platform in rows}


@dataclass(frozen=True)
class Deferral:
    """A platform's queued jobs deferred at a claim, its hourly budget spent."""

    platform_id: int
    jobs: int
    eligible_at: datetime


def _only(platform: str | None, rule: str | None) -> tuple[str, list[Any]]:
    """The SQL condition (on the jobs ``j``) and parameters of a worker's filters."""
    only, params = "", list[Any]()
    if platform is not None:
        only += " AND j.platform_id IN (SELECT id FROM sync_platforms WHERE platform_code = ?)"
        params.append(platform)
    if rule is not None:
        only += " AND j.config_id IN (SELECT id FROM sync_configurations WHERE config_code = ?)"
        params.append(rule)
    return only, params


def claim(
    con: Connection,
    worker: str,
    now: datetime,
    platform: str | None = None,
    rule: str | None = None,
    deferred: list[Deferral] | None = None,
) -> Claimed | None:
    """Claim the next queued job that may run now (only ``platform``'s, ``rule``'s), or
    None when there is none. A platform found beyond its hourly budget has all its
    eligible queued jobs deferred on the way, in one statement (told in ``deferred``, for
    the events the caller writes after the commit: a claim takes no lock but its rows')."""
    only, more = _only(platform, rule)
    params: list[Any] = [now, *more]
    while True:
        row = con.execute(_NEXT.format(only=only), params).fetchone()
        if row is None:
            return None
        job_id, platform_id, limit = row
        if limit is not None:
            over = _over_budget(con, int(platform_id), int(limit), now)
            if over is not None:
                if deferred is not None:
                    deferred.append(over)
                continue
        taken = con.execute(_TAKE, [worker, now, now, job_id]).fetchone()
        assert taken is not None
        return Claimed(*taken)


def _over_budget(con: Connection, platform_id: int, limit: int, now: datetime) -> Deferral | None:
    """None when one more job of the platform may start in this hour; else its eligible
    queued jobs are deferred to when the oldest start of the hour is an hour old. The
    platform's row is locked until the claim commits: the count and the start are one step
    for all workers."""
    con.execute("SELECT id FROM sync_platforms WHERE id = ? FOR UPDATE", [platform_id])
    used, oldest = con.execute(
        "SELECT count(*), min(started_at) FROM sync_jobs WHERE platform_id = ? AND started_at >= ?",
        [platform_id, now - timedelta(hours=1)],
    ).fetchone() or (0, None)
    if int(used) < limit:
        return None
    eligible = (oldest or now) + timedelta(hours=1)
    message = f"rate limit reached; eligible at {eligible:%Y-%m-%d %H:%M:%S} UTC"
    rows = con.execute(
        "UPDATE sync_jobs SET status = 'deferred', eligible_at = ?, error_message = ? "
        "WHERE platform_id = ? AND queued AND status IN ('pending', 'deferred') "
        "AND (eligible_at IS NULL OR eligible_at <= ?) RETURNING id",
        [eligible, message, platform_id, now],
    ).fetchall()
    return Deferral(platform_id, len(rows), eligible)


def deferral_events(con: Connection, deferrals: Sequence[Deferral]) -> None:
    """One event per platform whose queued jobs a claim deferred."""
    events = []
    for d in deferrals:
        name = con.execute(
            "SELECT platform_code FROM sync_platforms WHERE id = ?", [d.platform_id]
        ).fetchone()
        message = (
            f"rate limit of {name[0] if name else d.platform_id} reached: {d.jobs} queued jobs "
            f"deferred until {d.eligible_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        details = {"eligible_at": f"{d.eligible_at:%Y-%m-%dT%H:%M:%SZ}", "jobs": d.jobs}
        events.append(EventRow(EventType.DEFERRED, EventStatus.DEFERRED, message, details))
    insert_events(con, events)


def drained(
    con: Connection, now: datetime, platform: str | None = None, rule: str | None = None
) -> bool:
    """Whether no queued job (only ``platform``'s, ``rule``'s) is pending, eligible now, or
    being worked on."""
    only, more = _only(platform, rule)
    row = con.execute(_DRAINED.format(only=only), [now, *more]).fetchone()
    return not row or int(row[0]) == 0


def register(con: Connection, worker: str, host: str, pid: int, started_at: datetime,
             concurrency: int, platform: str | None, rule: str | None) -> None:  # fmt: skip
    """The worker's row, as it starts."""
    con.execute(_REGISTER, [worker, host, pid, started_at, concurrency, platform, rule])


def fail(con: Connection, job_id: int, message: str, now: datetime) -> None:
    """A claimed job no worker could run as it stands (its row is damaged, or names what
    the manifests do not declare): failed, with why; the next plan queues it afresh."""
    message = redact(message)
    con.execute(
        "UPDATE sync_jobs SET status = 'failed', error_message = ?, completed_at = ?, "
        "started_at = NULL WHERE id = ?",  # it never started: no part of the hour's budget
        [message, now, job_id],
    )
    event = EventRow(EventType.UPLOAD_START, EventStatus.FAILED, message, None, job_id)
    insert_events(con, [event])


def unclaim(con: Connection, job_id: int) -> None:
    """A job claimed but not started goes back to the queue as it was."""
    con.execute(
        "UPDATE sync_jobs SET status = 'pending', claimed_by = NULL, claimed_at = NULL, "
        "started_at = NULL WHERE id = ?",
        [job_id],
    )


def hand_back(con: Connection, worker: str, now: datetime) -> list[int]:
    """A stopping worker's jobs that it gave back (recorded pending) are the queue's again;
    the worker is stopped. A job still recorded as processing is not: how far it got is
    not known here (its last report was not written), so it waits for a platform check by
    the worker that takes it over once this one's lease is released. A job keeps its
    ``started_at``: it counts once in its platform's hour, as it did when it ran."""
    rows = con.execute(
        "UPDATE sync_jobs SET status = 'pending', claimed_by = NULL, claimed_at = NULL, "
        "progress_percent = 0, completed_at = NULL "
        "WHERE queued AND claimed_by = ? AND status = 'pending' RETURNING id",
        [worker],
    ).fetchall()
    ids = [int(r[0]) for r in rows]
    message = f"handed back by worker {worker}, which stopped before it finished"
    insert_events(
        con, [EventRow(EventType.HANDED_BACK, EventStatus.SUCCESS, message, None, i) for i in ids]
    )
    con.execute(
        "UPDATE sync_workers SET state = 'stopped', stopped_at = ? WHERE worker_id = ?",
        [now, worker],
    )
    return ids


# -- lost workers -----------------------------------------------------------------------------


def live_workers(con: Connection) -> int:
    """How many workers hold a lease not released, or have a job in progress (a DuckDB file
    has none): while there are any, their part files and uploads are not left over. A
    lease whose heartbeat is merely overdue counts too; its holder may be about to renew."""
    if dialect(con) != "postgresql":
        return 0
    row = con.execute(_LIVE, [_WORKER_LEASES]).fetchone()
    return int(row[0]) if row else 0


def take_lost(con: Connection, worker: str, now: datetime) -> dict[int, str]:
    """End the leases of the workers that stopped renewing them, and make their unfinished
    jobs ``worker``'s (also those of a worker that ended its lease without handing them
    back, or a taker that died while checking them). Per job id: who had it."""
    lost = con.execute(_LOST, [_WORKER_LEASES]).fetchall()
    for (name,) in lost:  # its fence fails from now on: it writes nothing more
        con.execute(
            "UPDATE run_lease SET released = TRUE, token = token + 1 WHERE name = ?", [name]
        )
        con.execute(
            "UPDATE sync_workers SET state = 'lost', stopped_at = ? WHERE worker_id = ?",
            [now, name[len(WORKER_LEASE) :]],
        )
    orphans = con.execute(
        "SELECT j.id, j.claimed_by FROM sync_jobs j WHERE j.queued AND j.status = 'processing' "
        "AND j.claimed_by IS NOT NULL AND j.claimed_by <> ? AND NOT EXISTS ("
        "SELECT 1 FROM run_lease l WHERE l.name = ? || j.claimed_by AND NOT l.released) "
        "FOR UPDATE OF j SKIP LOCKED",
        [worker, WORKER_LEASE],
    ).fetchall()
    taken = {int(job_id): str(was) for job_id, was in orphans}
    if taken:
        con.execute(
            "UPDATE sync_jobs SET claimed_by = ? WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [worker, list(taken)],
        )
    return taken


MAX_RECLAIMS = 3  # a job whose worker was lost this many times fails instead


def requeue(con: Connection, ids: Sequence[int]) -> list[int]:
    """Jobs taken from a lost worker whose work had not landed: pending again, for any
    worker (what they wrote before the first byte, their expected checksum, stays; so does
    ``started_at``, which counts once in the hour's budget). A job that has now lost
    :data:`MAX_RECLAIMS` workers (one that kills whoever runs it) fails instead; the ids
    of those."""
    if not ids:
        return []
    failed = con.execute(
        "UPDATE sync_jobs SET status = 'failed', completed_at = ?, error_message = ? "
        "WHERE id IN (SELECT unnest(?::BIGINT[])) AND (SELECT count(*) FROM sync_events_log e "
        "WHERE e.job_id = sync_jobs.id AND e.event_type = 'reclaimed') + 1 >= ? RETURNING id",
        [utcnow(), f"its worker was lost {MAX_RECLAIMS} times while running it; the next "
         "plan queues it again", list(ids), MAX_RECLAIMS],
    ).fetchall()  # fmt: skip
    con.execute(
        "UPDATE sync_jobs SET status = 'pending', claimed_by = NULL, claimed_at = NULL, "
        "progress_percent = 0, completed_at = NULL "
        "WHERE id IN (SELECT unnest(?::BIGINT[])) AND status <> 'failed'",
        [list(ids)],
    )
    return [int(r[0]) for r in failed]
