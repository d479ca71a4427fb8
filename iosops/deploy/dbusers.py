"""Least privilege in the compose stack's datastores: who may log in to PostgreSQL and Redis, with what
rights, and which host holds which password.

PostgreSQL (the superuser `stack.postgres_user` is used only inside its own container, over the socket):
  ios_owner       owns the app schema and everything in it; runs the migrations (the deploy's one-off
                  migration container only, never the serving API)
  ios_app         the serving API: CONNECT, USAGE on the app schema, SELECT/INSERT/UPDATE/DELETE on its
                  tables, USAGE/SELECT on its sequences (default privileges: also on what ios_owner
                  creates later); no CREATE anywhere, no TEMP, no other database
  iosops_monitor  postgres-exporter: pg_monitor (pg_stat_*, pg_settings), CONNECT
  iosops_backup   walstream, backups, restores (made by pg-ensure-backup-role: REPLICATION, pg_read_all_data)

Redis (an ACL file rendered at deploy, mounted read-only; it holds SHA-256 hashes, never a password):
  default         off: a connection that does not AUTH can run nothing
  healthcheck     PING only, no keys (nopass: the container's own health check; it learns what a NOAUTH
                  reply would tell anyone)
  ios_app         keys ios:* only; GET/SET/DEL/PING
  iosops_backup   INFO, BGSAVE, DBSIZE, SCAN, PING; no key access (the RDB is read from the volume)
  iosops_exporter INFO, CONFIG GET, SLOWLOG GET/LEN, LATENCY LATEST, CLIENT SETNAME, PING; no keys

The roles are made idempotently by SQL sent on psql's stdin inside the PostgreSQL container (deploy, after
restores): psql reads each password from its compose secret file in that container, so no value is in
an argv, an environment, the plan or the output. Statement logging is off for that session.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from ..backup.stack import BACKUP_ROLE, REDIS_BACKUP_USER
from ..commands import compose as cc
from ..commands import pg

if TYPE_CHECKING:
    from ..config import Env
    from .target import Target

OWNER_ROLE = "ios_owner"
APP_ROLE = "ios_app"
MONITOR_ROLE = "iosops_monitor"
APP_SCHEMA = "public"  # where the migrations create their tables (the default search_path)

REDIS_APP_USER = "ios_app"
REDIS_EXPORTER_USER = "iosops_exporter"
REDIS_HEALTH_USER = "healthcheck"
REDIS_APP_KEYS = "ios:*"  # the API's cache keys (iosapi.main._cache_key)
REDIS_ACL_FILE = "redis/users.acl"  # under the stack directory; compose mounts ./redis read-only

SECRETS_DIR = "/run/secrets"

# compose secret -> (entry of `secrets:`, roles of the hosts that get its value; others get an empty file,
# since compose wants every declared secret file to exist). The data host sets the PostgreSQL passwords
# and renders the Redis ACL (hashes only); a web host runs the API and the migrations.
STACK_SECRETS: dict[str, tuple[str, frozenset[str]]] = {
    "postgres_password": ("postgres_password", frozenset({"data"})),  # the superuser: its container only
    "postgres_owner_password": ("postgres_owner_password", frozenset({"data", "web"})),
    "postgres_app_password": ("postgres_app_password", frozenset({"data", "web"})),
    "postgres_monitor_password": ("postgres_monitor_password", frozenset({"data"})),
    "redis_app_password": ("redis_app_password", frozenset({"web"})),
}
# The `secrets:` entries an env needs for these roles and users (beside postgres_password, backup_password).
ROLE_SECRETS = ("postgres_owner_password", "postgres_app_password", "postgres_monitor_password",
                "redis_app_password", "redis_backup_password", "redis_exporter_password")
# Rendered from a secret in another format: the redis exporter reads {"redis://host:port": password}.
REDIS_EXPORTER_SECRET = "redis_exporter_passwords"  # nosec B105 # pragma: allowlist secret - a compose secret's name, not a value
REDIS_EXPORTER_ADDR = "redis://redis:6379"


# -- pure -------------------------------------------------------------------------------------------------
def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redis_acl(app_password: str, backup_password: str, exporter_password: str) -> str:
    """The Redis ACL file: the default user off, each user its commands and key patterns, passwords as
    SHA-256 hashes (`#<hex>`)."""
    none = "resetpass resetkeys resetchannels -@all"
    # Every line is a user: Redis refuses an ACL file with anything else in it (comments too).
    lines = [
        f"user default off {none}",
        f"user {REDIS_HEALTH_USER} on nopass resetkeys resetchannels -@all +ping",
        f"user {REDIS_APP_USER} on #{_sha256(app_password)} resetkeys resetchannels ~{REDIS_APP_KEYS} "
        "-@all +ping +get +set +del",
        f"user {REDIS_BACKUP_USER} on #{_sha256(backup_password)} resetkeys resetchannels "
        "-@all +ping +info +bgsave +dbsize +scan",
        f"user {REDIS_EXPORTER_USER} on #{_sha256(exporter_password)} resetkeys resetchannels "
        "-@all +ping +info +config|get +slowlog|get +slowlog|len +latency|latest +client|setname",
    ]
    return "\n".join(lines) + "\n"


def redis_exporter_passwords(password: str) -> str:
    return json.dumps({REDIS_EXPORTER_ADDR: password})


# psql script, run as the superuser in the app database; :'name' are psql variables (role names etc. from
# argv, passwords read from the secret files here, in the container). One transaction: all or nothing.
ROLES_SQL = r"""
SET log_statement = 'none';
SET client_min_messages = warning;
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
\set owner_pw `cat /run/secrets/postgres_owner_password`
\set app_pw `cat /run/secrets/postgres_app_password`
\set monitor_pw `cat /run/secrets/postgres_monitor_password`
BEGIN;
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'owner', :'app', :'monitor']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              r, pw) FROM (VALUES (:'owner', :'owner_pw'), (:'app', :'app_pw'), (:'monitor', :'monitor_pw')) AS v(r, pw) \gexec
SELECT format('GRANT pg_monitor TO %I', :'monitor') \gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', r, :'db', :'schema')
  FROM unnest(ARRAY[:'owner', :'app']) AS r \gexec

