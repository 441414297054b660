-- v6: what API drivers (http, youtube, vimeo) keep between runs.
--
-- upload_sessions: one row per object a driver put on a platform or is putting there, keyed
--   by (platform_code, remote_key). For a resumable protocol it holds the session URI or
--   upload link, the bytes the platform confirmed and the checksum and size of the file
--   being sent, so that the next run resumes an interrupted upload instead of starting over
--   (and starts over when the file changed). Once the upload is done it holds the platform's
--   id and URL for the object (state 'uploaded' while the platform still processes it,
--   'done' after), which is how stat, delete and metadata updates find it.
-- platform_quota: the API units a platform's daily quota has spent per quota day, and when a
--   platform said it was spent, so that jobs are deferred until the quota resets.

CREATE TABLE upload_sessions (
    platform_code VARCHAR(50) NOT NULL,
    remote_key VARCHAR NOT NULL,
    protocol VARCHAR(20) NOT NULL,
    state VARCHAR(20) NOT NULL,
    session_url VARCHAR,
    remote_id VARCHAR,
    remote_url VARCHAR,
    file_sha256 VARCHAR(64) NOT NULL,
    file_size BIGINT NOT NULL,
    bytes_confirmed BIGINT DEFAULT 0,
    created_at TIMESTAMP,
    updated_at TIMESTAMP,
    PRIMARY KEY (platform_code, remote_key)
);

CREATE TABLE platform_quota (
    platform_code VARCHAR(50) NOT NULL,
    quota_day DATE NOT NULL,
    units_used INTEGER NOT NULL DEFAULT 0,
    exhausted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (platform_code, quota_day)
);
