"""`inv restore`: pick the recovery point, take a safety backup, stop writes, restore, verify —
and on any failure put the pre-restore state back and say so.

Targets are clusters this tool manages on the host (backup.postgres.data_dir, backup.redis_dir): the
pre-restore data directory is moved aside (instant rollback) and a safety backup of the live data is
written to the store first (the durable record).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..commands import compress as cz
from ..commands import host as hc
from ..config import Env
from ..errors import BadInput, IosopsError, OperationFailed
from ..runner import Runner
from . import manifest as mf
from . import postgres
from .artifacts import CorruptArtifact, download
from .catalog import entries, find
from .pginstance import PgInstance, conf_quote, os_user
from .run import run_backup
from .store import open_store
from .wal import archived_segments, prefetch, restore_command


STACK_SOCKET_DIR = "/run/postgresql"  # unix_socket_directories of docker/offline/postgres


@dataclass
class RestorePlan:
    base: mf.Manifest
    target: str  # immediate | time | latest
    target_time: Optional[dt.datetime] = None


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    target_time: str = ""
    safety_backup: str = ""
    fingerprints: dict = field(default_factory=dict)
    verified: bool = False
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)


def parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--to-time {text!r} is not a timestamp; use ISO 8601, e.g. 2026-11-27T21:30:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def choose(env: Env, store, backup_id: str = "", to_time: str = "", latest: bool = False) -> RestorePlan:
    if sum(map(bool, (backup_id, to_time, latest))) != 1:
        raise BadInput("say what to restore: exactly one of --backup ID, --to-time TIMESTAMP or --latest")
    done = [e.manifest for e in entries(env, store) if e.complete]
    if backup_id:
        return RestorePlan(find(env, store, backup_id), "immediate")
    if not done:
        raise BadInput(f"no complete backups in {store.url}: nothing to restore")
    if latest:
        return RestorePlan(done[-1], "latest")
    t = parse_time(to_time)
    now = mf.now()
    if t > now:
        raise BadInput(f"--to-time {t.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})")
    usable = [m for m in done if m.postgres and m.completed <= t]
    if not usable:
        raise BadInput(f"--to-time {t.isoformat()} is before the earliest recoverable point "
                       f"({done[0].completed_at}); pick a later time")
    return RestorePlan(usable[-1], "time", t)


def refusal(what: str) -> str:
    return f"{what}; refusing to restore from it — nothing was changed. Pick another backup (inv backups.list)"


def pg_instance(env: Env) -> PgInstance:
    s = env.cfg.backup.postgres
    if not s.data_dir:
        raise BadInput(f"env {env.name}: restore needs backup.postgres.data_dir (a cluster this tool manages on "
                       "this host); set it, or restore with your platform's tooling from `inv backups.list`")
    # A deployed stack's cluster (restored inside the ops container) keeps its socket where its image put it.
    socket = None if s.host in ("127.0.0.1", "localhost") else Path(STACK_SOCKET_DIR)
    port = 5432 if socket else s.port
    return PgInstance(env.path(s.data_dir), port, s.bin_dir, os_user(s.os_user), s.user, s.dbname, socket)


def recovery_conf(env: Env, plan: RestorePlan, spool: Path) -> str:
    lines = [f"restore_command = {conf_quote(restore_command(env, spool))}", "recovery_target_action = 'promote'",
             "recovery_target_timeline = 'latest'"]
    if plan.target == "immediate":
        lines.append("recovery_target = 'immediate'")
    elif plan.target == "time":
        lines.append(f"recovery_target_time = '{plan.target_time.isoformat()}'")
    return "\n# iosops restore\n" + "\n".join(lines) + "\n"


def stop_writes(env: Env, runner: Runner, inst: PgInstance) -> None:
    """Graceful first: end every other session (the app is expected in maintenance), then stop."""
    if inst.running(runner):
        inst.sql(runner, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        inst.stop(runner)


def extract_base(env: Env, runner: Runner, store, plan: RestorePlan, inst: PgInstance, dest: Path) -> None:
    """Unpack the base backup into `dest` (a fresh directory beside the live one)."""
    art = next(a for a in plan.base.artifacts if a.component == "postgres" and a.kind == "base-tar")
    for leftover in (dest, spool_dir(inst)):  # of an interrupted restore; never live data (not data_dir)
        if leftover.exists():
            runner.remove(leftover)
    runner.call(f"mkdir -m 700 {dest}", _mkdir_owned, inst, dest)
    # PostgreSQL fsyncs a data directory it did not shut down cleanly before it replays anything; flushing
    # while tar still writes (and once more at the end) keeps that wait out of the downtime window.
    import threading

    done = threading.Event()
    flusher = None
    if not runner.dry_run:
        flusher = threading.Thread(target=_flush_until, args=(dest, done), daemon=True, name="flush")
        flusher.start()
    try:
        download(env, runner, store, art, consumer_argv=cz.tar_extract(str(dest)))
    finally:
        done.set()
        if flusher:
            flusher.join()
    runner.run(hc.sync_fs(str(dest)))


def _flush_until(path: Path, done, every: float = 1.0) -> None:
    import subprocess  # nosec B404 - only `sync -f <dir>` below, fixed argv, no shell

    while not done.wait(every):
        subprocess.run(hc.sync_fs(str(path)), check=False)  # nosec B603 B607: fixed argv, flush only


def spool_dir(inst: PgInstance) -> Path:
    return inst.data_dir.parent / f"{inst.data_dir.name}.walspool"


def prefetch_wal(env: Env, runner: Runner, store, plan: RestorePlan, inst: PgInstance, when: str) -> None:
    """Spool the WAL recovery will ask for that is archived by now and not spooled yet (called once
    before the downtime window and once inside it, for what the stopped cluster archived last)."""
    spool = spool_dir(inst)
    names = [n for n in wal_to_prefetch(plan, archived_segments(store)) if not (spool / n).exists()]
    if names:
        runner.call(f"prefetch {len(names)} WAL file(s) {when} from {store.url} into {spool} (parallel)",
                    _prefetch_owned, env, store, names, spool, inst)


def recover(env: Env, runner: Runner, store, plan: RestorePlan, inst: PgInstance) -> None:
    """Prefetch the last WAL, configure recovery, start, and wait until the cluster has promoted."""
    spool = spool_dir(inst)
    prefetch_wal(env, runner, store, plan, inst, "archived since the first prefetch")
    conf = recovery_conf(env, plan, spool)
    runner.call(f"append recovery settings to {inst.data_dir}/postgresql.auto.conf and create recovery.signal",
                _write_recovery, inst, conf)
    inst.start(runner)
    inst.wait_promoted(runner)


def wal_to_prefetch(plan: RestorePlan, archived: dict[str, dict]) -> list[str]:
    """Segments recovery will ask for: from the base backup's first segment on (any later timeline);
    for an exact recovery point only up to the backup's end; history files always."""
    pgi = plan.base.postgres
    if not pgi or not pgi.start_wal:
        return []
    start_seg = pgi.start_wal[8:]
    end_seg = None
    if plan.target == "immediate" and pgi.stop_lsn:
        from .postgres import wal_file_name

        end_seg = wal_file_name(pgi.timeline, pgi.stop_lsn)[8:]
    out = []
    for name in sorted(archived):
        if name.endswith(".history"):
            out.append(name)
        elif len(name) == 24 and int(name[:8], 16) >= pgi.timeline and name[8:] >= start_seg and (
                end_seg is None or name[8:] <= end_seg):
            out.append(name)
    return out


