-- v11: what a resumable upload really sent.
--
-- upload_sessions.confirmed_sha256: the sha256 of the bytes of a resumable upload (YouTube,
--   Vimeo) that the platform confirmed so far (bytes_confirmed of them), hashed as they were
--   sent. A resume, in the same run or after a restart, reads that prefix from the master
--   again and goes on only if it is still those bytes; otherwise the upload starts over, so a
--   copy is never recorded with a checksum that covers bytes the platform did not get.

ALTER TABLE upload_sessions ADD COLUMN confirmed_sha256 VARCHAR(64);
