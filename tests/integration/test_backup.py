"""Backups, verification, PITR restore and rollback against a REAL PostgreSQL 15 (WAL archived by the
project's archive_command) and a REAL Redis, with the local-directory store."""
import datetime as dt
import json
import time

import pytest

from iosops.backup import manifest as mf
from iosops.backup.catalog import entries, prune, verify
from iosops.backup.restore import restore
from iosops.backup.run import run_backup
from iosops.backup.store import open_store
from iosops.errors import BadInput, OperationFailed
from tests.conftest import run_inv
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab


@pytest.fixture(scope="module")
def lab():
    lab = make_lab("backup")
    yield lab
    destroy_lab(lab)


@pytest.fixture(scope="module")
def first(lab):
    return run_backup(lab.env(), QUIET)


def test_manifest_lists_every_artifact_with_checksums_lsn_and_fingerprints(first, lab):
    store = open_store(lab.env())
    man = mf.load(store, first.id)
    kinds = {(a.component, a.kind) for a in man.artifacts}
    assert kinds == {("postgres", "base-tar"), ("redis", "rdb")}
    for a in man.artifacts:
        assert len(a.sha256) == 64 and a.size > 0 and a.compression == "zstd"
        assert store.exists(a.key)
    assert man.postgres.timeline == 1 and "/" in man.postgres.start_lsn and "/" in man.postgres.stop_lsn
    assert man.fingerprints["postgres"]["tables"]["public.accounts"]["rows"] == 5000
    assert man.fingerprints["redis"]["keys"] == 3
    assert man.tool_versions["pg_basebackup"].startswith("pg_basebackup (PostgreSQL) 15")
    assert man.completed_at >= man.started_at


def test_wal_is_archived_by_the_project(first, lab):
    lab.sql("SELECT pg_switch_wal()")
    store = open_store(lab.env())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(o.key.endswith(".json") for o in store.list("wal/")):
        time.sleep(0.2)
    metas = [json.loads(store.get_bytes(o.key)) for o in store.list("wal/") if o.key.endswith(".json")]
    assert metas and all(len(m["sha256"]) == 64 and m["raw_size"] > 0 for m in metas)
    wal_prom = (lab.ws / "iosops_wal.prom").read_text()
    assert 'iosops_wal_archive_last_success_timestamp_seconds{env="local"}' in wal_prom
    assert 'iosops_wal_archive_failures_total{env="local"} 0.0' in wal_prom


def test_verify_passes_then_a_flipped_byte_fails_naming_the_artifact(lab):
    env = lab.env()
    man = run_backup(env, QUIET)
    assert verify(env, QUIET, man.id)[0]["ok"] is True
    art = next(a for a in man.artifacts if a.component == "postgres")
    path = lab.ws / "store" / art.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(OperationFailed, match=rf"backup {man.id} failed verification: .*{art.key}"):
        verify(env, QUIET, man.id)
    before = lab.sql("SELECT count(*) FROM accounts")
    with pytest.raises(OperationFailed, match=rf"{art.key} is corrupt.*refusing to restore from it — nothing was changed"):
        restore(env, QUIET, backup_id=man.id)
    assert lab.sql("SELECT count(*) FROM accounts") == before  # the live cluster was never stopped
    assert not (lab.ws / "pgdata.restoring").exists(), "the staging copy of the corrupt backup must be discarded"
    # leave no corrupt newest backup behind for the next tests
    for obj in list(open_store(env).list(f"backups/{man.id}/")):
        open_store(env).delete(obj.key)


def test_point_in_time_restore_keeps_earlier_writes_and_drops_later_ones(lab):
    env = lab.env()
    run_backup(env, QUIET)
    lab.sql("INSERT INTO accounts (owner, balance) VALUES ('before-target', 1)")
    time.sleep(1.2)
    target = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.2)
    lab.sql("INSERT INTO accounts (owner, balance) VALUES ('after-target', 2)")
    lab.sql("SELECT pg_switch_wal()")
    result = restore(env, QUIET, to_time=target.isoformat())
    assert result.verified and result.safety_backup.endswith("-safety")
    owners = lab.sql("SELECT string_agg(owner, ',') FROM accounts WHERE owner LIKE '%target'")
    assert owners == "before-target"


