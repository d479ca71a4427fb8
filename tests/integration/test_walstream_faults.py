"""Faults of the WAL stream of a deployed compose stack, for real (#11's fault figures):

- the walstream container SIGKILLed (`docker kill`) 10 times while the API takes writes and segments
  complete -> no WAL gap in the store, and `inv restore --latest` brings back every acknowledged write;
- the store failing (its WAL directory unwritable) for 60 s -> uploads fail and are counted, the slot
  holds the primary's WAL meanwhile, the stream catches up by itself, nothing is lost;
- the primary's disk: with the streamer down, the slot keeps at most max_slot_wal_keep_size of WAL;
  past it PostgreSQL invalidates the slot (disk bounded), and the streamer starts a new one and counts the gap.

Its own stack (project name, ports, state dir, store; label iosops.test=1), removed with its volumes.
Writes go through nginx on 127.0.0.1 only, bounded in count and time."""
import json
import os
import time

import pytest

from iosops.backup.drill import ApiWriter
from iosops.backup.wal import SEGMENT_RE
from iosops.commands import compose as cc
from iosops.runner import Runner
from tests.conftest import run_inv
from tests.integration.conftest import deployed_stack, docker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
QUIET = Runner(say=lambda line: None)


@pytest.fixture(scope="module")
def stack(api_image, offline_images, tmp_path_factory):
    with deployed_stack(api_image, tmp_path_factory, "wf",
                        # small, so that the disk-bound test can exceed it quickly
                        IOSOPS_BACKUP__WALSTREAM__MAX_SLOT_WAL_KEEP_SIZE="64MB") as st:
        yield st


def sql(stack, q: str) -> str:
    e = stack["env"].cfg.stack
    return QUIET.run(cc.exec_(stack["t"].base(), "postgres", ["psql", "-X", "-q", "-A", "-t", "-h", "/run/postgresql",
                                                              "-U", e.postgres_user, "-d", e.postgres_db, "-c", q]),
                     mutating=False).stdout.strip()


def walstream_id(stack) -> str:
    return (stack["t"].containers("walstream") or [""])[0]


def metrics(stack) -> str:
    code = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9898/metrics').read().decode())"
    return docker("exec", walstream_id(stack), "python3", "-c", code).stdout


def wait_for(what: str, fn, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def current_segment(stack) -> str:
    return sql(stack, "SELECT pg_walfile_name(pg_current_wal_lsn())")


def archived(stack) -> set[str]:
    return {p.name[:-5] for p in (stack["store"] / "wal").glob("*.json") if SEGMENT_RE.match(p.name[:-5])}


def assert_contiguous(names: set[str], first: str, last: str) -> None:
    """Every segment from `first` to `last` (one timeline) is in the store: no gap."""
    tl, a, b = first[:8], int(first[8:], 16), int(last[8:], 16)
    missing = [f"{tl}{n:016X}" for n in range(a, b + 1) if f"{tl}{n:016X}" not in names]
    assert not missing, f"WAL gap: {missing[:5]}"


def restore_latest_and_check(stack, writer: ApiWriter) -> None:
    proc = run_inv("restore", "--env", "local", "--latest", "--yes", "--json", env=stack["vars"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = {int(x) for x in sql(stack, "SELECT substr(name, 13) FROM items WHERE name LIKE 'drill-write-%'").split()}
    lost = [seq for seq, _ in writer.acked if seq not in got]
    assert writer.acked and not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"


def test_ten_sigkills_of_the_streamer_during_writes_lose_nothing(stack):
    backup = run_inv("backup", "--env", "local", "--json", env=stack["vars"])
    assert backup.returncode == 0, backup.stderr[-3000:]
    start = json.loads(backup.stdout)["postgres"]["start_wal"]
    writer = ApiWriter(stack["https"], max_seconds=300)
    writer.start()
    try:
        for _ in range(10):
            time.sleep(1.0)
            sql(stack, "SELECT pg_switch_wal()")  # a segment completes while the streamer may be down
            docker("kill", walstream_id(stack))
            time.sleep(0.5)
            QUIET.run(cc.up(stack["t"].base(), ["walstream"]))
    finally:
        time.sleep(1.0)
        writer.stop_flag.set()
        writer.join(30)
    last = current_segment(stack)
    sql(stack, "SELECT pg_switch_wal()")
    wait_for(f"segment {last} in the store", lambda: last in archived(stack))
    assert_contiguous(archived(stack), start, last)
    assert len(writer.acked) > 50
    restore_latest_and_check(stack, writer)


def test_a_store_outage_of_60s_is_caught_up_without_loss(stack):
    wal_dir = stack["store"] / "wal"
    first = current_segment(stack)
    writer = ApiWriter(stack["https"], max_seconds=300, pause=0.1)
    writer.start()
    try:
        os.chmod(wal_dir, 0o500)  # the store answers every write with an error (the streamer runs as uid 999)
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            time.sleep(10)
            sql(stack, "SELECT pg_switch_wal()")
        text = metrics(stack)
        failures = [l for l in text.splitlines() if l.startswith("iosops_wal_archive_failures_total")]
        assert failures and float(failures[0].split()[-1]) > 0, text
        # Meanwhile the primary kept what the streamer had not confirmed; nothing was dropped.
        assert sql(stack, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'iosops'") in ("reserved", "extended")
    finally:
        os.chmod(wal_dir, 0o755)
    last = current_segment(stack)
    sql(stack, "SELECT pg_switch_wal()")
    wait_for(f"the stream to catch up to {last}", lambda: last in archived(stack), timeout=120)
    writer.stop_flag.set()
    writer.join(30)
    assert_contiguous(archived(stack), first, last)
    restore_latest_and_check(stack, writer)


def test_a_dead_streamer_cannot_fill_the_primarys_disk(stack):
    QUIET.run(cc.stop(stack["t"].base(), ["walstream"]))
    try:
        sql(stack, "CREATE TABLE IF NOT EXISTS filler (x text)")
        for _ in range(8):  # 8 x 16 MiB segments > the slot's 64MB limit
            sql(stack, "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
            sql(stack, "SELECT pg_switch_wal()")
        sql(stack, "CHECKPOINT")
        assert sql(stack, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'iosops'") in ("lost", "unreserved")
    finally:
        QUIET.run(cc.up(stack["t"].base(), ["walstream"]))
    # The streamer notices the invalidated slot, starts a new one, counts the gap, and streams again.
    wait_for("a new active slot", lambda: 'iosops_walstream_slot_active{env="local",slot="iosops"} 1' in metrics(stack))
    assert 'iosops_walstream_gaps_total{env="local"} 1' in metrics(stack)
    assert sql(stack, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'iosops'") == "reserved"
