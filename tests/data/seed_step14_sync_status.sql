SELECT
sp.platform_name,
sp.health_status,
COUNT(DISTINCT pa.source_asset_id) as synced_assets,
COUNT(CASE WHEN pa.sync_status = 'synced' THEN 1 END) as up_to_date,
COUNT(CASE WHEN pa.sync_status = 'outdated' THEN 1 END) as outdated,
COUNT(CASE WHEN pa.sync_status = 'syncing' THEN 1 END) as in_progress,
COUNT(sc.id) as conflicts
FROM sync_platforms sp
LEFT JOIN platform_assets pa ON sp.id = pa.platform_id
LEFT JOIN sync_conflicts sc ON pa.id = sc.platform_asset_id AND sc.resolution = 'pending'
WHERE sp.sync_enabled = TRUE
GROUP BY sp.id, sp.platform_name, sp.health_status
ORDER BY conflicts DESC, synced_assets DESC;
