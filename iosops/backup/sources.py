"""Per-component backup steps: each takes (env, runner, store, backup_id) and returns
(artifacts, fingerprint, extra info). PostgreSQL: physical base backup; Redis: BGSAVE + RDB;
Elasticsearch: a snapshot through the real REST API."""
from __future__ import annotations

import hashlib
from typing import Any

from .. import wait
from ..commands import host as hc
from ..commands import pg
from ..commands import redis as rc
from ..config import Env
from ..errors import OperationFailed
from ..runner import Runner
from . import postgres
from .artifacts import upload
from .manifest import Artifact, artifact_key


def backup_postgres(env: Env, runner: Runner, store, backup_id: str) -> tuple[list[Artifact], dict, Any]:
    from concurrent.futures import ThreadPoolExecutor

    s = env.cfg.backup.postgres
    version = postgres.server_version(env, runner)
    # The fingerprint scan runs beside the base backup's stream (both only read), so the backup
    # takes about as long as the slower of the two, not their sum.
    with ThreadPoolExecutor(1, thread_name_prefix="fingerprint") as pool:
        fp_future = pool.submit(postgres.fingerprint, env, runner)
        art, stderr = upload(env, runner, store, pg.basebackup_to_stdout(s.bin_dir, s.host, s.port, s.user),
                             artifact_key(backup_id, "postgres.base.tar.zst" + (".age" if env.cfg.backup.encryption_recipient else "")),
                             component="postgres", kind="base-tar", source_env=postgres.pg_env(env))
        fp = fp_future.result()
    arts = [art]
    if s.logical_dump:
        # -Fc streams to stdout (-Fd -j would need a full-size temporary directory); -Z0: zstd compresses.
        dump, _ = upload(env, runner, store, pg.dump_custom(s.bin_dir, s.host, s.port, s.user, s.dbname, 0),
                         artifact_key(backup_id, "postgres.dump.zst" + (".age" if env.cfg.backup.encryption_recipient else "")),
                         component="postgres", kind="logical-dump", source_env=postgres.pg_env(env))
        arts.append(dump)
    info = None
    if not runner.dry_run:
        info = postgres.parse_basebackup_stderr(stderr)
        info.server_version = version
    return arts, fp, info


def redis_env(env: Env) -> dict:
    ref = env.cfg.backup.redis.password
    return {"REDISCLI_AUTH": ref.reveal("backup.redis.password", env.root)} if ref else {}


def redis_info(env: Env, runner: Runner) -> dict[str, str]:
    r = env.cfg.backup.redis
    out = runner.run(rc.raw(r.host, r.port, "INFO", "persistence", user=r.user), mutating=False, env=redis_env(env)).stdout
    # A wrong password is an error reply with exit 0: without this, BGSAVE "never finishes" (600 s wait).
    problem = rc.reply_error(out)
    if problem:
        raise OperationFailed(f"redis {r.host}:{r.port} answered {problem!r}; check backup.redis.password "
                              "(and the server's requirepass/ACL)")
    return rc.parse_info(out)


def redis_fingerprint(env: Env, runner: Runner, at: tuple[str, int] | None = None) -> dict:
    """Key count and a digest of the sorted key names (the keyset), of the configured server or `at`."""
    r = env.cfg.backup.redis
    host, port = at or (r.host, r.port)
    auth, user = ({}, "") if at else (redis_env(env), r.user)
    count = int(runner.run(rc.raw(host, port, "DBSIZE", user=user), mutating=False, env=auth).stdout.strip() or 0)
    keys = runner.run(rc.raw(host, port, "--scan", user=user), mutating=False, env=auth).stdout
    digest = hashlib.sha256("\n".join(sorted(keys.split())).encode()).hexdigest()
    return {"keys": count, "keyset_sha256": digest}


def backup_redis(env: Env, runner: Runner, store, backup_id: str, timeout: float = 600) -> tuple[list[Artifact], dict, Any]:
    r = env.cfg.backup.redis
    if r.rdb_fetch_path:
        return _backup_redis_fetched(env, runner, store, backup_id)
    renv = redis_env(env)
    before = redis_info(env, runner)
    runner.run(rc.raw(r.host, r.port, "BGSAVE", user=r.user), env=renv)

    def bgsave_done() -> tuple[bool, str]:
        now = redis_info(env, runner)
        return rc.bgsave_done(before, now), (f"rdb_bgsave_in_progress:{now.get('rdb_bgsave_in_progress', '?')} "
                                             f"rdb_saves:{now.get('rdb_saves', '?')}")

    runner.call("wait until BGSAVE has finished (INFO persistence: rdb_bgsave_in_progress:0, rdb_saves grew)",
                lambda: wait.until("redis BGSAVE to finish", bgsave_done, timeout=timeout))
    fp = redis_fingerprint(env, runner)
    path = r.rdb_path
    if not path:
        d = runner.run(rc.raw(r.host, r.port, "CONFIG", "GET", "dir", user=r.user), mutating=False, env=renv).stdout.split()
        f = runner.run(rc.raw(r.host, r.port, "CONFIG", "GET", "dbfilename", user=r.user), mutating=False, env=renv).stdout.split()
        path = f"{d[1]}/{f[1]}" if len(d) > 1 and len(f) > 1 else "<dir>/<dbfilename>"
    return [_upload_rdb(env, runner, store, backup_id, path)], fp, None


