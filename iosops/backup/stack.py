"""Backups, restores and verification of the compose stack that `inv deploy` runs, on this machine or on
the env's (first) SSH host: the engine runs in the ops image as the compose service `ops`
(`compose run --rm ops python3 -m iosops.backup.stackops ...`) on the stack's data network, with the
stack's volumes; WAL arrives continuously from the `walstream` service. This module only orchestrates:
it renders the ops containers' config, runs them, and owns what only the host can do (stopping and
starting the stack's PostgreSQL, maintenance mode in nginx, the lock, the webhook).
"""
from __future__ import annotations

import json
import time
from typing import Any, Optional

import yaml

from ..commands import compose as cc
from ..commands import host as hc
from ..commands import python as py
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from ..secretref import SecretRef

SECRETS_DIR = "/run/secrets"
PGVOL = "/pgvol"  # the PostgreSQL volume inside the ops container; PGDATA is its pgdata/ directory
STORE_MOUNT = "/store"
BACKUP_ROLE = "iosops_backup"
REDIS_BACKUP_USER = "iosops_backup"  # the Redis ACL user of the backup services (iosops/deploy/dbusers.py)
SECRET_FILES = {  # compose secret -> (config path of the reference, required)
    "backup_password": ("secrets.backup_password", True),
    # The backup's Redis ACL user (iosops/deploy/dbusers.py): INFO, BGSAVE, DBSIZE, SCAN.
    "redis_backup_password": ("secrets.redis_backup_password", True),
    "backup_store_access_key_id": ("backup.store.access_key_id", False),
    "backup_store_secret_access_key": ("backup.store.secret_access_key", False),
    "backup_encryption_key": ("backup.encryption_key", False),
}


def ops_config(env: Env) -> dict[str, Any]:
    """The env as the ops containers see it: datastores by service name, the store as mounted, every
    secret a file under /run/secrets (compose secrets written by `write_ops_files`), no webhook (the
    host sends the messages; the data network has no way out to it)."""
    b = env.cfg.backup
    # Only what the engine reads: the ops containers never see deploy, hosts, k8s or build settings.
    data = {"description": f"{env.name} as seen by its ops containers (rendered by iosops)", "target": "local",
            "backup": b.model_dump(mode="json", exclude_none=True)}
    backup = data["backup"]
    backup["runs_on"] = "host"  # inside the container the engine talks to the datastores directly
    backup["postgres"] = {**backup["postgres"], "host": "postgres", "port": 5432, "user": BACKUP_ROLE,
                          "dbname": env.cfg.stack.postgres_db, "bin_dir": "/usr/lib/postgresql/15/bin",
                          "data_dir": f"{PGVOL}/pgdata", "password": {"file": f"{SECRETS_DIR}/backup_password"}}
    backup["redis"] = {"host": "redis", "port": 6379, "rdb_path": "/redisdata/dump.rdb", "restore_dir": "/redisdata",
                       "user": REDIS_BACKUP_USER, "password": {"file": f"{SECRETS_DIR}/redis_backup_password"}}
    backup["metrics_file"] = "/var/lib/iosops/metrics/iosops_backup.prom"
    backup.pop("webhook_url", None)
    if b.store.kind == "local":
        backup["store"] = {**backup["store"], "path": STORE_MOUNT}
    for name, (path, _) in SECRET_FILES.items():
        section, key = path.rsplit(".", 1)
        if section.startswith("backup") and getattr(_section(env, section), key) is not None:
            _node(data, section)[key] = {"file": f"{SECRETS_DIR}/{name}"}
        elif section.startswith("backup"):
            _node(data, section).pop(key, None)
    data["state_dir"] = "/var/lib/iosops/state"
    data["notify"] = {"required": False}
    return data


def _section(env: Env, dotted: str):
    node: Any = env.cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _node(data: dict, dotted: str) -> dict:
    for part in dotted.split("."):
        data = data[part]
    return data