def test_failure_midway_rolls_back_to_the_pre_restore_state(lab):
    env = lab.env()
    lab.sql("INSERT INTO accounts (owner, balance) VALUES ('pre-restore-marker', 3)")
    from iosops.backup.postgres import fingerprint

    before = fingerprint(env, QUIET)
    with pytest.raises(OperationFailed, match=r"rolled back: postgres: put the pre-restore data directory back .*it is "
                                              r"unchanged since the restore stopped it \(system \d+, shutdown checkpoint"
                                              r".*redis: Redis dataset put back from safety backup .*-safety; its keyset "
                                              r"equals the pre-restore one"):
        restore(env, QUIET, latest=True, fail_after_extract=True)
    assert fingerprint(env, QUIET) == before


def test_bad_restore_targets_are_bad_input(lab):
    env = lab.env()
    with pytest.raises(BadInput, match="is not a timestamp"):
        restore(env, QUIET, to_time="yesterday-ish")
    with pytest.raises(BadInput, match="is in the future"):
        restore(env, QUIET, to_time="2999-01-01T00:00:00Z")
    with pytest.raises(BadInput, match="before the earliest recoverable point"):
        restore(env, QUIET, to_time="2000-01-01T00:00:00Z")
    with pytest.raises(BadInput, match="unknown backup id 'nope'"):
        restore(env, QUIET, backup_id="nope")
    with pytest.raises(BadInput, match="exactly one of"):
        restore(env, QUIET)


def test_cli_exit_codes_and_one_line_errors(lab):
    cli = lab.cli_env()
    for args, code, text in [
        (["restore", "--to-time", "not-a-time", "--yes"], 2, "is not a timestamp"),
        (["restore", "--backup", "nope", "--yes"], 2, "unknown backup id"),
        (["backup", "--only", "postgres,mongo"], 2, "unknown store(s) mongo"),
        (["backups.verify", "--id", "nope"], 2, "unknown backup id"),
    ]:
        proc = run_inv(*args, "--env", "local", env=cli)
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert proc.returncode == code and len(lines) == 1 and text in lines[0], (args, proc.stderr)


def test_cli_backup_list_and_metrics(lab):
    cli = lab.cli_env()
    proc = run_inv("backup", "--env", "local", "--json", env=cli)
    assert proc.returncode == 0, proc.stderr
    bid = json.loads(proc.stdout)["id"]
    listing = json.loads(run_inv("backups.list", "--env", "local", "--json", env=cli).stdout)
    assert {"id": bid, "complete": True} .items() <= next(r for r in listing if r["id"] == bid).items()
    metrics = (lab.ws / "metrics.prom").read_text()
    assert 'iosops_backup_last_success_timestamp_seconds{component="postgres",env="local"}' in metrics
    assert 'iosops_backup_size_bytes{component="redis",env="local"}' in metrics


def test_gfs_prune_never_deletes_the_newest_and_sweeps_wal_nobody_needs(lab):
    env = lab.env(backup={"retention": {"keep_days": 1, "daily": 1, "weekly": 0, "monthly": 0}})
    store = open_store(env)
    plan = prune(env, QUIET)
    done = [e for e in entries(env, store) if e.complete]
    assert [e.id for e in done] == sorted(plan.keep)  # all are younger than a day: all kept
    newest = done[-1]
    needed = newest.manifest.postgres.start_wal
    remaining = {o.key.split("/")[1][:-5] for o in store.list("wal/") if o.key.endswith(".json")}
    oldest_kept = min(e.manifest.postgres.start_wal[8:] for e in done)
    assert all(n[8:] >= oldest_kept for n in remaining if len(n) == 24)
    assert needed[8:] >= oldest_kept


