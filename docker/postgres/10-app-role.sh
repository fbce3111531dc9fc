#!/bin/sh
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
# POSTGRES_USER (unclip) owns the database, its tables and the ledger's triggers; only
# `unclip migrate` connects as it (UNCLIP_MIGRATION_DATABASE_URL). The API and the workers
# connect as unclip_app (UNCLIP_DATABASE_URL), which owns nothing; `unclip migrate` grants it
# read/write on the working tables and only INSERT and SELECT on the moderation ledger.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$UNCLIP_APP_DB_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE unclip_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
  PASSWORD :'app_password';
GRANT CONNECT ON DATABASE :"db" TO unclip_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
