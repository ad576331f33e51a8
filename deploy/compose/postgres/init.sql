-- The loader's own role, least privileged, as Segment's Postgres
-- destination docs ask for: it may connect, create schemas (it creates one
-- per source plus its own) and temporary tables, and owns what it creates.
-- Run by the postgres image on the first start of an empty data volume, as
-- the superuser, connected to POSTGRES_DB (warehouse).
CREATE ROLE segwarehouse WITH LOGIN PASSWORD 'segwarehouse';
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE warehouse TO segwarehouse;
