-- The backup/replication role of the ops containers: pg_basebackup and pg_receivewal (REPLICATION, on the
-- physical slot of `stackops walstream`) and the fingerprints (member of pg_read_all_data). Idempotent:
-- run by the backup-role container of ios-postgres at start and every 5 minutes, so a new cluster, a
-- restored older data directory and a rotated password (Secret ios-backup) all converge.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
-- pwfile: the password's file (-v pwfile=...; backup-role.sh passes the Secret's mounted key).
\set pw `cat :'pwfile'`
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iosops_backup') AS missing \gset
\if :missing
CREATE ROLE iosops_backup;
\endif
ALTER ROLE iosops_backup WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
GRANT pg_read_all_data TO iosops_backup;
\unset pw