def test_backup_dry_run_prints_the_pipeline_and_writes_nothing(lab):
    store = open_store(lab.env())
    before = sorted(o.key for o in store.list("backups/"))  # (wal/ grows on its own: archive_timeout)
    proc = run_inv("backup", "--env", "local", "--dry-run", "--json", env=lab.cli_env())
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert any("pg_basebackup" in p and "| zstd -q -3 -T0 -c >" in p for p in plan)
    assert any(p.endswith("BGSAVE") for p in plan)
    # the manifest is the backup's last write; then the task records the run's outcome (backup-last-*.json)
    assert plan[-2].startswith("write file://") and "(last: makes the backup visible)" in plan[-2]
    assert plan[-1].startswith("write ") and plan[-1].split()[1].endswith("/backup-last-local.json")
    assert sorted(o.key for o in store.list("backups/")) == before
    assert "lab-pass" not in proc.stdout + proc.stderr


def test_optional_logical_dump_is_streamed_and_verified_with_pg_restore(lab):
    env = lab.env(backup={"postgres": {"logical_dump": True}})
    man = run_backup(env, QUIET, only="postgres")
    dump = next(a for a in man.artifacts if a.kind == "logical-dump")
    assert dump.size > 0 and len(dump.sha256) == 64
    checks = verify(env, QUIET, man.id)[0]["checks"]
    assert checks[dump.key] == "sha256 ok, pg_restore --list ok"


def test_fingerprint_hashes_columns_and_falls_back_to_text_for_unhashable_types(lab):
    """hash_record_extended has no hash for json: that table is fingerprinted by its text form, and a
    content change shows in both methods; a manifest's method is reused when comparing."""
    from iosops.backup.postgres import fingerprint

    env = lab.env()
    lab.sql("CREATE TABLE IF NOT EXISTS events_json (id int PRIMARY KEY, doc json);"
            "INSERT INTO events_json VALUES (1, '{\"a\": 1}'), (2, '{\"b\": 2}') ON CONFLICT DO NOTHING")
    try:
        fp = fingerprint(env, QUIET)["tables"]
        assert fp["public.events_json"]["hash"] == "text"
        assert fp["public.accounts"]["hash"] == "record"
        assert fp["public.events_json"]["rows"] == 2
        like = {"tables": {"public.accounts": {"rows": 0, "checksum": "0"}}}  # an old manifest: no method
        assert fingerprint(env, QUIET, like)["tables"]["public.accounts"]["hash"] == "text"
        lab.sql("UPDATE events_json SET doc = '{\"a\": 3}' WHERE id = 1")
        assert fingerprint(env, QUIET)["tables"]["public.events_json"]["checksum"] != fp["public.events_json"]["checksum"]
    finally:
        lab.sql("DROP TABLE events_json")


def redis_keys(lab) -> set[str]:
    return set(QUIET.run(["redis-cli", "-p", str(lab.red.port), "--raw", "--scan"]).stdout.split())


def test_only_redis_restore_replaces_the_dataset_through_a_resync_and_leaves_postgres_alone(lab):
    env = lab.env()
    man = run_backup(env, QUIET)
    want = redis_keys(lab)
    QUIET.run(["redis-cli", "-p", str(lab.red.port), "MSET", "after-backup-1", "x", "after-backup-2", "y"])
    QUIET.run(["redis-cli", "-p", str(lab.red.port), "DEL", sorted(want)[0]])
    lab.sql("INSERT INTO accounts (owner, balance) VALUES ('redis-only-marker', 1)")
    res = restore(env, QUIET, backup_id=man.id, only="redis")
    assert redis_keys(lab) == want
    assert res.fingerprints["redis"] == man.fingerprints["redis"] and "postgres" not in res.fingerprints
    assert lab.sql("SELECT count(*) FROM accounts WHERE owner = 'redis-only-marker'") == "1"  # untouched
    role = QUIET.run(["redis-cli", "-p", str(lab.red.port), "ROLE"]).stdout.split()[0]
    assert role == "master"  # primary again after the resync
    assert not list((lab.ws / "state").glob("iosops-redis-restore-*"))  # the loader's files are gone


