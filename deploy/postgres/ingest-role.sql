-- The ingest's own PostgreSQL role for the `ha` overlay (docs/install.md, step 2). Run once, as a
-- superuser, in orbit's database:
--   psql 'postgresql://ADMIN@HOST:5432/orbit' -v workers=orbit -v ingest=orbit_ingest \
--     -v password='ANOTHER-PASSWORD' -f deploy/postgres/ingest-role.sql
-- The workers grant the role its rights on orbit's tables at every start; this takes from it what
-- any role may do by default and what could stall or subvert the workers: taking advisory locks and
-- creating temporary tables (enough of either fills the server's lock table), creating objects
-- where the workers look them up, and unlimited connections. On an upgrade, run it once the old
-- ingest pods are gone, without the CREATE ROLE line.
\set ON_ERROR_STOP on
-- 40 connections: 20 for each of the two ingest replicas (each pool holds up to 20); raise it with them.
CREATE ROLE :"ingest" LOGIN CONNECTION LIMIT 40 PASSWORD :'password';
REVOKE TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;
-- Nothing the workers' statements resolve may be made by another role (PostgreSQL 14 and older let
-- every role create in schema public: an operator there would run as the workers).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CREATE ON SCHEMA public TO :"workers";
REVOKE CREATE ON DATABASE :"DBNAME" FROM PUBLIC;
-- Only the workers take advisory locks; the ingest's inserts take theirs through orbit's trigger.
SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', oid::regprocedure)
  FROM pg_proc WHERE proname LIKE 'pg\_%advisory%' \gexec
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', oid::regprocedure, :'workers')
  FROM pg_proc WHERE proname LIKE 'pg\_%advisory%' \gexec
