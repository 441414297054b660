-- v3: what apply needs to run jobs, recover them after a crash, and keep rate budgets.
--
-- sync_jobs: the run that made the job, the key the object goes to (and the key it replaces),
--   the checksum it must have when it lands (so an interrupted job can be checked against the
--   platform after a crash), the fingerprints to record on success, and for a deferred job
--   the time it becomes eligible.
-- platform_assets.metadata (the seed's TEXT column) holds driver details such as an S3 ETag.

ALTER TABLE sync_jobs ADD COLUMN run_id VARCHAR(40);
ALTER TABLE sync_jobs ADD COLUMN remote_key VARCHAR;
ALTER TABLE sync_jobs ADD COLUMN previous_key VARCHAR;
ALTER TABLE sync_jobs ADD COLUMN expected_checksum VARCHAR(64);
ALTER TABLE sync_jobs ADD COLUMN metadata_hash VARCHAR(64);
ALTER TABLE sync_jobs ADD COLUMN transform_hash VARCHAR(64);
ALTER TABLE sync_jobs ADD COLUMN eligible_at TIMESTAMP;
