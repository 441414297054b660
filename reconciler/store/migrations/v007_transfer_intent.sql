-- v7: what a job is about to write, recorded before its first byte, so that recovery after a
-- SIGKILL can tell the tool's own upload from a stranger's.
--
-- sync_jobs.expected_size: the size of the bytes the job sends (the master's, or its
--   rendition's once it is made), beside expected_checksum (their sha256) and rendition_id.
-- upload_sessions.remote_checksum: the checksum the platform itself reported for an object
--   when it landed (for S3 the SHA-256 checksum S3 computed, composite for a multipart
--   object), so that verify compares what the platform says it holds, never metadata that
--   anyone could write. For S3, a row in state 'uploading' names a multipart upload this tool
--   started (session_url is its upload id): recovery aborts exactly those.

ALTER TABLE sync_jobs ADD COLUMN expected_size BIGINT;
ALTER TABLE upload_sessions ADD COLUMN remote_checksum VARCHAR;
