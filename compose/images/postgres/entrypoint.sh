#!/usr/bin/env bash
# Creates the database cluster on the first start (empty $PGDATA): superuser $POSTGRES_USER (default postgres)
# with $POSTGRES_PASSWORD, database $POSTGRES_DB (default: the user's name); then runs the server, listening on
# every address with password authentication. Extra arguments go to `postgres` (e.g. -c max_connections=200).
set -euo pipefail

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD (the database is created on the first start)" >&2
    exit 1
  fi
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server, no socket, nothing listens before the database exists.
    echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgres-entrypoint: created the database cluster in $PGDATA (user $user, database $db)"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
