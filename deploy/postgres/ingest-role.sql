-- The ingest's own PostgreSQL role for the `ha` overlay (docs/install.md, step 2). Run once, as a
-- superuser, in orbit's database:
--   psql 'postgresql://ADMIN@HOST:5432/orbit' -v workers=orbit -v ingest=orbit_ingest \
--     -v password='ANOTHER-PASSWORD' -f deploy/postgres/ingest-role.sql
-- The workers grant the role its rights on orbit's tables at every start; this takes from it what
-- any role may do by default and what could stall the workers: taking advisory locks and creating
-- temporary tables (enough of either fills the server's lock table), and unlimited connections.
\set ON_ERROR_STOP on
-- 40 connections: 20 for each of the two ingest replicas (each pool holds up to 20); raise it with them.
CREATE ROLE :"ingest" LOGIN CONNECTION LIMIT 40 PASSWORD :'password';
REVOKE TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;
-- Only the workers take advisory locks; the ingest's inserts take theirs through orbit's trigger.
SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', oid::regprocedure)
  FROM pg_proc WHERE proname LIKE 'pg\_%advisory%' \gexec
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', oid::regprocedure, :'workers')
  FROM pg_proc WHERE proname LIKE 'pg\_%advisory%' \gexec
