"""A real PostgreSQL cluster (WAL archiving to the project's store) and a real Redis, on the host,
for backup/restore tests. Everything lives under one /var/tmp folder and is stopped by PID/port."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from iosops.backup.pginstance import PgInstance, os_user
from iosops.backup.redisinstance import RedisInstance
from iosops.backup.wal import command_line
from iosops.config import load_env
from iosops.runner import Runner
from iosops.secretref import Secret
from tests.conftest import free_port

QUIET = Runner(say=lambda s: None)


@dataclass
class Lab:
    ws: Path
    inst: PgInstance
    red: RedisInstance
    overrides: dict

    def env(self, **extra):
        from iosops.config import deep_merge

        return load_env("local", environ={}, overrides=deep_merge(self.overrides, extra))

    def cli_env(self) -> dict[str, str]:
        """The same overrides as IOSOPS_* variables, for `inv` subprocesses."""
        out = {}

        def walk(node, prefix):
            for k, v in node.items():
                if isinstance(v, dict) and not (set(v) <= {"env", "file", "generate"}):
                    walk(v, f"{prefix}{k.upper()}__")
                else:
                    import json

                    out[f"IOSOPS_{prefix}{k.upper()}"] = json.dumps(v)
        walk(self.overrides, "")
        return out

    def sql(self, q: str) -> str:
        return self.inst.sql(QUIET, q)


def make_lab(name: str) -> Lab:
    ws = Path(tempfile.mkdtemp(prefix=f"iosops-itest-{name}-", dir="/var/tmp"))
    user = os_user("postgres")
    (ws / "store").mkdir()
    (ws / "pw").write_text("lab-pass-4f9c2e")
    if user:
        for p in (ws, ws / "store", ws / "pw"):
            shutil.chown(p, user, user)
    pg_port, redis_port = free_port(), free_port()
    overrides = {"state_dir": str(ws / "state"), "backup": {
        "runs_on": "host",  # clusters this test runs on the host, not a deployed stack
        "store": {"kind": "local", "path": str(ws / "store")}, "metrics_file": str(ws / "metrics.prom"),
        "postgres": {"port": pg_port, "data_dir": str(ws / "pgdata"), "password": {"file": str(ws / "pw")}},
        "redis": {"port": redis_port, "rdb_path": str(ws / "redis" / "dump.rdb")}}}
    inst = PgInstance(ws / "pgdata", pg_port, "/usr/lib/postgresql/15/bin", user)
    red = RedisInstance(ws / "redis", redis_port)
    lab = Lab(ws, inst, red, overrides)
    inst.init(QUIET, Secret("lab-pass-4f9c2e"), command_line(lab.env(), "push"))
    lab.sql("CREATE TABLE accounts (id serial PRIMARY KEY, owner text, balance numeric(12,2), meta jsonb);"
            "INSERT INTO accounts (owner, balance, meta) SELECT md5(i::text), i * 1.5, jsonb_build_object('i', i) "
            "FROM generate_series(1, 5000) i")
    red.start(QUIET)
    QUIET.run(["redis-cli", "-p", str(redis_port), "MSET", "k1", "v1", "k2", "v2", "k3", "v3"])
    return lab


def destroy_lab(lab: Lab) -> None:
    if (lab.inst.data_dir / "postmaster.pid").exists():
        lab.inst.stop(QUIET, check=False)
    lab.red.stop(QUIET)
    shutil.rmtree(lab.ws, ignore_errors=True)
