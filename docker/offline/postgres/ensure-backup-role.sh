#!/bin/bash
# Make the backup role exist with the current password (idempotent; run by inv deploy and inv restore):
# LOGIN REPLICATION for pg_basebackup/pg_receivewal, pg_read_all_data for the restore's fingerprints.
set -euo pipefail
: "${POSTGRES_USER:=ios}" "${BACKUP_ROLE:=iosops_backup}"
if [[ ! -s "${BACKUP_PASSWORD_FILE:?set BACKUP_PASSWORD_FILE}" ]]; then
  echo "ensure-backup-role: $BACKUP_PASSWORD_FILE is missing or empty" >&2; exit 2
fi
# The password is read by psql from the file (never on a command line).
psql -X -q -v ON_ERROR_STOP=1 -h /run/postgresql -U "$POSTGRES_USER" -d postgres -v role="$BACKUP_ROLE" <<'SQL'
\set pw `cat "$BACKUP_PASSWORD_FILE"`
SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN REPLICATION PASSWORD %L', :'role', :'pw') \gexec
SELECT format('GRANT pg_read_all_data TO %I', :'role') \gexec
SQL
echo "ensure-backup-role: $BACKUP_ROLE ready"