def test_failure_after_redis_was_restored_puts_redis_back_and_never_touches_postgres(lab):
    env = lab.env()
    man = run_backup(env, QUIET)
    QUIET.run(["redis-cli", "-p", str(lab.red.port), "SET", "written-after-backup", "1"])
    before = redis_keys(lab)
    with pytest.raises(OperationFailed, match=r"injected failure after restoring redis\); rolled back: redis: Redis "
                                              r"dataset put back from safety backup .*keyset equals the pre-restore "
                                              r"one; PostgreSQL was not touched"):
        restore(env, QUIET, backup_id=man.id, fail_after_redis=True)
    assert redis_keys(lab) == before
    assert not (lab.ws / "pgdata.restoring").exists()


def test_redis_restore_refuses_a_remote_redis_and_time_targets_without_postgres(lab):
    with pytest.raises(BadInput, match="restoring Redis needs it on this host"):
        restore(lab.env(backup={"redis": {"host": "10.1.2.3"}}), QUIET, latest=True, only="postgres,redis")
    with pytest.raises(BadInput, match="choose a PostgreSQL recovery point"):
        restore(lab.env(), QUIET, latest=True, only="redis")


def test_maintenance_commands_bracket_the_downtime_on_success_and_after_a_rollback(lab):
    """Real commands: `on` runs after the unpack (the app served meanwhile), `off` always runs."""
    env_log = lab.ws / "maintenance.log"
    marker = "SELECT count(*) FROM pg_stat_activity"  # the cluster is up when `on` runs: still serving
    on = ["sh", "-c", f"echo on >> {env_log}; test -d {lab.ws}/pgdata.restoring && echo staged >> {env_log}"]
    off = ["sh", "-c", f"echo off >> {env_log}"]
    env = lab.env(backup={"maintenance": {"on": on, "off": off}})
    man = run_backup(env, QUIET)
    restore(env, QUIET, backup_id=man.id, only="postgres")
    assert env_log.read_text().split() == ["on", "staged", "off"]
    env_log.unlink()
    with pytest.raises(OperationFailed, match="rolled back"):
        restore(env, QUIET, backup_id=man.id, only="postgres", fail_after_extract=True)
    assert env_log.read_text().split() == ["on", "staged", "off"]
    env_log.unlink()
    failing = lab.env(backup={"maintenance": {"on": ["false"], "off": off}})
    with pytest.raises(OperationFailed, match=r"maintenance on failed .*nothing was changed"):
        restore(failing, QUIET, backup_id=man.id, only="postgres")
    assert env_log.read_text().split() == ["off"]
    assert not (lab.ws / "pgdata.restoring").exists()
    assert lab.sql(marker) != ""


def test_restore_dry_run_prints_every_step_and_changes_nothing(lab):
    env = lab.env()
    man = run_backup(env, QUIET)
    store = open_store(env)
    before_ids = {e.id for e in entries(env, store)}
    keys, rows = redis_keys(lab), lab.sql("SELECT count(*) FROM accounts")
    pid = (lab.ws / "pgdata" / "postmaster.pid").read_text().split()[0]
    proc = run_inv("restore", "--env", "local", "--backup", man.id, "--dry-run", env=lab.cli_env())
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    pgdata = lab.ws / "pgdata"
    for step in ("tar -x -C", "pg_basebackup", "pg_terminate_backend", "pg_ctl stop", f"mv {pgdata} {pgdata}.pre-restore-",
                 f"mv {pgdata}.restoring {pgdata}\n", "REPLICAOF 127.0.0.1", "REPLICAOF NO ONE", "pg_ctl start",
                 "recovered and promoted", f"rm -rf {pgdata}.pre-restore-"):
        assert step in plan, step
    assert (lab.ws / "pgdata" / "postmaster.pid").read_text().split()[0] == pid  # never restarted
    assert redis_keys(lab) == keys and lab.sql("SELECT count(*) FROM accounts") == rows
    assert {e.id for e in entries(env, store)} == before_ids  # no safety backup written
    assert not (lab.ws / "pgdata.restoring").exists()