def _prefetch_owned(env: Env, store, names: list[str], spool: Path, inst: PgInstance) -> int:
    n = prefetch(env, store, names, spool)
    inst._chown(spool)
    for f in spool.iterdir():
        inst._chown(f)
    return n


def _mkdir_owned(inst: PgInstance, path: Path) -> None:
    path.mkdir(mode=0o700)
    inst._chown(path)


RECOVERY_KEYS = ("restore_command", "recovery_target", "recovery_end_command")


def strip_recovery_settings(text: str) -> str:
    """Drop recovery settings a base backup inherited from its cluster's own earlier restore (PostgreSQL
    refuses to start with two recovery targets) and the comment line this tool wrote with them."""
    keep = [line for line in text.splitlines(keepends=True)
            if not line.strip().startswith(RECOVERY_KEYS) and line.strip() != "# iosops restore"]
    return "".join(keep)


def _write_recovery(inst: PgInstance, conf: str) -> None:
    auto = inst.data_dir / "postgresql.auto.conf"
    old = auto.read_text() if auto.exists() else ""
    auto.write_text(strip_recovery_settings(old).rstrip("\n") + "\n" + conf)
    (inst.data_dir / "recovery.signal").touch()
    for p in ("postgresql.auto.conf", "recovery.signal"):
        inst._chown(inst.data_dir / p)


