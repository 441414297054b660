-- v13: the job queue, for `reconcile --queue` and `reconcile worker`.
--
-- sync_jobs.queued: the job was written by `reconcile --queue` for a worker to claim, rather
--   than run by the command that planned it; such a job stays pending (or deferred, until
--   its eligible_at) until a worker claims it, and the recovery of a plain run leaves it be.
-- sync_jobs.priority: the rule's priority, for the claim order (highest first).
-- sync_jobs.work_spec: JSON of what a worker needs to run the job: the planned action and
--   the copy it replaces. Paths in it are never trusted: a worker resolves the master
--   through its own manifests and media root.
-- sync_jobs.claimed_by / claimed_at: the worker (host:pid:nonce) that claimed the job, and
--   when; kept after the job ends, as who did it.
-- sync_workers: one row per worker process that ever started, for `reconcile workers`; its
--   heartbeat is its lease's (run_lease, name 'worker:' || worker_id).

ALTER TABLE sync_jobs ADD COLUMN queued BOOLEAN;
ALTER TABLE sync_jobs ADD COLUMN priority INTEGER;
ALTER TABLE sync_jobs ADD COLUMN work_spec TEXT;
ALTER TABLE sync_jobs ADD COLUMN claimed_by VARCHAR;
ALTER TABLE sync_jobs ADD COLUMN claimed_at TIMESTAMP;

CREATE TABLE sync_workers (
    worker_id VARCHAR PRIMARY KEY,
    host VARCHAR,
    pid INTEGER,
    started_at TIMESTAMP,
    stopped_at TIMESTAMP,
    state VARCHAR,
    concurrency INTEGER,
    only_platform VARCHAR,
    only_rule VARCHAR
);

-- PostgreSQL only (what the workers claim from, in claim order; DuckDB files have no queue)
CREATE INDEX sync_jobs_queue ON sync_jobs (priority DESC NULLS LAST, id)
    WHERE queued AND status IN ('pending', 'deferred');
CREATE INDEX sync_jobs_claimed ON sync_jobs (claimed_by) WHERE status = 'processing';
