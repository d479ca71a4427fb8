"""Restore Redis from a backup's RDB without touching how the live server is run.

A throwaway redis-server on a free loopback port loads the RDB (checked by sha256 as it streams and by
redis-check-rdb), and the live server is made its replica: Redis's own full resync replaces the dataset
while the live server refuses writes (READONLY), then `REPLICAOF NO ONE` makes it a primary again. The
same path puts the safety backup back when anything fails. This needs the live Redis to reach the
throwaway one on 127.0.0.1, i.e. to run on this host (backup.redis.host is 127.0.0.1 or localhost).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from .. import wait
from ..commands import redis as rc
from ..config import Env
from ..errors import BadInput, IosopsError, OperationFailed
from ..ports import free_port
from ..runner import Runner
from . import manifest as mf
from .artifacts import download
from .redisinstance import RedisInstance
from .sources import redis_env, redis_fingerprint, redis_info

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def rdb_artifact(man: mf.Manifest) -> mf.Artifact:
    art = next((a for a in man.artifacts if a.component == "redis" and a.kind == "rdb"), None)
    if art is None:
        raise BadInput(f"backup {man.id} has no Redis artifact; pick one that does (inv backups.list) or drop redis "
                       "from --only")
    return art


def check_target(env: Env) -> None:
    if env.cfg.backup.redis.restore_dir:
        return  # written into the stopped server's directory (restore_into_dir)
    if env.cfg.backup.redis.host not in LOCAL_HOSTS:
        raise BadInput(f"env {env.name}: restoring Redis needs it on this host (backup.redis.host is "
                       f"{env.cfg.backup.redis.host}); run the restore on that host, or load the RDB from "
                       "`inv backups.list` with your platform's tooling")


def replicate_from(env: Env, runner: Runner, loader_port: int, timeout: float = 600) -> None:
    """Live server: full resync from the loader, then primary again."""
    r = env.cfg.backup.redis
    auth = redis_env(env)
    runner.run(rc.raw(r.host, r.port, "REPLICAOF", "127.0.0.1", str(loader_port), user=r.user), env=auth)

    def resynced() -> tuple[bool, str]:
        out = runner.run(rc.raw(r.host, r.port, "INFO", "replication", user=r.user), mutating=False, env=auth, check=False)
        info = rc.parse_info(out.stdout)
        done = info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0" \
            and redis_info(env, runner).get("loading") == "0"
        return done, f"master_link_status={info.get('master_link_status', '?')}"

    def synced() -> None:
        wait.until(f"redis on {r.host}:{r.port} to finish its resync from the loader", resynced, timeout=timeout)

    try:
        runner.call(f"wait until redis {r.host}:{r.port} has resynced from the loader (it refuses writes meanwhile)",
                    synced)
    finally:
        runner.run(rc.raw(r.host, r.port, "REPLICAOF", "NO", "ONE", user=r.user), env=auth)


def load_rdb(env: Env, runner: Runner, store, art: mf.Artifact, fail_before_swap: bool = False) -> None:
    """Stream the RDB out of the store (sha256-checked), check it, and make the live server load it."""
    work = Path("<tmp>")
    if not runner.dry_run:
        env.state_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="iosops-redis-restore-", dir=env.state_dir))
    loader = RedisInstance(work, free_port())  # the throwaway server that serves the RDB to the live one
    try:
        download(env, runner, store, art, stdout_path=loader.rdb)
        runner.run(rc.check_rdb(str(loader.rdb)))  # reads only, but the file exists only for real
        if fail_before_swap:  # test hook
            raise OperationFailed("injected failure before the Redis dataset was replaced")
        try:
            # one replica only: stream to it at once (Redis 7 waits 5 s for more by default)
            loader.start(runner, extra=["--repl-diskless-sync-delay", "0"], timeout=300)
            replicate_from(env, runner, loader.port)
        finally:
            loader.stop(runner)
    finally:
        runner.remove(work, best_effort=True)


def restore_redis(env: Env, runner: Runner, store, man: mf.Manifest, safety: Optional[mf.Manifest],
                  fail_after_swap: bool = False) -> dict:
    """Load the backup's RDB into the live Redis and verify its keyset; on failure put the safety
    backup's RDB back. Returns the restored fingerprint."""
    art = rdb_artifact(man)
    want = man.fingerprints.get("redis", {})
    load_rdb(env, runner, store, art)  # a failure here leaves the live dataset as it was
    if runner.dry_run:
        return {}
    try:
        if fail_after_swap:  # test hook: a failure after the live dataset was replaced
            raise OperationFailed("injected failure after replacing the Redis dataset")
        got = redis_fingerprint(env, runner)
        if got != want:
            raise OperationFailed(f"restored Redis keyset differs from the backup's manifest ({got.get('keys')} keys, "
                                  f"manifest {want.get('keys')})")
        return got
    except IosopsError as exc:
        raise OperationFailed(f"redis restore failed ({exc}); rolled back: {rollback_redis(env, runner, store, safety)}") \
            from None


