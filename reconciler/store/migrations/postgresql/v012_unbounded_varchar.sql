-- v12 in PostgreSQL: every VARCHAR(n) column of the state's tables becomes VARCHAR, as DuckDB
-- has always treated them (see ../v012_unbounded_varchar.sql). Only the lengths change.

DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND data_type = 'character varying'
            AND character_maximum_length IS NOT NULL
        ORDER BY table_name, ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE VARCHAR', col.table_name,
                       col.column_name);
    END LOOP;
END
$$;
