-- v8 as PostgreSQL runs it: DuckDB's INSERT ... BY NAME spelled out column by column.
--
-- v8: a copy deleted from its platform leaves platform_assets.
--
-- The seed's dashboard (Step 14) counts every platform_assets row of a platform as a synced
-- asset, and its distribution report (Step 15) every row as a platform synced, so a copy this
-- tool deleted (a prune, or a remote_deleted conflict resolved with --use target) cannot stay
-- there as sync_status 'deleted'.
--
-- platform_assets_pruned: those copies, moved with their id (jobs, events and conflicts refer
--   to it), and when they were moved (NULL for the ones this migration moves). New copies get
--   ids above both tables, so an id is never reused. The move copies columns by name: a
--   column added to platform_assets later must be added here too.

CREATE TABLE platform_assets_pruned (
    id INTEGER PRIMARY KEY,
    source_asset_id INTEGER NOT NULL,
    platform_id INTEGER NOT NULL,
    platform_asset_id VARCHAR(200),
    platform_url VARCHAR(500),
    synced_version INTEGER,
    local_checksum VARCHAR(64),
    remote_checksum VARCHAR(64),
    sync_status VARCHAR(50),
    last_synced_at TIMESTAMP,
    last_verified_at TIMESTAMP,
    metadata TEXT,
    rule_code VARCHAR(50),
    metadata_hash VARCHAR(64),
    transform_hash VARCHAR(64),
    remote_key VARCHAR,
    managed BOOLEAN,
    rendition_id VARCHAR(64),
    pruned_at TIMESTAMP
);

UPDATE sync_conflicts SET resolution = 'resolved_by_prune', resolved_by = 'reconcile'
WHERE resolution = 'pending'
  AND platform_asset_id IN (SELECT id FROM platform_assets WHERE sync_status = 'deleted');

INSERT INTO platform_assets_pruned (id, source_asset_id, platform_id, platform_asset_id, platform_url, synced_version, local_checksum, remote_checksum, sync_status, last_synced_at, last_verified_at, metadata, rule_code, metadata_hash, transform_hash, remote_key, managed, rendition_id, pruned_at)
SELECT id, source_asset_id, platform_id, platform_asset_id, platform_url, synced_version, local_checksum, remote_checksum, sync_status, last_synced_at, last_verified_at, metadata, rule_code, metadata_hash, transform_hash, remote_key, managed, rendition_id, NULL::TIMESTAMP FROM platform_assets WHERE sync_status = 'deleted';

DELETE FROM platform_assets WHERE sync_status = 'deleted';
