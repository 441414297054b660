-- v1: the seed's seven tables, with the seed's table names, column names and types, so that
-- the seed's reports (Step 14 and Step 15) run verbatim against the state file.
--
-- Differences from the seed, on purpose:
-- * No FOREIGN KEY clauses. DuckDB refuses to update a unique column of a row that another
--   table references, and to delete such rows; the reconciler keeps references consistent
--   itself (it is the only writer) and its tests check that no row is left orphaned.
-- * Ids are assigned by the writer (max(id) + n, in bulk), as the seed's INTEGER PRIMARY KEY
--   has no auto-increment in DuckDB.

CREATE TABLE source_assets (
    id INTEGER PRIMARY KEY,
    asset_code VARCHAR(50) NOT NULL UNIQUE,
    title VARCHAR(300),
    description TEXT,
    asset_type VARCHAR(50),
    category VARCHAR(100),
    file_path TEXT,
    file_size_mb DECIMAL(10, 2),
    checksum VARCHAR(64),
    version INTEGER DEFAULT 1,
    metadata TEXT,
    status VARCHAR(50) DEFAULT 'active',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE sync_platforms (
    id INTEGER PRIMARY KEY,
    platform_code VARCHAR(50) NOT NULL UNIQUE,
    platform_name VARCHAR(200),
    platform_type VARCHAR(50),
    api_endpoint VARCHAR(500),
    auth_type VARCHAR(50),
    supported_formats TEXT,
    max_file_size_mb INTEGER,
    rate_limit_per_hour INTEGER,
    sync_enabled BOOLEAN DEFAULT TRUE,
    last_health_check TIMESTAMP,
    health_status VARCHAR(50) DEFAULT 'unknown',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE sync_configurations (
    id INTEGER PRIMARY KEY,
    config_code VARCHAR(50) NOT NULL UNIQUE,
    config_name VARCHAR(200),
    source_category VARCHAR(100),
    asset_types TEXT,
    platform_id INTEGER NOT NULL,
    sync_mode VARCHAR(50),
    transform_rules TEXT,
    schedule_cron VARCHAR(50),
    auto_sync BOOLEAN DEFAULT TRUE,
    priority INTEGER DEFAULT 5,
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE sync_jobs (
    id INTEGER PRIMARY KEY,
    job_code VARCHAR(50) NOT NULL UNIQUE,
    config_id INTEGER NOT NULL,
    asset_id INTEGER NOT NULL,
    platform_id INTEGER NOT NULL,
    job_type VARCHAR(50),
    status VARCHAR(50) DEFAULT 'pending',
    progress_percent DECIMAL(5, 2) DEFAULT 0,
    source_version INTEGER,
    target_version INTEGER,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE platform_assets (
    id INTEGER PRIMARY KEY,
    source_asset_id INTEGER NOT NULL,
    platform_id INTEGER NOT NULL,
    platform_asset_id VARCHAR(200),
    platform_url VARCHAR(500),
    synced_version INTEGER,
    local_checksum VARCHAR(64),
    remote_checksum VARCHAR(64),
    sync_status VARCHAR(50) DEFAULT 'pending',
    last_synced_at TIMESTAMP,
    last_verified_at TIMESTAMP,
    metadata TEXT
);

CREATE TABLE sync_conflicts (
    id INTEGER PRIMARY KEY,
    platform_asset_id INTEGER NOT NULL,
    conflict_type VARCHAR(50),
    source_value TEXT,
    target_value TEXT,
    detected_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    resolution VARCHAR(50),
    resolved_by VARCHAR(100),
    resolved_at TIMESTAMP,
    notes TEXT
);

CREATE TABLE sync_events_log (
    id INTEGER PRIMARY KEY,
    job_id INTEGER,
    platform_asset_id INTEGER,
    event_type VARCHAR(50),
    event_status VARCHAR(50),
    message TEXT,
    details TEXT,
    event_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
