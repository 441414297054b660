-- v9: a re-sync that a person asked for.
--
-- platform_assets.resync_requested_at: when a conflict on the copy was resolved with
--   `--use source`. The next reconcile re-syncs the copy whatever its rule's schedule says
--   (a rule with auto_sync: false still waits for `reconcile --rule CODE`); the flag is
--   cleared once the copy is synced again.

ALTER TABLE platform_assets ADD COLUMN resync_requested_at TIMESTAMP;
ALTER TABLE platform_assets_pruned ADD COLUMN resync_requested_at TIMESTAMP;