-- The app schema and what the superuser made in it before these roles existed belong to the owner.
SELECT format('ALTER SCHEMA %I OWNER TO %I', :'schema', :'owner') \gexec
CREATE TEMP VIEW iosops_mine AS
  SELECT c.oid, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = :'schema' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.deptype = 'e');
SELECT format('ALTER %s %I.%I OWNER TO %I', CASE relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
              WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, :'schema', relname, :'owner')
  FROM iosops_mine WHERE relkind IN ('r', 'p', 'v', 'm', 'f') \gexec
-- (a table's own sequences moved with it; what is left are standalone ones)
SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', :'schema', relname, :'owner')
  FROM iosops_mine WHERE relkind = 'S' \gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = :'schema' AND p.prokind IN ('f', 'p')
   AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                   AND d.deptype = 'e') \gexec
SELECT format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype,
              :'owner')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = :'schema' AND t.typowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND (t.typtype IN ('e', 'r', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                   AND d.deptype = 'e') \gexec
DROP VIEW iosops_mine;

-- Databases: the app's only to the stack's roles; no one else may connect to any other (superuser aside).
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', datname) FROM pg_database WHERE datallowconn \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'db', r)
  FROM unnest(ARRAY[:'owner', :'app', :'monitor', :'backup']) AS r
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('GRANT TEMPORARY ON DATABASE %I TO %I', :'db', :'owner') \gexec

-- The app schema: the app role uses it, with DML only, on what exists and on what the owner makes later.
SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', :'schema') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', :'schema', :'app') \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', :'schema', :'app') \gexec
SELECT format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', :'schema', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I',
              :'owner', :'schema', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
              :'owner', :'schema', :'app') \gexec
COMMIT;
\echo ensure-roles: ready
"""

PASSWORD_FILES = [f"{SECRETS_DIR}/{n}" for n in ("postgres_owner_password", "postgres_app_password",
                                                  "postgres_monitor_password")]


def ensure_roles_argv(base: list[str], superuser: str, db: str, backup_role: str) -> list[str]:
    """`compose exec -T postgres sh -c CHECK psql ...`, the SQL on stdin: no value in argv. The check
    refuses (exit 2) a missing or empty password file before psql runs (its backquotes would otherwise
    set an empty password)."""
    variables = {"owner": OWNER_ROLE, "app": APP_ROLE, "monitor": MONITOR_ROLE, "backup": backup_role, "db": db,
                 "schema": APP_SCHEMA}
    return cc.exec_(base, "postgres", pg.psql_script_checked(superuser, db, variables, PASSWORD_FILES))


# -- what a host is given ----------------------------------------------------------------------------------
def secret_files(env: "Env", roles: frozenset[str]) -> dict[str, str]:
    """compose secret file -> content for a host of these roles ('' where the host has no use for it)."""
    out = {name: (env.secret(key).get() if roles & need else "") for name, (key, need) in STACK_SECRETS.items()}
    out[REDIS_EXPORTER_SECRET] = redis_exporter_passwords(env.secret("redis_exporter_password").get()) \
        if "data" in roles else ""
    return out


def redis_acl_for(env: "Env") -> str:
    return redis_acl(env.secret("redis_app_password").get(), env.secret("redis_backup_password").get(),
                     env.secret("redis_exporter_password").get())


def write_files(t: "Target") -> None:
    """The datastore users' secrets of this host, and on the data host the Redis ACL file."""
    for name, value in secret_files(t.env, t.roles).items():
        # Readable by the containers' users (the directory, 0700, keeps everyone else out).
        t.put(f"secrets/{name}", value, 0o644)
    if t.data:
        # Hashes only; read by the Redis container's user (999) through a read-only mount.
        t.put(REDIS_ACL_FILE, redis_acl_for(t.env), 0o644)


# -- the migration run ---------------------------------------------------------------------------------------
OWNER_SECRET = "postgres_owner_password"  # nosec B105 # pragma: allowlist secret - a compose secret's name, not a value
MIGRATE_ENV = {"POSTGRES_USER": OWNER_ROLE, "POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/{OWNER_SECRET}"}


def migrate_secret_mount(t: "Target") -> str:
    """The owner's password file, mounted read-only into the one-off migration container only."""
    return f"{t.dir / 'secrets' / OWNER_SECRET}:{SECRETS_DIR}/{OWNER_SECRET}:ro"


# -- act ----------------------------------------------------------------------------------------------------
def ensure_roles(t: "Target") -> None:
    """The PostgreSQL roles and grants (idempotent), in the stack's PostgreSQL container. Runs after the
    backup role exists (it gets CONNECT on the app database)."""
    s = t.env.cfg.stack
    t.runner.run(ensure_roles_argv(t.base(), s.postgres_user, s.postgres_db, BACKUP_ROLE), input=ROLES_SQL)
