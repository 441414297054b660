-- v12: text columns hold values of any length, in every database.
--
-- The seed's tables declare lengths (platform_asset_id VARCHAR(200), platform_url
-- VARCHAR(500), ...). DuckDB never enforced them, so the tool has always recorded longer
-- values: a local copy's key of 255 bytes, a long URL. PostgreSQL enforces them, and one
-- such value failed the whole write there ("value too long for type character varying").
-- Nothing changes in a DuckDB file; postgresql/v012_unbounded_varchar.sql drops the lengths.

SELECT 1;
