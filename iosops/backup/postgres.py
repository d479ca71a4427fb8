"""PostgreSQL: fingerprints, physical base backups, and the WAL archive (push from archive_command,
fetch from restore_command) that makes point-in-time recovery possible."""
from __future__ import annotations

import re
from typing import Optional

from ..commands import pg
from ..config import Env, PostgresSource
from ..errors import OperationFailed
from ..runner import CommandFailed, Runner
from ..secretref import Secret
from .manifest import PostgresInfo

START_RE = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
END_RE = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")
WAL_SEGMENT_BYTES = 16 * 1024 * 1024


def password(env: Env) -> Optional[Secret]:
    ref = env.cfg.backup.postgres.password
    return ref.reveal("backup.postgres.password", env.root) if ref else None


def pg_env(env: Env) -> dict:
    pw = password(env)
    return {"PGPASSWORD": pw, "PGCONNECT_TIMEOUT": "5"} if pw else {"PGCONNECT_TIMEOUT": "5"}


def query(env: Env, runner: Runner, sql: str, dbname: Optional[str] = None) -> str:
    s = env.cfg.backup.postgres
    return runner.run(pg.psql(s.bin_dir, s.host, s.port, s.user, dbname or s.dbname, sql), mutating=False,
                      env=pg_env(env)).stdout.strip()


def fingerprint(env: Env, runner: Runner, like: Optional[dict] = None) -> dict:
    """Per-table row count and an order-independent content checksum, with the hash method used.

    Each table is hashed per column (`record`) unless a column type has no hash function, then by its
    text form (`text`). With `like` (a fingerprint from a manifest) a table is hashed the way it was
    then, so a restore is compared like with like (manifests without a method used `text`)."""
    tables = [t for t in query(env, runner, pg.TABLES_SQL).splitlines() if t]
    known = (like or {}).get("tables", {})
    out = {}
    for t in tables:
        method = known[t].get("hash", "text") if t in known else "record"
        try:
            count, checksum = query(env, runner, pg.table_fingerprint_sql(t, method)).split()
        except CommandFailed as exc:
            if method != "record" or "hash function" not in str(exc.result.stderr):
                raise
            method = "text"  # e.g. a json column: no hash function for the type
            count, checksum = query(env, runner, pg.table_fingerprint_sql(t, method)).split()
        out[t] = {"rows": int(count), "checksum": checksum, "hash": method}
    return {"tables": out}


def parse_basebackup_stderr(text: str) -> PostgresInfo:
    start, end = START_RE.search(text), END_RE.search(text)
    if not start or not end:
        raise OperationFailed("pg_basebackup did not report its WAL start/end points; is this PostgreSQL >= 10?")
    return PostgresInfo(start_lsn=start.group(1), timeline=int(start.group(2)), stop_lsn=end.group(1),
                        start_wal=wal_file_name(int(start.group(2)), start.group(1)))


def wal_file_name(timeline: int, lsn: str, segment_bytes: int = WAL_SEGMENT_BYTES) -> str:
    """The WAL segment holding `lsn` (e.g. 0/3000028 on timeline 1 -> 000000010000000000000003)."""
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    segno = ((hi << 32) | lo) // segment_bytes
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def server_version(env: Env, runner: Runner) -> str:
    return query(env, runner, "SHOW server_version")


def source(env: Env) -> PostgresSource:
    return env.cfg.backup.postgres
