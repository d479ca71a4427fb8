"""`inv up` / `inv down`: the quick stack on this machine, from docker/compose.yml like `inv deploy`.

`inv up` runs the compose project of the env (`stack.name`, the deploy's project directory and files,
rendered by iosops.deploy.stackfiles) with profile `quick`: PostgreSQL, Redis and one API service (`api`,
published on stack.publish_host:stack.api_port, no nginx). As the deploy does: the datastores first,
the password check of an existing volume (iosops.stack.pgauth), the backup role and the least-privilege
roles (iosops.deploy.dbusers), the migrations in a one-off container as the schema's owner, then the API,
Docker health and GET /ready. `inv monitoring.up` adds profile `monitoring` to the same project.

Look, then act: compose leaves a container of an unchanged definition alone; a service whose container is
the one it was before is reported as "no change". Everything carries `iosops.stack=<name>` (the compose
file's labels), and `inv down` removes the project (then, by that label, whatever an older `inv up` left).

Volumes: compose names them `<stack>_pgdata`, `<stack>_redisdata`. The `inv up` of before (plain
`docker run`) kept PostgreSQL's data in `<stack>-pgdata`: that volume is left untouched, and `inv up` says
so once per run while it exists (`inv down --volumes` deletes it with the rest).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Optional, Sequence

from .. import wait
from ..commands import compose as cc
from ..commands import docker as d
from ..config import Env
from ..deploy.target import Target
from ..errors import BadInput, OperationFailed
from ..runner import Runner

API_INTERNAL_PORT = 8000
QUICK = "quick"
DATASTORES = ["postgres", "redis"]
API = "api"
ALL_PROFILES = ("quick", "monitoring", "search", "ops")


@dataclass
class UpResult:
    stack: str
    url: str
    api_image: str
    project_dir: str = ""
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    migrations: str = ""
    ready: Optional[dict] = None
    notice: str = ""
    seconds: float = 0.0


class QuickTarget(Target):
    """The env's compose project on this machine (as the deploy's local Target), run with `profiles`."""

    def __init__(self, env: Env, runner: Runner, profiles: Sequence[str] = (QUICK,)):
        super().__init__(env, runner, project_dir(env))
        self.profiles = list(profiles)

    def base(self) -> list[str]:
        files = [str(self.dir / "compose.yml")]
        if self.env.cfg.stack.labels:
            files.append(str(self.dir / "compose.labels.yml"))
        return cc.base(self.compose(), self.project, str(self.dir), files, str(self.dir / "stack.env"),
                       self.profiles)


def project_dir(env: Env) -> PurePosixPath:
    """The deploy's local project directory (iosops.deploy.target.targets): one project per env here."""
    local = env.path(env.cfg.deploy.project_dir) if env.cfg.deploy.project_dir else \
        env.state_dir / "stacks" / env.cfg.stack.name
    return PurePosixPath(local.resolve())


def labels(env: Env) -> dict[str, str]:
    return {"iosops.stack": env.cfg.stack.name, "iosops.env": env.name, **env.cfg.stack.labels}


def names(env: Env) -> dict[str, str]:
    """Docker's names for the project's network and volumes (compose: `<project>_<name>`)."""
    n = env.cfg.stack.name
    return {"data_network": f"{n}_data", "pgdata": f"{n}_pgdata", "redisdata": f"{n}_redisdata",
            "legacy_pgdata": f"{n}-pgdata", "legacy_api": f"{n}-api"}


def container(env: Env, runner: Runner, service: str) -> str:
    """The id of the running container of `service` in the env's local project ("" when none). A probe."""
    ids = QuickTarget(env, runner).containers(service)
    return ids[0] if ids else ""


def legacy_notice(env: Env, runner: Runner) -> str:
    """One line while the volume of the `docker run` era of `inv up` exists (its data is not carried over)."""
    n = names(env)
    if runner.probe(d.inspect_format(n["legacy_pgdata"], "{{.Name}}"), check=False).rc != 0:
        return ""
    return (f"notice: volume {n['legacy_pgdata']} (PostgreSQL data of an earlier `inv up`) is kept untouched and "
            f"no longer used: `inv up` now keeps its data in {n['pgdata']} (docker/compose.yml); copy what you "
            f"need from it (e.g. pg_dump in a container that mounts it), or delete it with "
            f"`docker volume rm {n['legacy_pgdata']}` (`inv down --volumes` deletes it too)")


def wait_ready(runner: Runner, url: str, timeout: float) -> Optional[dict]:
    def check() -> tuple[bool, object]:
        import requests

        resp = requests.get(url, timeout=3)
        return (True, resp.json()) if resp.status_code == 200 else (False, f"HTTP {resp.status_code} {resp.text[:200]}")

    def poll() -> dict:
        import requests

        return wait.until(f"GET {url} to answer 200", check, timeout=timeout, interval=0.2,
                          retry_on=(requests.RequestException,))

    return runner.call(f"wait until GET {url} answers 200 (timeout {timeout:.0f}s)", poll).value


def _ids(t: Target, services: Sequence[str]) -> dict[str, list[str]]:
    return {svc: t.containers(svc) for svc in services}


