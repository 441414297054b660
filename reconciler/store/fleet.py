"""The queue's workers as `reconcile workers` lists them: every worker that ever started on a
PostgreSQL state (``sync_workers``), with its lease's heartbeat (``run_lease``) and the jobs
it claimed (``sync_jobs.claimed_by``).

Read by :func:`reconciler.queueing.fleet`; the queue itself is :mod:`reconciler.store.queue`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.store.connection import Connection
from reconciler.store.queue import NOW_SQL, WORKER_LEASE


@dataclass(frozen=True)
class WorkerRow:
    """One worker as `reconcile workers` lists it."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime | None
    stopped_at: datetime | None
    state: str  # live, lost (its lease ran out) or stopped
    last_heartbeat: datetime | None
    current_jobs: list[str]
    jobs_done: int
    jobs_failed: int


_WORKERS = f"""
SELECT w.worker_id, w.host, w.pid, w.started_at, w.stopped_at, w.state,
       l.heartbeat_at, l.released,
       l.heartbeat_at < {NOW_SQL} - l.ttl_seconds * INTERVAL '1 second',
       (SELECT string_agg(j.job_code, ' ' ORDER BY j.id) FROM sync_jobs j
         WHERE j.claimed_by = w.worker_id AND j.status = 'processing'),
       (SELECT count(*) FROM sync_jobs j WHERE j.claimed_by = w.worker_id
         AND j.status = 'completed'),
       (SELECT count(*) FROM sync_jobs j WHERE j.claimed_by = w.worker_id
         AND j.status = 'failed')
FROM sync_workers w LEFT JOIN run_lease l ON l.name = '{WORKER_LEASE}' || w.worker_id
ORDER BY w.started_at, w.worker_id
"""


def workers(con: Connection) -> list[WorkerRow]:
    """Every worker that ever started, oldest first."""
    found = []
    for row in con.execute(_WORKERS).fetchall():
        wid, host, pid, started, stopped, state, beat, released, stale, current = row[:10]
        if state == "live" and (released or stale or beat is None):
            state = "lost"  # not taken over yet, but no longer renewing its lease
        found.append(
            WorkerRow(
                str(wid),
                str(host or ""),
                int(pid or 0),
                started,
                stopped,
                str(state),
                beat,
                str(current).split() if current else [],
                int(row[10]),
                int(row[11]),
            )
        )
    return found
