"""Pure parts of backups: GFS retention decisions, WAL names, parsers of captured tool output."""
import datetime as dt

import pytest

from iosops.backup import manifest as mf
from iosops.backup.catalog import Entry, plan_prune
from iosops.backup.postgres import parse_basebackup_stderr, wal_file_name
from iosops.commands.redis import bgsave_done, parse_info
from iosops.config import load_env
from iosops.errors import OperationFailed

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def entry(days_ago: float, wal: str = "000000010000000000000010", verified=None, complete=True) -> Entry:
    t = NOW - dt.timedelta(days=days_ago)
    bid = mf.new_id(t)
    man = mf.Manifest(id=bid, env="local", started_at=t.isoformat(), completed_at=t.isoformat(),
                      postgres=mf.PostgresInfo(start_wal=wal)) if complete else None
    return Entry(bid, complete, man, verified)


def env_with(**retention):
    return load_env("local", environ={}, overrides={"backup": {"retention": retention}})


def test_gfs_keeps_recent_daily_weekly_monthly_and_deletes_the_rest():
    items = [entry(d) for d in (0, 1, 2, 3, 10, 20, 40, 45, 70, 100, 200)]
    plan = plan_prune(env_with(keep_days=2, daily=3, weekly=2, monthly=3), items, {}, NOW)
    kept_days = sorted(round((NOW - e.manifest.started).days) for e in items if e.id in plan.keep)
    assert kept_days == [0, 1, 2, 10, 40, 70]
    assert len(plan.delete) == len(items) - len(plan.keep)


def test_newest_and_newest_verified_are_always_kept():
    old_verified = entry(300, verified=True)
    items = [old_verified, entry(200, verified=False), entry(100)]
    plan = plan_prune(env_with(keep_days=1, daily=0, weekly=0, monthly=0), items, {}, NOW)
    assert plan.keep[items[-1].id] == "newest"
    assert plan.keep[old_verified.id] == "newest verified"
    assert plan.delete == [items[1].id]


def test_incomplete_backups_are_debris_and_wal_older_than_every_kept_base_goes():
    items = [entry(50, wal="000000010000000000000005"), entry(1, wal="00000001000000000000000A"),
             entry(0.5, complete=False)]
    wal = {f"0000000100000000000000{n:02X}": {} for n in range(1, 12)}
    wal["00000002.history"] = {}
    plan = plan_prune(env_with(keep_days=30, daily=0, weekly=0, monthly=0), items, wal, NOW)
    assert plan.debris == [items[2].id] and plan.delete == [items[0].id]
    assert plan.wal_delete == [f"0000000100000000000000{n:02X}" for n in range(1, 10)]  # keeps 0A.. and history


def test_default_retention_is_30_days():
    assert load_env("local", environ={}).cfg.backup.retention.keep_days == 30


@pytest.mark.parametrize("tli,lsn,name", [(1, "0/2000028", "000000010000000000000002"),
                                          (2, "1/A0000000", "0000000200000001000000A0"),
                                          (1, "0/FFFFFFF", "00000001000000000000000F")])
def test_wal_file_name(tli, lsn, name):
    assert wal_file_name(tli, lsn) == name


def test_parse_basebackup_stderr_captured():
    text = ("pg_basebackup: initiating base backup, waiting for checkpoint to complete\n"
            "pg_basebackup: checkpoint completed\n"
            "pg_basebackup: write-ahead log start point: 0/6000028 on timeline 1\n"
            "pg_basebackup: write-ahead log end point: 0/6000100\n"
            "pg_basebackup: syncing data to disk ...\npg_basebackup: base backup completed\n")
    info = parse_basebackup_stderr(text)
    assert (info.start_lsn, info.stop_lsn, info.timeline, info.start_wal) == (
        "0/6000028", "0/6000100", 1, "000000010000000000000006")
    with pytest.raises(OperationFailed):
        parse_basebackup_stderr("pg_basebackup: error: connection failed")


INFO_BEFORE = "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_saves:4\r\nrdb_last_bgsave_status:ok\r\n"


def test_bgsave_wait_uses_progress_and_save_count_not_lastsave():
    before = parse_info(INFO_BEFORE)
    assert before["rdb_saves"] == "4"
    running = parse_info(INFO_BEFORE.replace("rdb_bgsave_in_progress:0", "rdb_bgsave_in_progress:1"))
    assert not bgsave_done(before, running)
    assert not bgsave_done(before, before)  # nothing new yet
    assert bgsave_done(before, parse_info(INFO_BEFORE.replace("rdb_saves:4", "rdb_saves:5")))
    with pytest.raises(OperationFailed, match="BGSAVE failed"):
        bgsave_done(before, parse_info(INFO_BEFORE.replace(":ok", ":err")))


def test_manifest_ids_sort_by_time():
    a, b = mf.new_id(NOW), mf.new_id(NOW + dt.timedelta(seconds=1))
    assert a < b and len(a) == len("20261127T120000Z-abcd")


def test_table_fingerprint_sql_methods():
    from iosops.commands.pg import table_fingerprint_sql

    assert "hash_record_extended(t, 0)" in table_fingerprint_sql("public.a")
    assert "hashtextextended(t::text, 0)" in table_fingerprint_sql("public.a", "text")
    with pytest.raises(ValueError):
        table_fingerprint_sql("public.a", "md5")


def test_parse_controldata_keeps_the_identity_fields():
    from iosops.commands.pg import parse_controldata

    text = ("pg_control version number:            1300\nDatabase system identifier:           7442\n"
            "Database cluster state:               shut down\nLatest checkpoint location:           0/9F002948\n"
            "Latest checkpoint's TimeLineID:       2\nLatest checkpoint's REDO location:    0/9F000060\n")
    assert parse_controldata(text) == {"Database system identifier": "7442", "Database cluster state": "shut down",
                                       "Latest checkpoint location": "0/9F002948",
                                       "Latest checkpoint's TimeLineID": "2"}


def test_inherited_recovery_settings_are_stripped_before_new_ones_are_written():
    from iosops.backup.restore import strip_recovery_settings

    text = ("# Do not edit this file manually!\narchive_command = 'x'\n\n# iosops restore\n"
            "restore_command = 'cp a b'\nrecovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n"
            "recovery_target_time = '2026-11-27T21:00:00+00:00'\n")
    assert strip_recovery_settings(text) == "# Do not edit this file manually!\narchive_command = 'x'\n\n"