def _backup_redis_fetched(env: Env, runner: Runner, store, backup_id: str) -> tuple[list[Artifact], dict, Any]:
    """The server's files are elsewhere (the Kubernetes backup pod mounts no Redis volume; CONFIG GET dir
    names a directory of the Redis pod): a snapshot fetched over the network into rdb_fetch_path (the
    pod's /tmp emptyDir), fingerprinted right after, as the BGSAVE path does."""
    from pathlib import PurePosixPath

    r = env.cfg.backup.redis
    redis_info(env, runner)  # a wrong password is named here, not as a failed transfer
    path = PurePosixPath(r.rdb_fetch_path)
    runner.mkdir(path.parent, 0o700)
    try:
        runner.run(rc.fetch_rdb(r.host, r.port, str(path), user=r.user), env=redis_env(env))
        fp = redis_fingerprint(env, runner)
        art = _upload_rdb(env, runner, store, backup_id, str(path))
    finally:
        runner.remove(path, best_effort=True)  # a snapshot of the data: not left in the scratch volume
    return [art], fp, None


def _upload_rdb(env: Env, runner: Runner, store, backup_id: str, path: str) -> Artifact:
    runner.run(rc.check_rdb(path))  # reads only, but checks what was written: planned, not run, in dry-run
    art, _ = upload(env, runner, store, hc.cat(path),
                    artifact_key(backup_id, "redis.rdb.zst" + (".age" if env.cfg.backup.encryption_recipient else "")),
                    component="redis", kind="rdb")
    return art


def es_doc_counts(env: Env, runner: Runner) -> dict[str, int]:
    """index -> docs.count from _cat/indices, system (dot) indices left out; {} in a dry-run."""
    base = env.cfg.backup.elasticsearch_url.rstrip("/")
    r = runner.http("GET", f"{base}/_cat/indices?format=json&h=index,docs.count", mutating=False)
    if r.value is None:
        return {}
    if r.rc != 0:
        raise OperationFailed(f"elasticsearch {base}: GET _cat/indices answered {r.rc}")
    return {i["index"]: int(i["docs.count"]) for i in r.value.json() if not i["index"].startswith(".")}


def es_repository_body(b) -> dict[str, Any]:
    """The PUT _snapshot/<repo> body from backup.elasticsearch_repository_settings (pure): fs with no
    settings keeps the old default, a directory named like the repository under the nodes' path.repo."""
    cfg = b.elasticsearch_repository_settings
    settings = dict(cfg.settings) or ({"location": b.elasticsearch_repository} if cfg.type == "fs" else {})
    return {"type": cfg.type, "settings": settings}


def backup_elasticsearch(env: Env, runner: Runner, store, backup_id: str, timeout: float = 900) -> tuple[list[Artifact], dict, Any]:
    """Snapshot through the Elasticsearch REST API: register the repository (idempotent PUT), start a
    snapshot, poll until SUCCESS, record it. The repository's own storage holds the data."""
    import json as _json

    b = env.cfg.backup
    base = b.elasticsearch_url.rstrip("/")
    repo, snap = b.elasticsearch_repository, f"iosops-{backup_id.lower()}"
    fp = {"indices": es_doc_counts(env, runner)}
    r = runner.http("PUT", f"{base}/_snapshot/{repo}", json=es_repository_body(b))
    if r.rc:
        raise OperationFailed(f"elasticsearch: registering snapshot repository {repo} failed (HTTP {r.rc}): {r.stdout[:200]}")
    r = runner.http("PUT", f"{base}/_snapshot/{repo}/{snap}?wait_for_completion=false",
                    json={"indices": "*,-.*", "include_global_state": False})
    if r.rc:
        raise OperationFailed(f"elasticsearch: starting snapshot {snap} failed (HTTP {r.rc}): {r.stdout[:200]}")

    def snapshot_state() -> tuple[bool, dict]:
        got = runner.http("GET", f"{base}/_snapshot/{repo}/{snap}", mutating=False)
        if got.rc:
            raise OperationFailed(f"elasticsearch: snapshot status answered HTTP {got.rc}")
        info = got.value.json()["snapshots"][0]
        if info["state"] in ("FAILED", "PARTIAL", "INCOMPATIBLE"):
            raise OperationFailed(f"elasticsearch snapshot {snap} ended {info['state']}: "
                                  f"{_json.dumps(info.get('failures', []))[:200]}")
        return info["state"] == "SUCCESS", info

    def snapshot_done() -> dict:
        try:
            return wait.until(f"elasticsearch snapshot {snap} to reach SUCCESS", snapshot_state, timeout=timeout,
                              interval=0.5)
        except wait.WaitTimeout as exc:  # the last observation is the whole snapshot record: name its state
            raise wait.WaitTimeout(exc.what, timeout, f"state {(exc.last or {}).get('state', '?')}") from None

    info = runner.call(f"wait until snapshot {repo}/{snap} is SUCCESS", snapshot_done).value or {}
    art = Artifact(component="elasticsearch", kind="snapshot", key=f"es-snapshot://{repo}/{snap}", compression=None,
                   size=0, sha256="")
    fp["snapshot"] = {"repository": repo, "snapshot": snap, "uuid": info.get("uuid", ""),
                      "indices": sorted(info.get("indices", []))}
    return [art], fp, None


SOURCES = {"postgres": backup_postgres, "redis": backup_redis, "elasticsearch": backup_elasticsearch}