def secret_values(env: Env) -> dict[str, str]:
    """compose secret name -> value ('' when the env does not use it). The backup role's password is
    required: `secrets.backup_password` (generated on first use for local)."""
    out = {}
    for name, (path, required) in SECRET_FILES.items():
        if path.startswith("secrets."):
            out[name] = env.secret(path.split(".", 1)[1]).get() if required or path.split(".", 1)[1] in \
                env.cfg.secrets else ""
            continue
        section, key = path.rsplit(".", 1)
        ref: Optional[SecretRef] = getattr(_section(env, section), key)
        out[name] = ref.reveal(path, env.root).get() if ref is not None else ""
    return out


def write_ops_files(t, env: Env) -> None:
    """ops/<env>.yaml and the backup secrets into the stack's project directory (deploy and every
    backup task call it, so the containers always run with the env's current settings)."""
    t.runner.run(hc.mkdir_p(str(t.dir / "ops"), str(t.dir / "secrets")))
    text = "# written by inv deploy / inv backup: the env as the ops containers see it; no secret values\n" + \
        yaml.safe_dump(ops_config(env), sort_keys=True)
    t.put(f"ops/{env.name}.yaml", text, 0o644)
    for name, value in secret_values(env).items():
        # Readable by the containers' user (999); the directory (0700) keeps everyone else out.
        t.put(f"secrets/{name}", value, 0o644)


def store_dir(env: Env) -> Optional[str]:
    """The host directory mounted as the store (local stores only), owned by the containers' uid."""
    if env.cfg.backup.store.kind != "local":
        return None
    from .store import local_path

    return str(local_path(env).resolve())


def target(env: Env, runner: Runner):
    """The host that runs the stack's datastores: this machine, or the env's data host."""
    from ..deploy.target import data_target, targets

    t = data_target(targets(env, runner))
    if t.read("compose.yml") is None and not runner.dry_run:
        raise BadInput(f"env {env.name}: no deployed stack on {t.name} ({t.dir} has no compose.yml); run "
                       f"`inv deploy --env {env.name}` first")
    return t


def prepare_host(t, env: Env) -> None:
    write_ops_files(t, env)
    d = store_dir(env)
    if d:
        t.runner.run(hc.mkdir_p(d))
        t.runner.run(hc.chown("999:999", d))  # the ops containers run as the PostgreSQL image's uid


def run_ops(t, env: Env, action: str, *args: str, mutating: bool = True) -> dict:
    """One run of the engine in the ops container; its JSON answer (last stdout line). The container's
    exit code is the task's: 2 bad input, 1 failed (its last `error:` line says why). mutating=False: the
    run only reads (it also runs in a dry-run and answers with its own plan)."""
    argv = cc.run_once(t.base(), "ops", py.stackops(action, env.name, *args))
    r = t.runner.run(argv, mutating=mutating, check=False, stream=True)
    if r.dry_run:
        return {}
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if r.rc != 0:
        # Over SSH the container's stderr comes back apart from its stdout: its `error:` line may be there.
        said = lines + [l for l in (r.stderr or "").splitlines() if l.strip()]
        errors = [l.split("error: ", 1)[1] for l in said if "error: " in l]
        why = errors[-1] if errors else (said[-1] if said else f"exit {r.rc}")
        cls = BadInput if r.rc == 2 else OperationFailed
        raise cls(f"{action} on {t.name} (ops container): {why}")
    for line in reversed(lines):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise OperationFailed(f"{action} on {t.name}: the ops container gave no answer")


def compose_up(t, env: Env, services: list[str]) -> None:
    t.runner.run(cc.up(t.base(), services))


def ensure_backup_role(t) -> None:
    """The backup role with the env's current password (idempotent, in the PostgreSQL container)."""
    t.runner.run(cc.exec_(t.base(), "postgres", ["pg-ensure-backup-role"]))


# -- the tasks' entry points -------------------------------------------------------------------------
def backup(env: Env, runner: Runner, only: str = "") -> dict:
    t = target(env, runner)
    prepare_host(t, env)
    return run_ops(t, env, "backup", *(["--only", only] if only else []))


def list_rows(env: Env, runner: Runner) -> list[dict]:
    t = target(env, runner)
    prepare_host(t, env)
    return run_ops(t, env, "list").get("rows", [])


def verify(env: Env, runner: Runner, backup_id: str = "", all_: bool = False) -> list[dict]:
    t = target(env, runner)
    prepare_host(t, env)
    args = ["--all"] if all_ else (["--id", backup_id] if backup_id else [])
    return run_ops(t, env, "verify", *args).get("results", [])