def rollback_redis(env: Env, runner: Runner, store, safety: Optional[mf.Manifest]) -> str:
    if safety is None:
        return "NOTHING for Redis: no safety backup was taken (there was no live data to save); its dataset is the backup's or partial"
    try:
        load_rdb(env, runner, store, rdb_artifact(safety))
    except IosopsError as exc:
        return f"FAILED to put Redis back from safety backup {safety.id} ({exc}): restore it by hand from that backup"
    now = redis_fingerprint(env, runner)
    same = now == safety.fingerprints.get("redis")
    return (f"Redis dataset put back from safety backup {safety.id}"
            + ("; its keyset equals the pre-restore one" if same else ", BUT its keyset differs from the pre-restore one"))


def stage_into_dir(env: Env, runner: Runner, store, man: mf.Manifest) -> dict:
    """While the stack's Redis still serves (a restore's prepare): stream the backup's RDB out of the store
    (sha256-checked) into backup.redis.restore_dir as dump.rdb.restoring, check it with redis-check-rdb,
    load it in a throwaway redis-server whose keyset must equal the manifest's, and record that keyset
    beside it. Nothing the live server uses is touched; `swap_into_dir` puts it in place later."""
    import json

    d = Path(env.cfg.backup.redis.restore_dir)
    work = d / "restore.tmp"
    runner.remove(work, best_effort=True)
    runner.mkdir(work)
    loader = RedisInstance(work, free_port())
    try:
        download(env, runner, store, rdb_artifact(man), stdout_path=loader.rdb)
        runner.run(rc.check_rdb(str(loader.rdb)))
        loader.start(runner, timeout=300)
        try:
            got = {} if runner.dry_run else redis_fingerprint(env, runner, at=("127.0.0.1", loader.port))
        finally:
            loader.stop(runner)
        want = man.fingerprints.get("redis", {})
        if not runner.dry_run and got != want:
            raise OperationFailed(f"the backup's RDB loads {got.get('keys')} keys with another keyset than its "
                                  f"manifest ({want.get('keys')} keys); Redis was not touched")
        staged = d / "dump.rdb.restoring"
        runner.call(f"stage the checked RDB as {staged}", loader.rdb.replace, staged)
        runner.write_file(d / "dump.rdb.restoring.json", json.dumps({"backup": man.id, "fingerprint": got}))
        return got
    finally:
        runner.remove(work, best_effort=True)


def swap_into_dir(env: Env, runner: Runner, store, man: mf.Manifest) -> dict:
    """The stopped server's directory: the RDB staged (and proven) by `stage_into_dir` for this backup
    replaces dump.rdb, which stays aside as dump.rdb.pre-restore for `rollback_dir`. Without a staged copy
    for this backup it is staged now (inside the downtime)."""
    import json

    d = Path(env.cfg.backup.redis.restore_dir)
    staged, record = d / "dump.rdb.restoring", d / "dump.rdb.restoring.json"
    meta = json.loads(record.read_text()) if record.exists() else {}
    if not runner.dry_run and (meta.get("backup") != man.id or not staged.exists()):
        stage_into_dir(env, runner, store, man)
        meta = json.loads(record.read_text())
    live, aside = d / "dump.rdb", d / "dump.rdb.pre-restore"
    if live.exists() or runner.dry_run:
        runner.rename(live, aside)  # kept for rollback_dir
    runner.rename(staged, live)
    runner.remove(record)
    return meta.get("fingerprint", {})


def discard_staged(runner: Runner, d: Path) -> None:
    for name in ("dump.rdb.restoring", "dump.rdb.restoring.json"):
        runner.remove(d / name, best_effort=True)


def rollback_dir(env: Env, runner: Runner) -> str:
    d = Path(env.cfg.backup.redis.restore_dir)
    live, aside = d / "dump.rdb", d / "dump.rdb.pre-restore"
    if aside.exists():
        runner.rename(aside, live)
        return f"put the pre-restore {live} back"
    runner.remove(live)
    return f"there was no previous {live}; removed the restored one"