def components(plan: RestorePlan, only: str) -> list[str]:
    comps = [c for c in (only.split(",") if only else plan.base.components) if c]
    bad = [c for c in comps if c not in ("postgres", "redis", "elasticsearch")]
    if bad:
        raise BadInput(f"--only: unknown store(s) {', '.join(bad)}; known: postgres, redis, elasticsearch")
    missing = [c for c in comps if c not in plan.base.components]
    if missing:
        raise BadInput(f"backup {plan.base.id} holds no {', '.join(missing)} (it has {', '.join(plan.base.components)}); "
                       "pick another backup or change --only")
    if plan.target != "immediate" and "postgres" not in comps:
        raise BadInput("--to-time/--latest choose a PostgreSQL recovery point; for redis/elasticsearch alone name the "
                       "backup with --backup ID")
    return comps


@dataclass
class Prepared:
    """What the first half of a restore leaves behind for the second: the resolved plan, the components,
    the unpacked copy beside the live data directory, and the safety backup of the live data."""
    plan: RestorePlan
    comps: list[str]
    inst: Optional[PgInstance]
    staging: Optional[Path]
    safety: Optional[mf.Manifest]
    result: RestoreResult
    redis_dir: Optional[Path] = None  # a stopped-server restore: the RDB staged there by prepare

    def discard(self, runner: Runner) -> None:
        if self.inst:
            runner.remove(self.staging, best_effort=True)
            runner.remove(spool_dir(self.inst), best_effort=True)
        if self.redis_dir:
            from .restore_redis import discard_staged

            discard_staged(runner, self.redis_dir)


def restore(env: Env, runner: Runner, *, backup_id: str = "", to_time: str = "", latest: bool = False,
            only: str = "", safety: bool = True, fail_after_extract: bool = False,
            fail_after_redis: bool = False) -> RestoreResult:
    """Restore the chosen components. Redis (and Elasticsearch) are put back while PostgreSQL's copy is
    unpacked beside the live cluster; PostgreSQL's swap comes last, so a failure anywhere rolls back
    every component already restored, from the safety backup taken first."""
    t0 = time.monotonic()
    store = open_store(env)
    prep = prepare(env, runner, store, choose(env, store, backup_id, to_time, latest), only, safety)
    m = env.cfg.backup.maintenance
    if m.on:
        try:
            runner.run(m.on)
        except IosopsError as exc:
            prep.discard(runner)
            if m.off:
                runner.run(m.off, check=False)
            raise OperationFailed(f"maintenance on failed ({exc}); nothing was restored, nothing was changed") from None
    try:
        finish(env, runner, store, prep, fail_after_extract, fail_after_redis)
    finally:
        if m.off:
            off = runner.run(m.off, check=False)
            if off.rc:
                runner.info(f"warning: maintenance off failed (exit {off.rc}): run {' '.join(m.off)} by hand")
    prep.result.seconds = round(time.monotonic() - t0, 2)
    return prep.result


