"""`inv backup`: one recovery point = one manifest, written last."""
from __future__ import annotations

import time

from ..commands import host as hc
from ..config import Env
from ..errors import BadInput, IosopsError, OperationFailed
from ..notify import Event, send
from ..runner import Runner
from . import manifest as mf
from .metrics import write_metrics
from .sources import SOURCES
from .store import open_store

KNOWN = tuple(SOURCES)


def parse_only(only: str, env: Env) -> list[str]:
    if not only:
        return list(env.cfg.backup.components)
    items = [x.strip() for x in only.split(",") if x.strip()]
    unknown = [x for x in items if x not in KNOWN]
    if unknown:
        raise BadInput(f"--only: unknown store(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    if "elasticsearch" in items and not env.cfg.backup.elasticsearch_url:
        raise BadInput(f"--only elasticsearch: backup.elasticsearch_url is empty in env {env.name}; set it")
    return items


def tool_versions(runner: Runner, env: Env) -> dict[str, str]:
    out = {}
    for name, argv in {"pg_basebackup": hc.version(f"{env.cfg.backup.postgres.bin_dir}/pg_basebackup"),
                       "zstd": hc.version("zstd"), "redis-cli": hc.version("redis-cli"),
                       "age": hc.version("age")}.items():
        r = runner.run(argv, mutating=False, check=False)
        out[name] = r.stdout.strip().splitlines()[0] if r.rc == 0 and r.stdout.strip() else "unavailable"
    return out


def check_secrets(env: Env, components: list[str]) -> None:
    """Read the secrets the chosen components need before anything is written: a missing or unusable one
    is bad input (exit 2, nothing changed), not a failed backup that would block retention."""
    from .postgres import pg_env
    from .sources import redis_env

    if "postgres" in components:
        pg_env(env)
    if "redis" in components:
        redis_env(env)


def run_backup(env: Env, runner: Runner, only: str = "", label: str = "") -> mf.Manifest:
    components = parse_only(only, env)
    store = open_store(env)
    check_secrets(env, components)
    started = mf.now()
    t0 = time.monotonic()
    man = mf.Manifest(id=mf.new_id(started) + (f"-{label}" if label else ""), env=env.name,
                      started_at=started.isoformat(), components=components)
    runner.info(f"backup {man.id}: {', '.join(components)} -> {store.url}")
    try:
        man.tool_versions = tool_versions(runner, env)
        for comp in components:
            c0 = time.monotonic()
            arts, fp, info = SOURCES[comp](env, runner, store, man.id)
            man.artifacts += arts
            man.fingerprints[comp] = fp
            if comp == "postgres":
                man.postgres = info
            size = sum(a.size for a in arts)
            runner.info(f"  {comp}: {size / 1e6:.1f} MB stored in {time.monotonic() - c0:.1f}s")
        man.completed_at = mf.now().isoformat()
        man.duration_s = round(time.monotonic() - t0, 2)
        # The commit point: until this object exists the backup is invisible and retention sweeps it.
        runner.call(f"write {store.url}/{mf.manifest_key(man.id)} (last: makes the backup visible)",
                    store.put_bytes, mf.manifest_key(man.id), man.dumps() if not runner.dry_run else b"")
    except IosopsError as exc:
        if not runner.dry_run:
            write_metrics(env, runner, {f'iosops_backup_last_run_success{{component="{c}"}}': 0 for c in components})
            send(env, runner, Event("backup", "failure", env.name, version=man.id, target=store.url,
                                    duration_s=round(time.monotonic() - t0, 1), summary=", ".join(components),
                                    error=str(exc)))
        raise OperationFailed(f"backup {man.id} failed: {exc}; nothing was committed (no manifest), the "
                              f"partial objects are swept by `inv backups.prune`") from None
    if not runner.dry_run:
        now = time.time()
        values: dict[str, float] = {}
        for comp in components:
            values[f'iosops_backup_last_success_timestamp_seconds{{component="{comp}"}}'] = now
            values[f'iosops_backup_last_run_success{{component="{comp}"}}'] = 1
            values[f'iosops_backup_size_bytes{{component="{comp}"}}'] = sum(
                a.size for a in man.artifacts if a.component == comp)
        values["iosops_backup_last_duration_seconds"] = man.duration_s
        write_metrics(env, runner, values)
    # In dry-run this is a plan line (webhook masked); nothing is sent.
    send(env, runner, Event("backup", "success", env.name, version=man.id, target=store.url,
                            duration_s=man.duration_s,
                            summary=f"{man.total_size() / 1e6:.1f} MB: {', '.join(components)}"))
    return man
