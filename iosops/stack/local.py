"""`inv up` / `inv down`: the reference API with PostgreSQL and Redis as containers on this machine.

Look, then act: a container that already runs the wanted image is left alone ("no change").
Every container, network and volume carries `iosops.stack=<name>` and is removed by that label only.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

from ..commands import docker as d
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from . import pgauth

API_INTERNAL_PORT = 8000


@dataclass
class Service:
    key: str
    name: str
    image: str
    argv: list[str]
    needs_db_password: bool = False


@dataclass
class UpResult:
    stack: str
    url: str
    api_image: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    migrations: str = ""
    ready: Optional[dict] = None
    seconds: float = 0.0


def labels(env: Env) -> dict[str, str]:
    return {"iosops.stack": env.cfg.stack.name, "iosops.env": env.name, **env.cfg.stack.labels}


def names(env: Env) -> dict[str, str]:
    n = env.cfg.stack.name
    return {"network": f"{n}-net", "pgdata": f"{n}-pgdata", "postgres": f"{n}-postgres",
            "redis": f"{n}-redis", "api": f"{n}-api"}


def api_env(env: Env) -> dict[str, str]:
    s = env.cfg.stack
    out = {"POSTGRES_HOST": "postgres", "POSTGRES_PORT": "5432", "POSTGRES_DB": s.postgres_db,
           "POSTGRES_USER": s.postgres_user, "REDIS_URL": "redis://redis:6379/0",
           "WEB_CONCURRENCY": str(s.api_workers)}
    if s.elasticsearch_url:
        out["ELASTICSEARCH_URL"] = s.elasticsearch_url
    return out


def services(env: Env, api_image: str) -> list[Service]:
    s, n, lab, img = env.cfg.stack, names(env), labels(env), env.cfg.images
    return [
        Service("postgres", n["postgres"], img.postgres, d.run_detached(
            n["postgres"], img.postgres, network=n["network"], network_alias="postgres", labels=lab,
            env={"POSTGRES_DB": s.postgres_db, "POSTGRES_USER": s.postgres_user}, pass_env=["POSTGRES_PASSWORD"],
            volumes=[f"{n['pgdata']}:/var/lib/postgresql/data"], memory="512m"), needs_db_password=True),
        Service("redis", n["redis"], img.redis, d.run_detached(
            n["redis"], img.redis, network=n["network"], network_alias="redis", labels=lab, memory="256m")),
        Service("api", n["api"], api_image, d.run_detached(
            n["api"], api_image, network=n["network"], network_alias="api", labels=lab, env=api_env(env),
            pass_env=["POSTGRES_PASSWORD"], publish=[f"{s.publish_host}:{s.api_port}:{API_INTERNAL_PORT}"],
            read_only=True, tmpfs=["/tmp:rw,noexec,nosuid,size=64m"], memory="512m"), needs_db_password=True),  # nosec B108 # a tmpfs mount spec inside the API container, not a host temp file
    ]


def container_state(runner: Runner, name: str) -> Optional[tuple[str, bool]]:
    """(image id, running) of a container, or None when there is none. A probe: runs in dry-run too."""
    r = runner.run(d.inspect_format(name, "{{json .Image}} {{json .State.Running}}"), mutating=False, check=False)
    if r.rc != 0:
        return None
    image, running = r.stdout.split()
    return json.loads(image), json.loads(running)


def wait_healthy(runner: Runner, name: str, timeout: float) -> None:
    def poll() -> None:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            status = runner.run(d.health_status(name), mutating=False, check=False).stdout.strip()
            if status in ("healthy", "running"):
                return
            if status in ("exited", "dead", "unhealthy"):
                break
            time.sleep(0.5)
        logs = runner.run(d.logs_tail(name, 15), mutating=False, check=False)
        tail = " | ".join((logs.stdout + logs.stderr).strip().splitlines()[-3:])
        raise OperationFailed(f"container {name} is {status}, not healthy, after {timeout:.0f}s; last logs: {tail}")

    runner.call(f"wait until {name} is healthy (timeout {timeout:.0f}s)", poll)


def wait_ready(runner: Runner, url: str, timeout: float) -> Optional[dict]:
    def poll() -> dict:
        import requests

        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = requests.get(url, timeout=3)
                if resp.status_code == 200:
                    return resp.json()
                last = f"HTTP {resp.status_code} {resp.text[:200]}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise OperationFailed(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")

    return runner.call(f"wait until GET {url} answers 200 (timeout {timeout:.0f}s)", poll).value


def up(env: Env, runner: Runner, api_image: str) -> UpResult:
    start = time.monotonic()
    s, n, lab = env.cfg.stack, names(env), labels(env)
    url = f"http://{s.publish_host}:{s.api_port}"
    result = UpResult(stack=s.name, url=url, api_image=api_image)
    password = env.secret("postgres_password")
    created: list[str] = []
    # A data volume whose PostgreSQL refuses this checkout's password (another checkout made it): refused
    # before anything changes, or (PostgreSQL not running) right after it starts.
    pg_state = container_state(runner, n["postgres"])
    recheck = pgauth.check_local(runner, env, n["pgdata"], n["postgres"], bool(pg_state and pg_state[1]))

    if runner.run(d.inspect_format(n["network"], "{{.Id}}"), mutating=False, check=False).rc != 0:
        runner.run(d.network_create(n["network"], lab))
        created.append(f"network {n['network']}")
    if runner.run(d.inspect_format(n["pgdata"], "{{.Name}}"), mutating=False, check=False).rc != 0:
        runner.run(d.volume_create(n["pgdata"], lab))
    try:
        for svc in services(env, api_image):
            state = container_state(runner, svc.name)
            want = runner.run(d.inspect_format(svc.image, "{{.Id}}"), mutating=False, check=False).stdout.strip()
            if want and state == (want, True):
                result.unchanged.append(svc.name)
                runner.info(f"no change: {svc.name} runs {svc.image}")
            else:
                if state is not None:
                    runner.run(d.rm_containers([svc.name]))
                if svc.key == "api":  # schema first: the new version starts on a migrated database
                    mig = runner.run([d.DOCKER, "run", "--rm", "--network", n["network"], *d.labels_args(lab),
                                      *sum((["--env", f"{k}={v}"] for k, v in sorted(api_env(env).items())), []),
                                      "--env", "POSTGRES_PASSWORD", svc.image, "python3", "-m", "iosapi.migrate"],
                                     env={"POSTGRES_PASSWORD": password})
                    result.migrations = mig.stdout.strip()
                runner.run(svc.argv, env={"POSTGRES_PASSWORD": password} if svc.needs_db_password else None)
                created.append(svc.name)
                result.changed.append(svc.name)
            wait_healthy(runner, svc.name, s.ready_timeout_s)
            if svc.key == "postgres" and recheck and pgauth.probe(runner, svc.name, env) == pgauth.MISMATCH:
                raise pgauth.mismatch(env, n["pgdata"], undone="")
        result.ready = wait_ready(runner, f"{url}/ready", s.ready_timeout_s)
    except (OperationFailed, BadInput) as exc:
        containers = [c for c in created if not c.startswith("network ")]
        if containers and not runner.dry_run:
            runner.run(d.rm_containers(containers), check=False)
            undo = f"removed {', '.join(containers)} (data volume {n['pgdata']} kept)"
            if isinstance(exc, BadInput):  # a sentence of its own after the refusal's
                raise BadInput(f"{exc} Rolled back: {undo}") from None
            raise OperationFailed(f"{exc}; rolled back: {undo}") from None
        raise
    result.seconds = round(time.monotonic() - start, 1)
    return result


def down(env: Env, runner: Runner, volumes: bool = False) -> list[str]:
    label = f"iosops.stack={env.cfg.stack.name}"
    removed: list[str] = []
    ids = runner.run(d.ps_by_label(label), mutating=False).stdout.split()
    if ids:
        runner.run(d.rm_containers(ids))
        removed.append(f"{len(ids)} container(s)")
    nets = runner.run(d.ls_by_label("network", label), mutating=False).stdout.split()
    if nets:
        runner.run(d.rm_networks(nets))
        removed.append(f"{len(nets)} network(s)")
    if volumes:
        vols = runner.run(d.ls_by_label("volume", label), mutating=False).stdout.split()
        if vols:
            runner.run(d.rm_volumes(vols))
            removed.append(f"{len(vols)} volume(s)")
    return removed