def prepare(env: Env, runner: Runner, store, plan: RestorePlan, only: str = "", safety: bool = True) -> Prepared:
    """The half that changes nothing live: check the targets, unpack PostgreSQL's base backup beside the
    live cluster (its sha256 checked as it streams), prefetch WAL, and, in parallel, take a safety backup
    of what is about to be replaced. On failure everything it made is removed."""
    from .restore_es import check_es_target
    from .restore_redis import check_target as check_redis_target
    from .restore_redis import rdb_artifact

    comps = components(plan, only)
    inst = pg_instance(env) if "postgres" in comps else None
    if "redis" in comps:
        check_redis_target(env)
        rdb_artifact(plan.base)
    if "elasticsearch" in comps:
        check_es_target(env, plan.base)
    result = RestoreResult(plan.base.id, plan.target, plan.target_time.isoformat() if plan.target_time else "")
    runner.info(f"restore {plan.base.id} ({plan.target}{' ' + result.target_time if result.target_time else ''}): "
                f"{', '.join(comps)}" + (f" into {inst.data_dir}" if inst else ""))
    from concurrent.futures import ThreadPoolExecutor

    live_pg = inst.running(runner) if inst else False
    staging = inst.data_dir.with_name(f"{inst.data_dir.name}.restoring") if inst else None
    redis_dir = Path(env.cfg.backup.redis.restore_dir) if "redis" in comps and env.cfg.backup.redis.restore_dir else None
    prep = Prepared(plan, comps, inst, staging, None, result, redis_dir)

    def before() -> Optional[mf.Manifest]:
        take = [c for c in comps if c != "postgres" or live_pg or _serving_elsewhere(env, runner, inst)]
        return run_backup(env, runner, only=",".join(take), label="safety") if safety and take else None

    def stage_redis() -> None:
        if redis_dir:  # the RDB proven beside the live one, so the downtime only renames it
            from .restore_redis import stage_into_dir

            stage_into_dir(env, runner, store, plan.base)

    p0 = time.monotonic()
    with ThreadPoolExecutor(2, thread_name_prefix="pre-restore") as pool:
        pre = pool.submit(before)
        staged = pool.submit(stage_redis)
        try:
            if inst:
                extract_base(env, runner, store, plan, inst, staging)
                prefetch_wal(env, runner, store, plan, inst, "archived so far")
            staged.result()
        except IosopsError as exc:
            _settle(pre)
            _settle(staged)
            prep.discard(runner)
            if isinstance(exc, CorruptArtifact):
                raise OperationFailed(refusal(str(exc))) from None
            raise OperationFailed(f"restore failed before anything live was touched ({exc}); nothing was "
                                  "changed") from None
        try:
            prep.safety = pre.result()
        except IosopsError as exc:
            prep.discard(runner)
            raise OperationFailed(f"safety backup failed ({exc}); nothing was changed") from None
    result.safety_backup = prep.safety.id if prep.safety else ""
    result.phases["prepare_s"] = round(time.monotonic() - p0, 2)
    return prep


def _serving_elsewhere(env: Env, runner: Runner, inst: Optional[PgInstance]) -> bool:
    """A deployed stack's PostgreSQL runs in its own container: this process sees its data directory (a
    mounted volume) but not its postmaster, so "live" is asked over the network."""
    if inst is None or env.cfg.backup.postgres.host in ("127.0.0.1", "localhost") or not inst.data_dir.exists():
        return False
    try:
        postgres.server_version(env, runner)
        return True
    except IosopsError:
        return False


def finish(env: Env, runner: Runner, store, prep: Prepared, fail_after_extract: bool = False,
           fail_after_redis: bool = False) -> RestoreResult:
    """The half that replaces live data (the downtime window), after `prepare`."""
    _replace(env, runner, store, prep.plan, prep.comps, prep.inst, prep.staging, prep.safety, prep.result,
             lambda: prep.discard(runner), fail_after_extract, fail_after_redis)
    prep.result.verified = not runner.dry_run
    return prep.result


def _replace(env: Env, runner: Runner, store, plan: RestorePlan, comps: list[str], inst: Optional[PgInstance],
             staging: Optional[Path], safety_man: Optional[mf.Manifest], result: RestoreResult, discard,
             fail_after_extract: bool, fail_after_redis: bool) -> None:
    """The part that replaces live data: Redis, Elasticsearch, then PostgreSQL's swap."""
    from .restore_es import restore_elasticsearch, rollback_elasticsearch
    from .restore_redis import restore_redis, rollback_dir, rollback_redis, swap_into_dir

    undo: list[tuple[str, Callable[[], str]]] = []  # components restored so far, newest last

    def undo_all() -> str:
        return "; ".join(f"{name}: {fn()}" for name, fn in reversed(undo)) or "nothing else had changed"

    # 2. Redis and Elasticsearch: each restores, verifies, and on its own failure puts itself back.
    try:
        if "redis" in comps:
            p0 = time.monotonic()
            into_dir = bool(env.cfg.backup.redis.restore_dir)
            try:
                result.fingerprints["redis"] = (swap_into_dir(env, runner, store, plan.base) if into_dir else
                                                restore_redis(env, runner, store, plan.base, safety_man))
            except CorruptArtifact as exc:
                raise OperationFailed(refusal(str(exc))) from None
            undo.append(("redis", (lambda: rollback_dir(env, runner)) if into_dir else
                         (lambda: rollback_redis(env, runner, store, safety_man))))
            result.phases["redis_s"] = round(time.monotonic() - p0, 2)
        if "elasticsearch" in comps:
            p0 = time.monotonic()
            result.fingerprints["elasticsearch"] = restore_elasticsearch(env, runner, plan.base, safety_man)
            undo.append(("elasticsearch", lambda: rollback_elasticsearch(env, runner, safety_man)))
            result.phases["elasticsearch_s"] = round(time.monotonic() - p0, 2)
        if fail_after_redis:  # test hook: a failure after Redis was replaced, before PostgreSQL's swap
            raise OperationFailed("injected failure after restoring redis")
    except IosopsError as exc:
        discard()
        if runner.dry_run:
            raise
        raise OperationFailed(f"restore failed ({exc}); rolled back: {undo_all()}; PostgreSQL was not touched") \
            from None
    if inst:
        restore_postgres(env, runner, store, plan, inst, staging, result, undo_all, fail_after_extract)


