"""PostgreSQL argv builders (client tools of the configured major version)."""
from __future__ import annotations

from typing import Optional, Sequence


def _bin(bin_dir: str, name: str) -> str:
    return f"{bin_dir.rstrip('/')}/{name}" if bin_dir else name


def conn_args(host: str, port: int, user: str) -> list[str]:
    return ["-h", host, "-p", str(port), "-U", user]


def psql(bin_dir: str, host: str, port: int, user: str, dbname: str, sql: str) -> list[str]:
    return [_bin(bin_dir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *conn_args(host, port, user),
            "-d", dbname, "-c", sql]


def basebackup_to_stdout(bin_dir: str, host: str, port: int, user: str) -> list[str]:
    """A tar of the whole cluster on stdout, with the WAL needed to make it consistent (-X fetch) and a
    SHA-256 backup_manifest; -v prints the start/stop LSN and timeline on stderr."""
    return [_bin(bin_dir, "pg_basebackup"), *conn_args(host, port, user), "-D", "-", "-F", "tar", "-X", "fetch",
            "-c", "fast", "-v", "--manifest-checksums=SHA256", "-l", "iosops"]


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


def as_user(os_user: Optional[str], argv: Sequence[str]) -> list[str]:
    """Run as the cluster's OS user (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", os_user, "--", *argv] if os_user else list(argv)


TABLES_SQL = ("SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables "
              "ORDER BY 1")


def table_fingerprint_sql(table: str) -> str:
    """Row count and an order-independent content checksum: the sum of a 64-bit hash of every row's
    text form (hashtextextended, the stable hash behind hash partitioning). One sequential scan, no
    sort, so it costs about what reading the table costs."""
    return (f"SELECT count(*) || ' ' || coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) "  # nosec B608 # table names come from the env config (operator-owned), never from a request
            f"FROM {table} t")
