#!/usr/bin/env python3
"""Backup/restore figures, each a ratio against baselines measured in the same run on the same data.

  speed       our backup (pg_basebackup | zstd -T0 -> store) vs `pg_dump | gzip -6`       target >= 2x
  size        our stored bytes vs the pg_dump | gzip -6 file                              target <= 1x
  compression 1 - stored / database size (pg_database_size)                              target >= 80 %
  throughput  database bytes/s of our backup vs raw `pg_dump -Fc -Z0 > /dev/null`        target >= 0.8x
  restore     our restore (base backup, immediate) vs `gunzip | psql` into an empty db   target <= 0.33x

Run: .venv/bin/python benchmarks/backup.py [--size small|1gb] [--json]   (1gb: ~1 GB dataset, minutes)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imports below waive E402: run as a script, they need ROOT on sys.path first.
from iosops.backup.drill import DATASET_SQL, SIZES  # noqa: E402
from iosops.backup.restore import restore  # noqa: E402
from iosops.backup.run import run_backup  # noqa: E402
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab  # noqa: E402

BIN = "/usr/lib/postgresql/15/bin"


def timed_shell(cmd: str, env: dict) -> float:
    os.sync()  # every timed step starts with no dirty pages left by the one before (untimed)
    t0 = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def wait_archive_drained(lab, timeout: float = 600) -> None:
    """Shutting a cluster down waits for its WAL archive backlog: drain the baseline's WAL first."""
    lab.sql("SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == "0":
            return
        time.sleep(0.5)


def main() -> int:
    size = sys.argv[sys.argv.index("--size") + 1] if "--size" in sys.argv else "small"
    as_json = "--json" in sys.argv
    lab = make_lab("bench")
    try:
        env = lab.env()
        port = lab.inst.port
        lab.sql(DATASET_SQL.format(rows=SIZES[size]["rows"]))
        lab.sql("VACUUM (ANALYZE) drill_orders")  # as production tables are: hint bits set
        lab.sql("CHECKPOINT")
        db_bytes = int(lab.sql("SELECT pg_database_size(current_database())"))
        pgenv = {"PGPASSWORD": "lab-pass-4f9c2e", "PATH": "/usr/bin:/bin"}  # pragma: allowlist secret - throwaway password of the benchmark's own loopback PostgreSQL lab
        conn = f"-h 127.0.0.1 -p {port} -U ios"
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            dump = Path(tmp) / "dump.sql.gz"
            t_dump = timed_shell(f"{BIN}/pg_dump {conn} -d ios | gzip -6 > {dump}", pgenv)
            dump_bytes = dump.stat().st_size
            t_raw = timed_shell(f"{BIN}/pg_dump {conn} -d ios -Fc -Z0 > /dev/null", pgenv)
            os.sync()
            t0 = time.monotonic()
            man = run_backup(env, QUIET, only="postgres")
            t_ours = time.monotonic() - t0
            ours_bytes = man.total_size()
            lab.sql("CREATE DATABASE restore_baseline")
            t_psql = timed_shell(f"gunzip -c {dump} | {BIN}/psql -X -q {conn} -d restore_baseline -v ON_ERROR_STOP=1", pgenv)
            lab.sql("DROP DATABASE restore_baseline")
            # Flush the baseline's dirty pages now (untimed, in the baseline's favour) so our restore's
            # stop of the live cluster does not pay for the baseline's writes.
            lab.sql("CHECKPOINT")
            wait_archive_drained(lab)
            os.sync()
            t0 = time.monotonic()
            res = restore(env, QUIET, backup_id=man.id, safety=False)
            t_restore = time.monotonic() - t0
        figures = {
            "dataset": size, "database_mb": round(db_bytes / 1e6, 1),
            "pg_dump_gzip_s": round(t_dump, 2), "pg_dump_gzip_mb": round(dump_bytes / 1e6, 1),
            "ours_backup_s": round(t_ours, 2), "ours_stored_mb": round(ours_bytes / 1e6, 1),
            "speed_ratio": round(t_dump / t_ours, 2), "size_ratio": round(ours_bytes / dump_bytes, 3),
            "compression_pct": round(100 * (1 - ours_bytes / db_bytes), 1),
            "raw_read_s": round(t_raw, 2), "throughput_ratio": round(t_raw / t_ours, 2),
            "gunzip_psql_s": round(t_psql, 2), "ours_restore_s": round(t_restore, 2),
            "restore_ratio": round(t_restore / t_psql, 3),
            "restore_phases": res.phases,
        }
        targets = {"backup >= 2x pg_dump|gzip": figures["speed_ratio"] >= 2,
                   "size <= pg_dump|gzip": figures["size_ratio"] <= 1,
                   "compression >= 80%": figures["compression_pct"] >= 80,
                   "throughput >= 0.8x raw pg_dump read": figures["throughput_ratio"] >= 0.8,
                   "restore <= 0.33x gunzip|psql": figures["restore_ratio"] <= 0.33}
    finally:
        destroy_lab(lab)
    if as_json:
        print(json.dumps({"figures": figures, "targets": targets}, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k:22} {v}")
        for k, ok in targets.items():
            print(f"{'PASS' if ok else 'FAIL'}  {k}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
