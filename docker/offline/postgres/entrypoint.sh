#!/bin/bash
# Initialise PGDATA on first start (user/db/password from env or *_FILE), then run postgres in the foreground.
set -euo pipefail
: "${POSTGRES_USER:=ios}" "${POSTGRES_DB:=ios}"
if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then POSTGRES_PASSWORD="$(<"$POSTGRES_PASSWORD_FILE")"; fi
mkdir -p "$PGDATA"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then echo "pg-entrypoint: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2; exit 2; fi
  chmod 0700 "$PGDATA"
  pwfile="$(mktemp)"; printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  { echo "listen_addresses = '*'"; echo "unix_socket_directories = '/run/postgresql'"; } >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [[ "$POSTGRES_DB" != "postgres" ]]; then createdb -U "$POSTGRES_USER" "$POSTGRES_DB"; fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
# Streaming replication for the backup role (walstream's pg_receivewal, pg_basebackup): `all` in
# pg_hba.conf does not match replication connections. Added once, also to clusters made before it.
if ! grep -q '^host replication all all scram-sha-256' "$PGDATA/pg_hba.conf"; then
  echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
unset POSTGRES_PASSWORD
exec postgres -D "$PGDATA" "$@"
