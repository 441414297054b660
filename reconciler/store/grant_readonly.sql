-- Read-only access to a reconcile state in PostgreSQL, for a BI tool or a dashboard
-- (`reconcile state grant-readonly ROLE`). The names of the database, the state's schema, the
-- role, and the role reconcile writes as are filled in as quoted identifiers.
--
-- Connect to the database; reading the state needs no more:
GRANT CONNECT ON DATABASE {database} TO {role};
-- Temporary tables, which BI tools make for themselves (reconcile's planning needs none):
GRANT TEMPORARY ON DATABASE {database} TO {role};
-- Find the state's tables, and read them:
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
-- Read the tables that later migrations make too (they are made by the role reconcile writes as):
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role};
-- The state's tables by their own names in this database, so the seed's SQL runs unqualified:
ALTER ROLE {role} IN DATABASE {database} SET search_path = {schema};
