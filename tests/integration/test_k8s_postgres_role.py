"""What k8s/base/postgres.yaml gives PostgreSQL, on a REAL PostgreSQL 15 (no cluster needed): the
command-line settings of the StatefulSet, its pg_hba.conf (hba_file) and the backup-role container's SQL.
The role is created, re-running changes nothing, a rotated password takes effect, and iosops_backup can
replicate (pg_basebackup, a physical slot with pg_receivewal) and read every table — but only with its
password. What is NOT proven here: the postgres image's entrypoint passing these args in a pod."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, free_port

BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.skipif(not (BIN / "postgres").exists(), reason="PostgreSQL 15 is not installed")


def sts_args() -> list[str]:
    docs = yaml.safe_load_all((ROOT / "k8s/base/postgres.yaml").read_text())
    sts = next(d for d in docs if d and d["kind"] == "StatefulSet")
    return sts["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.fixture(scope="module")
def cluster():
    ws = Path(tempfile.mkdtemp(prefix="iosops-itest-k8srole-", dir="/var/tmp"))
    asuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    for name in ("pg_hba.conf", "backup-role.sql"):
        shutil.copy(ROOT / "k8s/base/postgres" / name, ws / name)
    (ws / "pw").write_text("first-pw-7c1")  # pragma: allowlist secret - a throwaway test password
    if asuser:
        for p in [ws, *ws.iterdir()]:
            shutil.chown(p, "postgres", "postgres")
    port = free_port()
    args = [a.replace("/etc/iosops/postgres", str(ws)).replace("$(MAX_SLOT_WAL_KEEP_SIZE)", "2GB") for a in sts_args()]
    subprocess.run([*asuser, BIN / "initdb", "-D", ws / "data", "-U", "ios", "--auth-local=trust",
                    "--auth-host=scram-sha-256"], check=True, capture_output=True)
    opts = " ".join([f"-p {port} -k {ws} -c listen_addresses=127.0.0.1", *(f"'{a}'" if a != "-c" else a for a in args)])
    subprocess.run([*asuser, BIN / "pg_ctl", "-D", ws / "data", "-o", opts, "-l", ws / "log", "-w", "start"],
                   check=True, capture_output=True)

    def superuser_sql(*extra):
        return subprocess.run([*asuser, BIN / "psql", "-X", "-q", "-At", "-h", ws, "-p", str(port), "-U", "ios",
                               "-d", "postgres", *extra], capture_output=True, text=True, timeout=60)

    yield ws, port, superuser_sql
    subprocess.run([*asuser, BIN / "pg_ctl", "-D", ws / "data", "-m", "immediate", "-w", "stop"], capture_output=True)
    shutil.rmtree(ws, ignore_errors=True)


def as_backup(port, password, *argv):
    env = {**os.environ, "PGPASSWORD": password}
    return subprocess.run([*argv, "-h", "127.0.0.1", "-p", str(port), "-U", "iosops_backup"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_backup_role_streaming_and_hba(cluster):
    ws, port, sql = cluster
    role_sql = ["-v", f"pwfile={ws / 'pw'}", "-f", str(ws / "backup-role.sql")]
    first = sql(*role_sql)
    assert first.returncode == 0 and first.stdout == first.stderr == "", first.stderr
    again = sql(*role_sql)  # idempotent, and quiet
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert sql("-c", "SHOW wal_level; SHOW max_slot_wal_keep_size; SHOW hba_file").stdout.split() == \
        ["replica", "2GB", str(ws / "pg_hba.conf")]  # the committed file, not the data directory's
    assert sql("-c", "SELECT rolreplication, rolsuper, pg_has_role('iosops_backup', 'pg_read_all_data', 'member') "
                     "FROM pg_roles WHERE rolname = 'iosops_backup'").stdout.strip() == "t|f|t"
    sql("-d", "postgres", "-c", "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2)")

    read = as_backup(port, "first-pw-7c1", BIN / "psql", "-X", "-At", "-d", "postgres", "-c", "SELECT count(*) FROM items")
    assert read.stdout.strip() == "2", read.stderr
    slot = as_backup(port, "first-pw-7c1", BIN / "pg_receivewal", "--create-slot", "--if-not-exists", "-S", "iosops")
    assert slot.returncode == 0, slot.stderr
    base = as_backup(port, "first-pw-7c1", BIN / "pg_basebackup", "-D", str(ws / "bb"), "-Ft", "-X", "fetch")
    assert base.returncode == 0 and (ws / "bb" / "base.tar").stat().st_size > 1_000_000, base.stderr
    wrong = as_backup(port, "not-the-password", BIN / "pg_basebackup", "-D", str(ws / "bb2"), "-Ft")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr

    (ws / "pw").write_text("rotated-pw-92d")  # pragma: allowlist secret - a throwaway test password
    assert sql(*role_sql).returncode == 0
    assert as_backup(port, "first-pw-7c1", BIN / "psql", "-X", "-d", "postgres", "-c", "SELECT 1").returncode != 0
    assert as_backup(port, "rotated-pw-92d", BIN / "psql", "-X", "-d", "postgres", "-c", "SELECT 1").returncode == 0