def restore_postgres(env: Env, runner: Runner, store, plan: RestorePlan, inst: PgInstance, staging: Path,
                     result: RestoreResult, undo_others: Callable[[], str], fail_after_extract: bool) -> None:
    """The downtime window: stop writes, swap directories, recover, verify. The stopped cluster's control
    file (system id, clean shutdown checkpoint) identifies the exact pre-restore state on disk."""
    p0 = time.monotonic()
    stop_writes(env, runner, inst)
    aside = inst.data_dir.with_name(f"{inst.data_dir.name}.pre-restore-{int(time.time())}")
    had_data = inst.data_dir.exists()
    pre_ctl = inst.control(runner) if had_data and not runner.dry_run else None
    if had_data:  # kept for an instant rollback
        runner.rename(inst.data_dir, aside)
    runner.rename(staging, inst.data_dir)
    try:
        if fail_after_extract:  # test hook: a failure midway, after the live data left its place
            raise OperationFailed("injected failure after swapping in the restored data")
        recover(env, runner, store, plan, inst)
        result.phases["downtime_s"] = round(time.monotonic() - p0, 2)
        p0 = time.monotonic()
        if not runner.dry_run:
            want = plan.base.fingerprints.get("postgres", {})
            got = result.fingerprints["postgres"] = postgres.fingerprint(env, runner, like=want)
            if plan.target == "immediate":
                if got != want:
                    raise OperationFailed("restored PostgreSQL fingerprints differ from the backup's manifest")
            else:
                missing = set(want.get("tables", {})) - set(got["tables"])
                if missing:
                    raise OperationFailed(f"restored PostgreSQL lacks tables present in the backup: {sorted(missing)}")
            result.phases["verify_s"] = round(time.monotonic() - p0, 2)
    except (IosopsError, OSError) as exc:
        if runner.dry_run:
            raise
        rolled = rollback(env, runner, inst, aside if had_data else None, pre_ctl)
        raise OperationFailed(f"restore failed ({exc}); rolled back: postgres: {rolled}; {undo_others()}") from None
    finally:
        runner.remove(spool_dir(inst), best_effort=True)
    if had_data:
        p0 = time.monotonic()
        runner.remove(aside, best_effort=True)
        if not runner.dry_run:
            result.phases["cleanup_s"] = round(time.monotonic() - p0, 2)


def _settle(future) -> None:
    try:
        future.result()
    except IosopsError:
        pass  # the restore is abandoned anyway; its own error is the one to report


def rollback(env: Env, runner: Runner, inst: PgInstance, aside: Optional[Path], pre_ctl: Optional[dict]) -> str:
    """Put the pre-restore data directory back and start it; prove it is the pre-restore state by its
    control file (same system id and shutdown checkpoint as when the restore stopped it)."""
    inst.stop(runner, check=False)
    runner.remove(inst.data_dir)
    if aside is None:
        return "there was no previous data directory; the failed restore's files were removed"
    same = pre_ctl is not None and inst.control(runner, aside) == pre_ctl
    runner.rename(aside, inst.data_dir)
    inst.start(runner)
    if pre_ctl is None:
        return f"put the pre-restore data directory back in {inst.data_dir} and started it"
    if not same:
        return (f"put the pre-restore data directory back in {inst.data_dir} and started it, BUT its control file "
                "differs from when the restore stopped it: investigate")
    return (f"put the pre-restore data directory back in {inst.data_dir} and started it; it is unchanged since the "
            f"restore stopped it (system {pre_ctl.get('Database system identifier', '?')}, shutdown checkpoint "
            f"{pre_ctl.get('Latest checkpoint location', '?')})")
