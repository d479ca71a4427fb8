#!/bin/bash
# Keep the backup role as backup-role.sql says: on start, then every 5 minutes (idempotent; see the SQL).
set -euo pipefail
export PGCONNECT_TIMEOUT=10 PGOPTIONS="-c statement_timeout=30s -c lock_timeout=10s"
while true; do
  if pg_isready -h /run/postgresql -q \
     && psql -X -q -h /run/postgresql -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
       -v pwfile=/run/secrets/iosops/backup-password -f /etc/iosops/postgres/backup-role.sql; then
    sleep 300
  else
    echo "backup-role: PostgreSQL not ready or the role could not be updated; retrying in 5 s" >&2
    sleep 5
  fi
done