def prune(env: Env, runner: Runner, force: bool = False) -> dict:
    t = target(env, runner)
    prepare_host(t, env)
    args = (["--force"] if force else []) + (["--dry-run"] if runner.dry_run else [])
    # A dry-run prune still runs the container (it only reads the store) and prints its plan.
    return run_ops(t, env, "prune", *args, mutating=not runner.dry_run)


def restore(env: Env, runner: Runner, *, backup_id: str = "", to_time: str = "", latest: bool = False,
            only: str = "", safety: bool = True) -> dict:
    """prepare (ops container, nothing live changes: unpack beside the live data, prefetch WAL, safety
    backup) -> maintenance on (nginx answers 503 + Retry-After) -> stop walstream, PostgreSQL, Redis ->
    finish (ops container: swap, recover, verify; puts the old data back itself on failure) -> start
    them -> backup role -> API /ready -> maintenance off. A failure after the stop starts the datastores
    again on whatever finish left (the old data when it rolled back) and says so."""
    from ..deploy import maintenance

    from ..deploy.target import targets, web_targets

    t0 = time.monotonic()
    t = target(env, runner)
    web = web_targets(targets(env, runner))  # maintenance and /ready are where nginx and the API run
    prepare_host(t, env)
    what = (["--backup", backup_id] if backup_id else []) + (["--to-time", to_time] if to_time else []) + \
        (["--latest"] if latest else []) + (["--only", only] if only else []) + \
        ([] if safety else ["--no-safety"]) + ["--data-dir", f"{PGVOL}/pgdata"]
    prep = run_ops(t, env, "restore-prepare", *what)
    if runner.dry_run:
        prep = {"backup": backup_id or "<chosen>", "target": "latest" if latest else ("time" if to_time else "immediate"),
                "target_time": to_time, "components": (only.split(",") if only else ["postgres", "redis"]), "safety": ""}
    comps = prep["components"]
    stopped = ["walstream"] + [c for c in ("postgres", "redis") if c in comps]
    steps: dict[str, float] = dict(prep.get("phases", {}))
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        steps[name] = round(time.monotonic() - clock, 2)
        clock = time.monotonic()

    finished: dict = {}
    try:
        for w in web:  # inside the try: a host that failed to switch puts the others back too
            maintenance.set_mode(w, env, True)
        lap("maintenance_on_s")
        t.runner.run(cc.stop(t.base(), stopped, timeout=60))
        lap("stop_s")
        fin = ["--backup", prep["backup"], "--target", prep["target"], "--only", ",".join(comps),
               "--data-dir", f"{PGVOL}/pgdata"] + (["--target-time", prep["target_time"]] if prep["target_time"] else []) + \
            (["--safety", prep["safety"]] if prep["safety"] else [])
        try:
            finished = run_ops(t, env, "restore-finish", *fin)
            steps.update({f"finish_{k}": v for k, v in finished.get("phases", {}).items()})
            lap("finish_s")
        finally:
            # Whatever finish left in place (the restored data, or the old data it put back) starts again.
            compose_up(t, env, [c for c in ("postgres", "redis") if c in comps])
            from ..deploy.health import wait_service_healthy

            for svc in [c for c in ("postgres", "redis") if c in comps]:
                wait_service_healthy(t, svc, env.cfg.deploy.health_timeout_s)
            ensure_backup_role(t)
            from ..deploy.dbusers import ensure_roles

            ensure_roles(t)  # a recovery point from before the roles existed has none of them
            compose_up(t, env, ["walstream"])
            lap("start_s")
        for w in web:
            _wait_api_ready(w, env)
        lap("api_ready_s")
    finally:
        for w in web:
            maintenance.set_mode(w, env, False)
    return {**finished, "phases": steps, "prepare": prep, "seconds": round(time.monotonic() - t0, 2), "host": t.name}


def _wait_api_ready(t, env: Env) -> None:
    from ..deploy.health import wait_ready
    from ..deploy.switch import active_colour

    colour = active_colour(t)
    if colour and t.containers(f"api-{colour}"):
        wait_ready(t, f"api-{colour}", env.cfg.deploy.health_timeout_s)