def up(env: Env, runner: Runner, api_image: str, profiles: Sequence[str] = (QUICK,), ops_image: str = "") -> UpResult:
    """Datastores, roles, migrations, the API, /ready. `profiles` beyond quick (monitoring.up) only widen
    the project's compose calls; the services started here are the quick ones. `ops_image`: the backup
    services' image in stack.env (default: the one built with api_image)."""
    from ..backup.stack import ensure_backup_role
    from ..deploy.bluegreen import load_state, migrate, save_state
    from ..deploy.dbusers import ensure_roles
    from ..deploy.health import wait_service_healthy
    from ..deploy.stackfiles import ops_image_for, write_stack_files
    from .pgauth import check_compose, check_compose_started

    start = time.monotonic()
    s = env.cfg.stack
    t = QuickTarget(env, runner, profiles)
    url = f"http://{s.publish_host}:{s.api_port}"
    result = UpResult(stack=s.name, url=url, api_image=api_image, project_dir=str(t.dir))
    env.secret("postgres_password")  # a missing secret is bad input before anything else is looked at
    if runner.probe(d.inspect_format(names(env)["legacy_api"], "{{.Name}}"), check=False).rc == 0:
        # Its API holds the port the compose one would publish: stop the old stack first (data kept).
        raise BadInput(f"stack {s.name} still runs the containers of an earlier `inv up` (plain docker run, e.g. "
                       f"{names(env)['legacy_api']}); remove them with `inv down --env {env.name}` (volumes are "
                       "kept), then run this again; nothing was changed")
    result.notice = legacy_notice(env, runner)
    if result.notice:
        runner.info(result.notice)
    if runner.probe(d.inspect_format(api_image, "{{.Id}}"), check=False).rc != 0 and not runner.dry_run:
        raise BadInput(f"image {api_image} is missing; build it with `inv build` (or pass an existing --tag); "
                       "nothing was changed")
    # A data volume whose PostgreSQL refuses this checkout's password (another checkout made it): refused
    # now, or (PostgreSQL not running) right after the datastores start.
    recheck = check_compose(t)
    state = load_state(t)
    state["images"] = {**state.get("images", {}), QUICK: api_image}  # a deploy's colours stay as they are
    write_stack_files(t, state["images"], ops_image or ops_image_for(env, api_image))
    services = [*DATASTORES, API]
    before = _ids(t, services)
    timeout = s.ready_timeout_s
    try:
        runner.run(cc.up(t.base(), DATASTORES))
        for svc in DATASTORES:
            wait_service_healthy(t, svc, timeout)
        if recheck is not None:
            check_compose_started(t, recheck, what="inv up")
        ensure_backup_role(t)
        ensure_roles(t)
        # Schema first, as its owner, in a one-off container of the new image: the API starts on a migrated
        # database. Every migration is applied (a local stack has no old version serving).
        outcome = migrate(t, API, allow_destructive=True)
        applied = outcome["applied"] or []
        result.migrations = (f"migrations applied: {', '.join(applied)}" if applied else
                             "migrations: no change (schema up to date)")
        runner.run(cc.up(t.base(), [API]))
        wait_service_healthy(t, API, timeout)
        result.ready = wait_ready(runner, f"{url}/ready", timeout)
    except (OperationFailed, BadInput) as exc:
        if runner.dry_run:
            raise
        after = _ids(t, services)
        new = [svc for svc in services if after[svc] and after[svc] != before[svc]]
        if new:  # what this run started goes; the volumes stay
            runner.run(cc.rm(t.base(), new), check=False)
            undo = f"removed {', '.join(new)} (volumes kept)"
            if isinstance(exc, BadInput):
                raise BadInput(f"{exc} Rolled back: {undo}") from None
            raise OperationFailed(f"{exc}; rolled back: {undo}") from None
        raise
    after = _ids(t, services)
    for svc in services:
        if after[svc] and after[svc] == before[svc]:
            result.unchanged.append(svc)
            runner.info(f"no change: {svc} of {s.name} runs the same definition")
        else:
            result.changed.append(svc)
    save_state(t, state)
    result.seconds = round(time.monotonic() - start, 1)
    return result


def down(env: Env, runner: Runner, volumes: bool = False) -> list[str]:
    """The env's compose project on this machine (every profile: also a local deploy's nginx, colours,
    monitoring and backup services), then, by label, anything an older `inv up` left (its containers,
    `<stack>-net`, and with `volumes` its `<stack>-pgdata`)."""
    label = f"iosops.stack={env.cfg.stack.name}"
    ids = runner.probe(d.ps_by_label(label)).stdout.split()
    nets = runner.probe(d.ls_by_label("network", label)).stdout.split()
    vols = runner.probe(d.ls_by_label("volume", label)).stdout.split() if volumes else []
    t = QuickTarget(env, runner, ALL_PROFILES)
    composed = t.read("compose.yml") is not None
    if composed:
        runner.run(cc.down(t.base(), volumes))
    removed = [f"{len(x)} {what}(s)" for x, what in ((ids, "container"), (nets, "network"), (vols, "volume")) if x]
    if runner.dry_run and composed:  # the plan: compose down takes what the project made
        return removed
    # Whatever compose did not take (an older `inv up`'s plain containers, network and volume).
    for kind, rm in (("container", d.rm_containers), ("network", d.rm_networks), ("volume", d.rm_volumes)):
        if kind == "volume" and not volumes:
            continue
        probe = d.ps_by_label(label) if kind == "container" else d.ls_by_label(kind, label)
        left = runner.probe(probe).stdout.split()
        if left:
            runner.run(rm(left))
    return removed
