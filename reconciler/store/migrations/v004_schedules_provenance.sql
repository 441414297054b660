-- v4: schedules and provenance.
--
-- sync_configurations: when a scheduled rule last ran, and when its waiting changes will run
--   next (shown by `reconcile status`).
-- sync_jobs, sync_events_log: the git commit of the manifests a job or event came from, and
--   whether that work tree had uncommitted changes.

ALTER TABLE sync_configurations ADD COLUMN last_run_at TIMESTAMP;
ALTER TABLE sync_configurations ADD COLUMN next_run_at TIMESTAMP;

ALTER TABLE sync_jobs ADD COLUMN git_commit VARCHAR(40);
ALTER TABLE sync_jobs ADD COLUMN git_dirty BOOLEAN;

ALTER TABLE sync_events_log ADD COLUMN git_commit VARCHAR(40);
ALTER TABLE sync_events_log ADD COLUMN git_dirty BOOLEAN;
