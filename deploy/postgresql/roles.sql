-- Roles for optout-milter on a shared PostgreSQL (run as a superuser, in the database the
-- nodes share, after editing the passwords):
--
--   createdb optout
--   psql -d optout -f roles.sql
--   optout-milter --store 'postgres://optout_owner:…@db.example/optout' init
--
-- optout_owner owns the tables and runs `init` (which creates and migrates them). Each
-- MTA node connects as optout_milter, which may read and add consent, history and token
-- subjects, and change current values, but never delete, rewrite the history or alter
-- the schema: a compromised node cannot erase the audit trail.

CREATE ROLE optout_owner LOGIN PASSWORD 'change-me-owner';
CREATE ROLE optout_milter LOGIN PASSWORD 'change-me-milter'
    -- Each node opens at most 11 connections (a pool of 10 and one listening for the
    -- others' changes), 12 on the node that delivers webhooks: allow 12 per node, and a
    -- few for the CLI.
    CONNECTION LIMIT 48;

GRANT CONNECT ON DATABASE optout TO optout_owner, optout_milter;
GRANT USAGE, CREATE ON SCHEMA public TO optout_owner;
GRANT USAGE ON SCHEMA public TO optout_milter;

-- Tables optout_owner creates from now on (at `init`) are usable by the nodes like this:
ALTER DEFAULT PRIVILEGES FOR ROLE optout_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE ON TABLES TO optout_milter;
ALTER DEFAULT PRIVILEGES FOR ROLE optout_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO optout_milter;
-- consent_history is append-only for everyone (a trigger refuses UPDATE, DELETE and
-- TRUNCATE); the grant above gives UPDATE on it only for the trigger to refuse.
