SELECT
sa.asset_code,
sa.title,
sa.asset_type,
sa.version as source_version,
COUNT(pa.id) as platforms_synced,
COUNT(CASE WHEN pa.synced_version = sa.version THEN 1 END) as up_to_date,
COUNT(CASE WHEN pa.synced_version < sa.version THEN 1 END) as needs_update,
STRING_AGG(sp.platform_name, ', ') as platforms
FROM source_assets sa
LEFT JOIN platform_assets pa ON sa.id = pa.source_asset_id
LEFT JOIN sync_platforms sp ON pa.platform_id = sp.id
WHERE sa.status = 'active'
GROUP BY sa.id, sa.asset_code, sa.title, sa.asset_type, sa.version
ORDER BY needs_update DESC;
