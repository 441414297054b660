-- v2: what planning needs beyond the seed's columns, and the hash cache.
--
-- source_assets: the measured size in bytes and MIME type, and a hash of the declared
--   metadata (title, description, category, type, metadata), so that a metadata-only change
--   is told apart from a new version of the content.
-- platform_assets: the rule that placed the copy, fingerprints of the metadata and transform
--   rules it was synced with, the key it was stored under, and whether this tool created it
--   (only such copies may ever be pruned).
-- file_hashes: sha256 of master files keyed by (path, device, inode, size, mtime_ns), so an
--   unchanged file is never read twice.

ALTER TABLE source_assets ADD COLUMN file_size_bytes BIGINT;
ALTER TABLE source_assets ADD COLUMN mime_type VARCHAR;
ALTER TABLE source_assets ADD COLUMN metadata_hash VARCHAR(64);

ALTER TABLE platform_assets ADD COLUMN rule_code VARCHAR(50);
ALTER TABLE platform_assets ADD COLUMN metadata_hash VARCHAR(64);
ALTER TABLE platform_assets ADD COLUMN transform_hash VARCHAR(64);
ALTER TABLE platform_assets ADD COLUMN remote_key VARCHAR;
ALTER TABLE platform_assets ADD COLUMN managed BOOLEAN DEFAULT FALSE;

CREATE TABLE file_hashes (
    path VARCHAR PRIMARY KEY,
    device UBIGINT NOT NULL,
    inode UBIGINT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    hashed_at TIMESTAMP NOT NULL
);
