-- v5: renditions (transforms).
--
-- platform_assets.rendition_id: the id of the rendition the platform holds (a hash of the
--   master's checksum, the resolved transform rules and the transform code's version); ''
--   when it holds the master itself. local_checksum stays the master's checksum and
--   remote_checksum is the checksum of the bytes the platform holds (the rendition's).
-- sync_jobs.rendition_id and sync_jobs.source_checksum: the same for a job, so that a job
--   interrupted by a crash can be recorded correctly once its upload is found on the
--   platform. expected_checksum (the bytes that must land) is filled in once the rendition
--   is made.

ALTER TABLE platform_assets ADD COLUMN rendition_id VARCHAR(64);
ALTER TABLE sync_jobs ADD COLUMN rendition_id VARCHAR(64);
ALTER TABLE sync_jobs ADD COLUMN source_checksum VARCHAR(64);
