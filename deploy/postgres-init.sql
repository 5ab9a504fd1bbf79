-- One database per service: each service owns its tables and nobody else writes them.
CREATE DATABASE rating;
CREATE DATABASE settlement;
CREATE DATABASE invoicing;
CREATE DATABASE payments;
-- Operators, API tokens and sessions, checked by every HTTP surface (shared.access).
CREATE DATABASE access;

-- The portal reads every service's database and writes none: a role that may only SELECT, on the
-- tables the services' migrations create later too (default privileges of the owner, billing).
-- Set its password with ALTER ROLE portal_reader PASSWORD '...' and use it in PORTAL_*_DATABASE_URL.
CREATE ROLE portal_reader LOGIN;
\connect rating
GRANT USAGE ON SCHEMA public TO portal_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE billing IN SCHEMA public GRANT SELECT ON TABLES TO portal_reader;
\connect settlement
GRANT USAGE ON SCHEMA public TO portal_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE billing IN SCHEMA public GRANT SELECT ON TABLES TO portal_reader;
\connect invoicing
GRANT USAGE ON SCHEMA public TO portal_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE billing IN SCHEMA public GRANT SELECT ON TABLES TO portal_reader;
\connect payments
GRANT USAGE ON SCHEMA public TO portal_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE billing IN SCHEMA public GRANT SELECT ON TABLES TO portal_reader;
