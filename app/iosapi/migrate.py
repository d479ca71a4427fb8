"""Versioned SQL migrations: app/migrations/NNNN_name.sql, applied in order, once, each in a transaction,
under an advisory lock so two replicas starting together cannot race. An applied file whose checksum
changed is refused (edit by adding a new migration, never by rewriting history).

A migration whose first lines contain `-- iosops: destructive` drops or rewrites something the running
(old) version still uses; deploys refuse it unless explicitly allowed (expand/contract rule).
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

LOCK_ID = 724_310_001
MIGRATIONS_DIR = Path(os.environ.get("MIGRATIONS_DIR", Path(__file__).resolve().parent.parent / "migrations"))


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    checksum: str
    destructive: bool


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        version, _, name = path.stem.partition("_")
        if not version.isdigit():
            raise SystemExit(f"migration {path.name}: name must start with a number (NNNN_name.sql)")
        sql = path.read_text()
        head = "\n".join(sql.splitlines()[:5]).lower()
        out.append(Migration(version, name, sql, hashlib.sha256(sql.encode()).hexdigest(),
                             "iosops: destructive" in head))
    return out


def connect(conninfo: str, wait_s: float = 0.0):
    """A connection; for up to `wait_s` seconds a refused/failed connect is retried (a pod's init container
    may start before PostgreSQL accepts connections)."""
    import time

    import psycopg

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def apply(conninfo: str, directory: Path = MIGRATIONS_DIR, wait_s: float = 0.0) -> list[str]:
    applied_now = []
    with connect(conninfo, wait_s) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, name text NOT NULL,"
                         " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for m in discover(directory):
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise SystemExit(f"migration {m.version}_{m.name} was changed after it was applied; "
                                         "revert the edit and add a new migration instead")
                    continue
                with conn.transaction():
                    conn.execute(m.sql)
                    conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (m.version, m.name, m.checksum))
                applied_now.append(f"{m.version}_{m.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


def main() -> int:
    from .settings import load

    applied = apply(load().pg_conninfo, wait_s=float(os.environ.get("MIGRATE_CONNECT_WAIT_S", "0")))
    print(f"migrations applied: {', '.join(applied)}" if applied else "migrations: no change (schema up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
