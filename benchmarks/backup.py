#!/usr/bin/env python3
"""Backup/restore figures, each a ratio against a baseline measured in the same run on the same cluster and data.

  speed        our backup (ops image) vs pgBackRest full backup                          target >= 1.3x
  size (pgbr)  our stored bytes vs pgBackRest's (backup set + the WAL it needs)         target <= 1.0x
  compression  1 - stored / database size (pg_database_size)                           target >= 80 %
  restore      our restore (ops image: restore-prepare + restore-finish, fingerprints
               verified) vs pgBackRest restore + start + promote                       target <= 0.8x
  and the older baselines, kept:
  speed        our backup vs `pg_dump | gzip -6`                                         target >= 2x
  size         our stored bytes vs the pg_dump | gzip -6 file                           target <= 1x
  throughput   database bytes/s of our backup vs raw `pg_dump -Fc -Z0 > /dev/null`     target >= 0.8x
  restore      our restore vs `gunzip | psql` into an empty database                    target <= 0.33x

Run: .venv/bin/python benchmarks/backup.py [--size small|1gb] [--ops-image REF] [--stack-limits] [--json]
(small: about a minute; 1gb: ~1 GB dataset, a few minutes). Needs root, Docker, PostgreSQL 15 and pgbackrest.

How it is made fair (why a host cluster and `docker run --network host`, not a compose stack):
pgBackRest must run on the database host, read the data directory itself, and get every WAL segment
from archive_command. A compose stack's PostgreSQL image has neither pgBackRest nor an archive_command
(its WAL goes to the walstream service), so pgBackRest could only be bolted onto it from the outside.
Instead ONE PostgreSQL 15 cluster runs on the host (as the Debian `postgres` user, TCP on 127.0.0.1 and
a private socket given on its command line) and both tools work on it: pgBackRest as designed (local,
posix repo, its `archive-push` chained after this project's own archive command so both archives get
every segment), and our engine exactly as in a deployed stack: `python3 -m iosops.backup.stackops` in a
container of the ops image (uid 999, read-only root, /tmp and /run/postgresql tmpfs, the env's config
rendered by `iosops.backup.stack.ops_config` with the `iosops_backup` role, the store bind-mounted at
/store), reaching PostgreSQL over TCP on 127.0.0.1 (`--network host`) with pg_basebackup. The cluster's
postgresql.conf looks like the stack image's (port 5432, socket /run/postgresql, no TCP listener; the
host instance gets its port and socket from its command line), so a restore recovers the data directory
inside the container exactly as `inv restore` does on a stack: `restore-prepare` then `restore-finish`
into the stopped cluster's data directory, bind-mounted at /pgvol and owned by uid 999 for the restore.
Neither side runs under a CPU or memory quota (both get the machine's 2 cores); `--stack-limits` gives
the ops containers the compose defaults (1 CPU, 512 MB) instead, which is what a stack deployed with
defaults gets. Not timed, for either side: stopping the cluster, the ownership changes, and pgBackRest's
removal of the old data directory (it restores into an empty directory; our restore-finish deletes the
replaced directory itself, inside its timed window). pgBackRest's restore has no safety backup and no
fingerprint check, so ours runs with --no-safety; the fingerprint check stays in our time (the issue's
definition) and is measured on pgBackRest's result too, as an extra line.
Every container is labelled iosops.test=1 and removed by its name.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imports below waive E402: run as a script, they need ROOT on sys.path first.
import yaml  # noqa: E402

from iosops.backup.drill import DATASET_SQL, SIZES  # noqa: E402
from iosops.backup.pginstance import PgInstance  # noqa: E402
from iosops.backup.wal import command_line  # noqa: E402
from iosops.config import load_env  # noqa: E402
from iosops.runner import Runner  # noqa: E402
from tests.conftest import free_port  # noqa: E402

BIN = "/usr/lib/postgresql/15/bin"
PGBACKREST = shutil.which("pgbackrest") or "/usr/bin/pgbackrest"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
QUIET = Runner(say=lambda s: None)
PASSWORD = "bench-pass-5d1a7c"  # pragma: allowlist secret - throwaway password of the benchmark's own loopback cluster
OPS_UID = 999  # the PostgreSQL image's uid, as the stack's ops containers run
STANZA = "bench"


def arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def as_pg(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


def timed_shell(cmd: str, env: dict) -> float:
    os.sync()  # every timed step starts with no dirty pages left by the one before (untimed)
    t0 = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


class Bench:
    """The benchmark's cluster, pgBackRest's repo and config, and the ops containers' mounts, in one /var/tmp folder."""

    def __init__(self, ops_image: str, stack_limits: bool):
        self.ws = Path(tempfile.mkdtemp(prefix="iosops-bench-", dir="/var/tmp"))
        self.vol = self.ws / "vol"  # the "volume": its pgdata/ is the cluster (the stack's /pgvol)
        self.data = self.vol / "pgdata"
        self.sock = self.ws / "sock"
        self.store = self.ws / "store"
        self.port = free_port()
        self.image = ops_image
        self.limits = ["--cpus", "1.0", "--memory", "512m"] if stack_limits else []
        self.containers: list[str] = []
        self.inst = PgInstance(self.data, self.port, BIN, "postgres", socket=self.sock)
        self.pgbr_conf = self.ws / "pgbackrest" / "pgbackrest.conf"
        overrides = {"state_dir": str(self.ws / "state"), "backup": {
            "runs_on": "host", "store": {"kind": "local", "path": str(self.store)},
            "metrics_file": str(self.ws / "metrics.prom"),
            "postgres": {"port": self.port, "data_dir": str(self.data), "password": {"file": str(self.ws / "pw")}}}}
        self.env = load_env("local", environ={}, overrides=overrides)

    # -- the host cluster -----------------------------------------------------------------------------
    def setup(self) -> None:
        for d in (self.vol, self.sock, self.store, self.ws / "pgbackrest" / "repo", self.ws / "pgbackrest" / "log",
                  self.ws / "pgbackrest" / "lock", self.ws / "pgbackrest" / "spool"):
            d.mkdir(parents=True)
        (self.ws / "pw").write_text(PASSWORD)
        pwfile = self.ws / "pwfile"
        pwfile.write_text(PASSWORD)
        for p in [self.ws, pwfile, self.ws / "pw", *self.ws.rglob("*")]:
            shutil.chown(p, "postgres", "postgres")
        self.store.chmod(0o777)  # the host's archive_command (postgres) and the ops containers (999) both write it
        sh(as_pg([f"{BIN}/initdb", "-D", str(self.data), "-U", "ios", f"--pwfile={pwfile}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"]))
        pwfile.unlink()
        ours = command_line(self.env, "push")
        pgbr = f"{PGBACKREST} --config={self.pgbr_conf} --stanza={STANZA} archive-push \"$1\""
        archive = self.ws / "archive-iosops-then-pgbackrest.sh"  # pgBackRest checks its name is in archive_command
        ours_cmd = ours.replace("%p %f", '"$1" "$2"')
        archive.write_text("#!/bin/bash\n# Both archives get every segment: this project's, then pgBackRest's.\n"
                           f"set -euo pipefail\n{ours_cmd}\n{pgbr}\n")
        archive.chmod(0o755)
        # postgresql.conf as the stack image's cluster has it (port 5432, socket /run/postgresql, no TCP, no
        # archiving: on a stack WAL goes to walstream); the host instance gets its port, address, socket and
        # archiving on its command line (start()), so a restored copy recovers in the ops container as on a stack.
        conf = ["wal_level = replica", "max_wal_senders = 5", "listen_addresses = ''",
                "unix_socket_directories = '/run/postgresql'"]
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("\n# iosops benchmark\n" + "\n".join(conf) + "\n")
        self.pgbr_conf.write_text("\n".join([
            "[global]", f"repo1-path={self.ws}/pgbackrest/repo", f"log-path={self.ws}/pgbackrest/log",
            f"lock-path={self.ws}/pgbackrest/lock", f"spool-path={self.ws}/pgbackrest/spool",
            "compress-type=zst", "compress-level=3", "process-max=2", "start-fast=y", "repo1-retention-full=9",
            "log-level-console=warn", "log-level-file=info",
            f"[{STANZA}]", f"pg1-path={self.data}", f"pg1-port={self.port}", f"pg1-socket-path={self.sock}",
            "pg1-user=ios", ""]))
        shutil.chown(self.pgbr_conf, "postgres", "postgres")
        self.start()
        self.sql("CREATE DATABASE ios", db="postgres")
        self.sql(f"CREATE ROLE iosops_backup LOGIN REPLICATION PASSWORD '{PASSWORD}'; "
                 "GRANT pg_read_all_data TO iosops_backup", db="postgres")
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")

    def start(self) -> None:
        sh(as_pg([f"{BIN}/pg_ctl", "start", "-D", str(self.data), "-w", "-t", "300", "-l", str(self.ws / "pg.log"),
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock} -c archive_mode=on "
                  f"-c archive_timeout=60 -c archive_command='{self.ws}/archive-iosops-then-pgbackrest.sh %p %f'"]))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(as_pg([f"{BIN}/pg_ctl", "stop", "-D", str(self.data), "-w", "-t", "300", "-m", "fast"]),
                           check=False, capture_output=True)

    def sql(self, q: str, db: str = "ios") -> str:
        return sh(as_pg([f"{BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                         "-p", str(self.port), "-U", "ios", "-d", db, "-c", q])).stdout.strip()

    def wait_archive_drained(self, timeout: float = 900) -> None:
        """A timed step must not share the machine with the archiver's backlog (and shutting a cluster
        down waits for it): drain it first."""
        self.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == "0":
                return
            time.sleep(0.5)
        raise RuntimeError("the WAL archive did not drain")

    def pgbackrest(self, *args: str) -> str:
        return sh(as_pg([PGBACKREST, f"--config={self.pgbr_conf}", f"--stanza={STANZA}", *args])).stdout

    def fingerprint(self) -> dict:
        from iosops.backup.postgres import fingerprint

        env = load_env("local", environ={}, overrides={"backup": {"postgres": {
            "host": str(self.sock), "port": self.port, "user": "ios", "password": None}}})
        return fingerprint(env, QUIET)

    def own(self, uid: int | str) -> None:
        """The volume as the restore's user sees it: 999 in the ops container, postgres on the host."""
        user = str(uid)
        sh(["chown", "-R", f"{user}:{user}", str(self.vol)])

    # -- the ops containers --------------------------------------------------------------------------
    def write_ops_config(self) -> None:
        from iosops.backup.stack import ops_config

        cfg = ops_config(self.env)
        cfg["backup"]["postgres"].update({"host": "127.0.0.1", "port": self.port})
        envs, secrets, opsdata = self.ws / "envs", self.ws / "secrets", self.ws / "opsdata"
        for d in (envs, secrets, opsdata):
            d.mkdir(exist_ok=True)
        (envs / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
        (secrets / "backup_password").write_text(PASSWORD)
        (secrets / "backup_password").chmod(0o644)
        secrets.chmod(0o755)
        shutil.chown(opsdata, OPS_UID, OPS_UID)

    def ops(self, action: str, *args: str) -> dict:
        """One `docker run` of the ops image, as the stack's `compose run --rm ops` does; its JSON answer."""
        name = f"iosops-bench-{os.getpid()}-{len(self.containers)}-{action}"
        self.containers.append(name)
        argv = [DOCKER, "run", "--rm", "--name", name, "--label", "iosops.test=1", "--network", "host",
                "--user", f"{OPS_UID}:{OPS_UID}", "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m",
                "--tmpfs", "/run/postgresql:rw,noexec,nosuid,mode=1777,size=1m", *self.limits,
                "-e", "IOSOPS_ENVS_DIR=/etc/iosops/envs",
                "-v", f"{self.ws}/envs:/etc/iosops/envs:ro", "-v", f"{self.ws}/secrets:/run/secrets:ro",
                "-v", f"{self.ws}/opsdata:/var/lib/iosops", "-v", f"{self.store}:/store", "-v", f"{self.vol}:/pgvol",
                self.image, "python3", "-m", "iosops.backup.stackops", action, "--env", "bench", *args]
        r = subprocess.run(argv, text=True, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"ops {action} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
        return json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])

    def destroy(self) -> None:
        for name in self.containers:
            subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, check=False)
        self.stop()
        shutil.rmtree(self.ws, ignore_errors=True)


def ensure_ops_image(ref: str) -> str:
    """--ops-image, or `inv build`'s image pair built from this checkout (layer cache: seconds)."""
    if ref:
        return ref
    from iosops.images.image import build_image, resolve_tag

    env = load_env("local", environ={})
    tag = "bench-" + resolve_tag(env, QUIET)
    return build_image(env, QUIET, tag=tag).ops_image


def pgbackrest_stored(b: Bench, label: str) -> tuple[int, int, int]:
    """(backup set bytes in the repo, bytes of the archived WAL it needs, database bytes it copied)."""
    info = json.loads(b.pgbackrest("info", "--output=json"))[0]
    bk = next(x for x in info["backup"] if x["label"] == label)
    start, stop = bk["archive"]["start"], bk["archive"]["stop"]
    wal = 0
    for f in (b.ws / "pgbackrest" / "repo" / "archive" / STANZA).rglob("*"):
        if f.is_file() and len(f.name) > 24 and f.name[:24].isalnum() and start <= f.name[:24] <= stop:
            wal += f.stat().st_size
    return bk["info"]["repository"]["delta"], wal, bk["info"]["size"]


def pgbackrest_backup(b: Bench) -> tuple[float, str]:
    before = {x["label"] for x in json.loads(b.pgbackrest("info", "--output=json"))[0]["backup"]}
    os.sync()
    t0 = time.monotonic()
    b.pgbackrest("backup", "--type=full")
    t = time.monotonic() - t0
    labels = [x["label"] for x in json.loads(b.pgbackrest("info", "--output=json"))[0]["backup"]]
    return t, next(lbl for lbl in labels if lbl not in before)


def pgbackrest_restore(b: Bench, label: str) -> float:
    """restore (into an empty data directory) + start + promote, until pg_is_in_recovery() is false."""
    b.stop()
    shutil.rmtree(b.data)  # untimed: pgBackRest restores into an empty directory
    b.data.mkdir(mode=0o700)
    shutil.chown(b.data, "postgres", "postgres")
    os.sync()
    t0 = time.monotonic()
    b.pgbackrest("restore", f"--set={label}", "--type=immediate", "--target-action=promote")
    b.start()
    deadline = time.monotonic() + 600
    while b.sql("SELECT pg_is_in_recovery()") != "f":
        if time.monotonic() > deadline:
            raise RuntimeError("pgBackRest's restore did not promote")
        time.sleep(0.05)
    return time.monotonic() - t0


def ours_restore(b: Bench, backup_id: str) -> tuple[float, dict, dict]:
    """restore-prepare + restore-finish in ops containers, into the stopped cluster's data directory."""
    b.stop()
    b.own(OPS_UID)
    os.sync()
    t0 = time.monotonic()
    prep = b.ops("restore-prepare", "--backup", backup_id, "--only", "postgres", "--no-safety",
                 "--data-dir", "/pgvol/pgdata")
    t_prep = time.monotonic() - t0
    # The recovered cluster answers on the stack image's port (its socket in /run/postgresql), as on a stack.
    fin = b.ops("restore-finish", "--backup", prep["backup"], "--target", prep["target"], "--only", "postgres",
                "--data-dir", "/pgvol/pgdata", "--set", "backup.postgres.port=5432")
    t = time.monotonic() - t0
    if not fin.get("verified"):
        raise RuntimeError(f"our restore did not verify: {fin}")
    phases = {"prepare_container_s": round(t_prep, 2), **{f"prepare.{k}": v for k, v in prep["phases"].items()},
              "finish_container_s": round(t - t_prep, 2), **{f"finish.{k}": v for k, v in fin["phases"].items()}}
    b.own("postgres")
    b.start()
    return t, phases, fin


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    size = arg("--size", "small")
    as_json = "--json" in sys.argv
    if os.geteuid() != 0:
        print("benchmarks/backup.py runs as root (clusters as `postgres`, data directories owned by uid 999)")
        return 2
    image = ensure_ops_image(arg("--ops-image", ""))
    b = Bench(image, "--stack-limits" in sys.argv)
    load = {"start": loadavg()}
    try:
        b.setup()
        b.write_ops_config()
        b.sql(DATASET_SQL.format(rows=SIZES[size]["rows"]))
        b.sql("VACUUM (ANALYZE) drill_orders")  # as production tables are: hint bits set
        b.sql("CHECKPOINT")
        b.wait_archive_drained()
        db_bytes = int(b.sql("SELECT pg_database_size(current_database())"))
        pgenv = {"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
        conn = f"-h 127.0.0.1 -p {b.port} -U ios"
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            dump = Path(tmp) / "dump.sql.gz"
            t_dump = timed_shell(f"{BIN}/pg_dump {conn} -d ios | gzip -6 > {dump}", pgenv)
            dump_bytes = dump.stat().st_size
            t_raw = timed_shell(f"{BIN}/pg_dump {conn} -d ios -Fc -Z0 > /dev/null", pgenv)
            b.wait_archive_drained()
            t_pgbr, label = pgbackrest_backup(b)
            pgbr_set, pgbr_wal, pgbr_db = pgbackrest_stored(b, label)
            b.wait_archive_drained()
            os.sync()
            t0 = time.monotonic()
            backup = b.ops("backup", "--only", "postgres")["backup"]
            t_ours = time.monotonic() - t0
            load["backups"] = loadavg()
            ours_bytes = sum(a["size"] for a in backup["artifacts"])
            b.sql("CREATE DATABASE restore_baseline")
            t_psql = timed_shell(f"gunzip -c {dump} | {BIN}/psql -X -q {conn} -d restore_baseline -v ON_ERROR_STOP=1",
                                 pgenv)
            b.sql("DROP DATABASE restore_baseline")
            # Flush the baseline's dirty pages and WAL backlog now (untimed, in the baselines' favour).
            b.sql("CHECKPOINT")
            b.wait_archive_drained()
        t_pgbr_restore = pgbackrest_restore(b, label)
        t0 = time.monotonic()
        pgbr_fp = b.fingerprint()
        t_pgbr_verify = time.monotonic() - t0
        want = backup["fingerprints"]["postgres"]
        if pgbr_fp != want:
            raise RuntimeError("pgBackRest's restored cluster differs from our backup's fingerprints")
        b.sql("CHECKPOINT")
        b.wait_archive_drained()
        t_restore, phases, _ = ours_restore(b, backup["id"])
        load["restores"] = loadavg()
        if b.fingerprint() != want:
            raise RuntimeError("the restored cluster, started on the host again, differs from the backup")
        pgbr_bytes = pgbr_set + pgbr_wal
        figures = {
            "dataset": size, "database_mb": round(db_bytes / 1e6, 1), "ops_image": image,
            "ops_limits": "compose defaults (1 CPU, 512 MB)" if b.limits else "none (2 cores, like pgBackRest)",
            "pgbackrest_backup_s": round(t_pgbr, 2),
            "pgbackrest_stored_mb": round(pgbr_bytes / 1e6, 1),
            "pgbackrest_set_mb+wal_mb": f"{pgbr_set / 1e6:.1f} + {pgbr_wal / 1e6:.1f}",
            "ours_backup_s": round(t_ours, 2), "ours_stored_mb": round(ours_bytes / 1e6, 1),
            "ours_backup_inside_s": backup["duration_s"],
            "speed_vs_pgbackrest": round(t_pgbr / t_ours, 2),
            "size_vs_pgbackrest": round(ours_bytes / pgbr_bytes, 3),
            "compression_pct": round(100 * (1 - ours_bytes / db_bytes), 1),
            "pgbackrest_compression_pct": round(100 * (1 - pgbr_bytes / db_bytes), 1),
            "pgbackrest_restore_s": round(t_pgbr_restore, 2),
            "pgbackrest_fingerprint_s": round(t_pgbr_verify, 2),
            "ours_restore_s": round(t_restore, 2),
            "restore_vs_pgbackrest": round(t_restore / t_pgbr_restore, 3),
            "restore_vs_pgbackrest+verify": round(t_restore / (t_pgbr_restore + t_pgbr_verify), 3),
            "restore_phases": phases,
            "pg_dump_gzip_s": round(t_dump, 2), "pg_dump_gzip_mb": round(dump_bytes / 1e6, 1),
            "speed_vs_pg_dump_gzip": round(t_dump / t_ours, 2), "size_vs_pg_dump_gzip": round(ours_bytes / dump_bytes, 3),
            "raw_read_s": round(t_raw, 2), "throughput_vs_raw_read": round(t_raw / t_ours, 2),
            "gunzip_psql_s": round(t_psql, 2), "restore_vs_gunzip_psql": round(t_restore / t_psql, 3),
            "loadavg": load,
        }
        targets = {
            f"backup >= 1.3x pgBackRest ({figures['speed_vs_pgbackrest']}x)": figures["speed_vs_pgbackrest"] >= 1.3,
            f"size <= 1.0x pgBackRest ({figures['size_vs_pgbackrest']}x)": figures["size_vs_pgbackrest"] <= 1.0,
            f"compression >= 80% ({figures['compression_pct']}%)": figures["compression_pct"] >= 80,
            f"restore <= 0.8x pgBackRest restore+start+promote ({figures['restore_vs_pgbackrest']}x)":
                figures["restore_vs_pgbackrest"] <= 0.8,
            f"backup >= 2x pg_dump|gzip ({figures['speed_vs_pg_dump_gzip']}x)": figures["speed_vs_pg_dump_gzip"] >= 2,
            f"size <= 1x pg_dump|gzip ({figures['size_vs_pg_dump_gzip']}x)": figures["size_vs_pg_dump_gzip"] <= 1,
            f"throughput >= 0.8x raw pg_dump read ({figures['throughput_vs_raw_read']}x)":
                figures["throughput_vs_raw_read"] >= 0.8,
            f"restore <= 0.33x gunzip|psql ({figures['restore_vs_gunzip_psql']}x)": figures["restore_vs_gunzip_psql"] <= 0.33,
        }
    finally:
        b.destroy()
    if as_json:
        print(json.dumps({"figures": figures, "targets": targets}, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k:30} {v}")
        for k, ok in targets.items():
            print(f"{'met   ' if ok else 'MISSED'}  {k}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
