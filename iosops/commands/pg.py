"""PostgreSQL argv builders (client tools of the configured major version)."""
from __future__ import annotations

import shlex

from typing import Optional, Sequence


def _bin(bin_dir: str, name: str) -> str:
    return f"{bin_dir.rstrip('/')}/{name}" if bin_dir else name


def conn_args(host: str, port: int, user: str) -> list[str]:
    return ["-h", host, "-p", str(port), "-U", user]


def psql(bin_dir: str, host: str, port: int, user: str, dbname: str, sql: str) -> list[str]:
    return [_bin(bin_dir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *conn_args(host, port, user),
            "-d", dbname, "-c", sql]


def psql_socket(user: str, dbname: str, sql: Optional[str] = None) -> list[str]:
    """psql over the server's Unix socket, inside its container (peer/trust auth, no password). With `sql`:
    that one query, unaligned tuples only (the value on stdout); without: a script on stdin."""
    query = ["-A", "-t"] if sql is not None else []
    return ["psql", "-X", "-q", *query, "-v", "ON_ERROR_STOP=1", "-h", "/run/postgresql", "-U", user, "-d", dbname,
            *(["-c", sql] if sql is not None else [])]


def psql_script_checked(user: str, dbname: str, variables: dict[str, str], required_files: list[str]) -> list[str]:
    """`sh -c CHECK psql ... -f -` over the server's socket, the script on stdin, psql variables from
    `variables` (-v k=v, in order). The check refuses (exit 2) a missing or empty file of `required_files`
    before psql runs: a script that reads passwords from them with backquotes would otherwise set an empty one."""
    check = (f'for f in {" ".join(shlex.quote(f) for f in required_files)}; do [ -s "$f" ] || '
             '{ echo "ensure-roles: $f is missing or empty" >&2; exit 2; }; done; exec "$@"')
    psql = psql_socket(user, dbname)
    for k, v in variables.items():
        psql += ["-v", f"{k}={v}"]
    return ["sh", "-c", check, "ensure-roles", *psql, "-f", "-"]


def basebackup_to_stdout(bin_dir: str, host: str, port: int, user: str) -> list[str]:
    """A tar of the whole cluster on stdout, with the WAL needed to make it consistent (-X fetch) and a
    backup_manifest with CRC32C file checksums (the default: pg_verifybackup's check against accidental
    damage; SHA-256 here cost 0.8 s of server CPU per GB, and our own sha256 of the whole artifact is the
    tamper check); -v prints the start/stop LSN and timeline on stderr."""
    return [_bin(bin_dir, "pg_basebackup"), *conn_args(host, port, user), "-D", "-", "-F", "tar", "-X", "fetch",
            "-c", "fast", "-v", "-l", "iosops"]


def createdb(bin_dir: str, host: str, port: int, user: str, dbname: str) -> list[str]:
    return [_bin(bin_dir, "createdb"), "-h", host, "-p", str(port), "-U", user, dbname]


def restore_list(bin_dir: str, dump: str) -> list[str]:
    """`pg_restore --list`: reads a custom-format dump's table of contents (fails on a damaged one)."""
    return [_bin(bin_dir, "pg_restore"), "--list", dump]


def verifybackup(bin_dir: str, directory: str) -> list[str]:
    return [_bin(bin_dir, "pg_verifybackup"), "--exit-on-error", directory]


def dump_custom(bin_dir: str, host: str, port: int, user: str, dbname: str, compress: int = 0) -> list[str]:
    return [_bin(bin_dir, "pg_dump"), *conn_args(host, port, user), "-d", dbname, "-F", "c", "-Z", str(compress)]


def initdb(bin_dir: str, data_dir: str, user: str, pwfile: str) -> list[str]:
    return [_bin(bin_dir, "initdb"), "-D", data_dir, "-U", user, f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"]


def pg_ctl(bin_dir: str, action: str, data_dir: str, log: Optional[str] = None, timeout: int = 120) -> list[str]:
    argv = [_bin(bin_dir, "pg_ctl"), action, "-D", data_dir, "-w", "-t", str(timeout)]
    if action == "stop":
        argv += ["-m", "fast"]
    if log and action in ("start", "restart"):
        argv += ["-l", log]
    return argv


def controldata(bin_dir: str, data_dir: str) -> list[str]:
    return [_bin(bin_dir, "pg_controldata"), "-D", data_dir]


CONTROL_FIELDS = ("Database system identifier", "Database cluster state", "Latest checkpoint location",
                  "Latest checkpoint's TimeLineID")


def parse_controldata(text: str) -> dict[str, str]:
    """The fields that identify a cluster's exact on-disk state after a clean shutdown."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CONTROL_FIELDS:
            out[key.strip()] = value.strip()
    return out


def as_user(os_user: Optional[str], argv: Sequence[str]) -> list[str]:
    """Run as the cluster's OS user (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", os_user, "--", *argv] if os_user else list(argv)


TABLES_SQL = ("SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables "
              "ORDER BY 1")


FINGERPRINT_METHODS = ("record", "text")


def table_fingerprint_sql(table: str, method: str = "record") -> str:
    """Row count and an order-independent content checksum: the sum of a 64-bit hash of every row.
    `record` hashes each column with its type's own extended hash function (hash_record_extended, the
    stable hashes behind hash partitioning; no text conversion, about 2.3x cheaper); `text` hashes the
    row's text form, for tables with a column type that has no hash function (json, xml, point, ...).
    One sequential scan (parallel where the planner chooses), no sort."""
    if method not in FINGERPRINT_METHODS:
        raise ValueError(f"unknown fingerprint method {method!r}")
    row_hash = "hash_record_extended(t, 0)" if method == "record" else "hashtextextended(t::text, 0)"
    return f"SELECT count(*) || ' ' || coalesce(sum({row_hash}::numeric), 0) FROM {table} t"  # nosec B608 # table names come from pg_stat_user_tables (quote_ident), never from a request


def receivewal_create_slot(bin_dir: str, host: str, port: int, user: str, slot: str) -> list[str]:
    """Create the physical replication slot the streamer uses, unless it exists (idempotent)."""
    return [_bin(bin_dir, "pg_receivewal"), *conn_args(host, port, user), "--no-password", "--slot", slot,
            "--create-slot", "--if-not-exists"]


def receivewal(bin_dir: str, host: str, port: int, user: str, directory: str, slot: str) -> list[str]:
    """Stream WAL into `directory` on `slot` (the segment being written is `<name>.partial`). No loop: the
    caller reconnects, so it can upload what was streamed when the connection drops. Status every second:
    the slot (and the primary's disk) is released as soon as a segment is flushed here."""
    return [_bin(bin_dir, "pg_receivewal"), *conn_args(host, port, user), "--no-password", "-D", directory,
            "--slot", slot, "--no-loop", "--status-interval", "1"]


def receivewal_drop_slot(bin_dir: str, host: str, port: int, user: str, slot: str) -> list[str]:
    return [_bin(bin_dir, "pg_receivewal"), *conn_args(host, port, user), "--no-password", "--slot", slot, "--drop-slot"]


# The password arrives on stdin (never in an argv or an environment another process can read); over
# TCP to 127.0.0.1, so PostgreSQL checks it (the container's local socket trusts every user).
_PASSWORD_CHECK = 'PGPASSWORD="$(cat)" exec psql -X -q -A -t -w -h 127.0.0.1 -U "$1" -d "$2" -c "SELECT 1"'  # nosec B105 # a shell line reading the password from stdin, no password in it


def password_check_in(docker: str, container: str, user: str, dbname: str) -> list[str]:
    """Log in as `user` with the password on stdin, inside a running PostgreSQL container."""
    return [docker, "exec", "-i", container, "sh", "-c", _PASSWORD_CHECK, "password-check", user, dbname]


def parse_password_check(rc: int, output: str) -> str:
    """"ok", "mismatch" (SQLSTATE 28P01: the cluster holds another password, or no such role), or
    "unknown" (not answering yet, another error: not this probe's call)."""
    if rc == 0:
        return "ok"
    text = output.lower()
    if "password authentication failed" in text or "28p01" in text:
        return "mismatch"
    return "unknown"


# psql inside the PostgreSQL container as the app's role, over TCP to itself with the password read from
# the container's secret file (POSTGRES_PASSWORD_FILE, set in compose and on Kubernetes): the password is
# in no argv and no environment of the caller, only in psql's own environment inside the container.
PSQL_IN_CONTAINER = ('u=$1 d=$2; shift 2; PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE") || exit 2; export PGPASSWORD; '
                     'exec psql -h 127.0.0.1 -U "$u" -d "$d" "$@"')


def psql_in_container(user: str, dbname: str, sql: Optional[str] = None) -> list[str]:
    """An interactive psql (sql None) or one statement (-c, stops at the first error, no ~/.psqlrc)."""
    extra = ["-X", "-v", "ON_ERROR_STOP=1", "-c", sql] if sql is not None else []
    return ["sh", "-c", PSQL_IN_CONTAINER, "psql", user, dbname, *extra]
