"""Blue-green deploys of docker/compose.yml behind nginx, on this machine or on SSH hosts.

deploy: image -> destructive-migration gate -> datastores up -> migrations -> idle colour up -> Docker
health + /ready of every replica -> smoke checks -> testinfra checks -> (all hosts ready) -> switch the
nginx upstream on every host (render, `nginx -t`, reload; never reload an invalid config) -> drain the
old workers -> post-switch error rate from nginx's JSON log -> keep the old colour for `rollback`.
Any failure before the switch removes the idle colour (traffic never moved); any failure after it
switches back. The active colour is read from each host's rendered upstream (look, then act).
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional

import yaml

from ..commands import compose as cc
from ..commands import docker as d
from ..config import Env
from ..errors import BadInput, IosopsError, OperationFailed
from ..notify import Tracker, tag_of, tracked
from ..hosts.known_hosts import HostKeyRefused
from ..runner import RemoteRunner, Runner
from ..backup.stack import BACKUP_ROLE, ensure_backup_role
from . import nginx as ng

API_PORT = 8000
# Run in a one-off container of the new image: list the migrations it would apply; apply them unless one
# is marked destructive and ALLOW_DESTRUCTIVE is not 1 (one container start instead of two).
MIGRATE = """
import json, os, psycopg
from iosapi.migrate import apply, discover
from iosapi.settings import load
dsn = load().pg_conninfo
with psycopg.connect(dsn) as c:
    has = c.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
    done = {v for (v,) in c.execute('SELECT version FROM schema_migrations')} if has else set()
todo = [{"version": m.version, "name": m.name, "destructive": m.destructive} for m in discover() if m.version not in done]
refused = any(m["destructive"] for m in todo) and os.environ.get("ALLOW_DESTRUCTIVE") != "1"
print(json.dumps({"pending": todo, "applied": None if refused else apply(dsn)}))
"""
SMOKE = """
import json, sys, urllib.error, urllib.request
out = {}
for p in sys.argv[1:]:
    try:
        out[p] = urllib.request.urlopen("http://127.0.0.1:8000" + p, timeout=5).status
    except urllib.error.HTTPError as e:
        out[p] = e.code
    except Exception as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""
WORKERS = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | tr -s ' ' | sed 's/nginx: /\\nnginx: /g'"


@dataclass
class DeployResult:
    env: str
    image: str
    colour: str
    previous: Optional[str]
    hosts: list[str]
    migrations: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    errors_after_switch: int = 0
    requests_after_switch: int = 0
    seconds: float = 0.0


class Target:
    """One host running the stack: this machine (the local runner) or an SSH host (a RemoteRunner)."""

    def __init__(self, env: Env, runner: Runner, project_dir: PurePosixPath):
        self.env, self.runner, self.dir = env, runner, project_dir
        self.project = env.cfg.stack.name
        self._compose: Optional[list[str]] = None

    @property
    def name(self) -> str:
        return str(self.runner.host) if isinstance(self.runner, RemoteRunner) else "local"

    @property
    def remote(self) -> bool:
        return isinstance(self.runner, RemoteRunner)

    # -- files on the host -------------------------------------------------------------------------
    def path(self, rel: str) -> PurePosixPath:
        p = PurePosixPath(rel)
        return p if p.is_absolute() else self.dir / p

    def put(self, rel: str, content: str, mode: int = 0o644) -> None:
        path = self.path(rel)
        if not self.remote:
            self.runner.write_file(Path(path), content, mode)
            return
        self.runner.run(["sh", "-c", 'set -e; mkdir -p "$(dirname "$1")"; t=$(mktemp "$1.XXXXXX"); cat > "$t"; '
                         'chmod "$2" "$t"; mv -f "$t" "$1"', "put", str(path), f"{mode:o}"], input=content)

    def read(self, rel: str) -> Optional[str]:
        r = self.runner.run(["cat", str(self.path(rel))], mutating=False, check=False)
        return r.stdout if r.rc == 0 and not r.dry_run else None

    # -- compose -------------------------------------------------------------------------------------
    def compose(self) -> list[str]:
        """`docker compose` (v2) when the host has it, else `docker-compose` (1.29). A probe."""
        if self._compose is None:
            v2 = self.runner.run(cc.detect_v2(), mutating=False, check=False)
            self._compose = cc.V2 if v2.rc == 0 and not v2.dry_run else cc.V1
        return self._compose

    def base(self) -> list[str]:
        files = [str(self.dir / "compose.yml")]
        if self.env.cfg.stack.labels:
            files.append(str(self.dir / "compose.labels.yml"))
        return cc.base(self.compose(), self.project, str(self.dir), files, str(self.dir / "stack.env"),
                       self.env.cfg.deploy.profiles)

    def containers(self, service: str) -> list[str]:
        r = self.runner.run(cc.ps_service(self.project, service), mutating=False, check=False)
        return r.stdout.split()

    def now(self) -> float:
        r = self.runner.run(["date", "+%s.%N"], mutating=False, check=False)
        try:
            return float(r.stdout.strip())
        except ValueError:
            return time.time()


def targets(env: Env, runner: Runner) -> list[Target]:
    hosts = env.cfg.hosts.hosts
    if env.cfg.target == "compose" and hosts:
        from ..hosts.known_hosts import for_env
        from ..hosts.ssh import remote_runner

        out, known = [], for_env(env)
        for h in hosts:
            remote = remote_runner(env, runner, h, known)  # host keys checked against the env's known_hosts
            out.append(Target(env, remote, PurePosixPath(env.cfg.deploy.project_dir or
                                                         f"{env.cfg.hosts.base_dir}/{env.cfg.stack.name}")))
        return out
    local_dir = env.path(env.cfg.deploy.project_dir) if env.cfg.deploy.project_dir else \
        env.state_dir / "stacks" / env.cfg.stack.name
    return [Target(env, runner, PurePosixPath(local_dir.resolve()))]


# -- preflight (bad input: nothing changed) -----------------------------------------------------------
def check_reachable(ts: list[Target]) -> None:
    """No host is touched unless every host answers."""
    for t in ts:
        if not t.remote or t.runner.dry_run:
            continue
        try:
            t.runner.run(["true"], mutating=False)
        except HostKeyRefused:  # unknown or changed host key: its own message
            raise
        except IosopsError as exc:
            raise BadInput(f"host {t.name} is unreachable ({exc}); nothing was changed on any host") from None


def check_image(t: Target, image: str) -> None:
    r = t.runner.run(d.inspect_format(image, "{{.Id}}"), mutating=False, check=False)
    if r.rc != 0 and not r.dry_run and t.env.cfg.build.registry:
        r = t.runner.run([d.DOCKER, "pull", image], check=False)
    if r.rc != 0 and not r.dry_run:
        raise BadInput(f"unknown image {image} on {t.name}: no such tag (build it with `inv build --tag ...`"
                       f"{' and push it' if t.remote else ''}, or pass an existing --tag); nothing was changed")


def check_ports(t: Target) -> None:
    """Before the first nginx start: its published ports must be free."""
    dcfg, host = t.env.cfg.deploy, t.env.cfg.stack.publish_host
    for port in (dcfg.http_port, dcfg.https_port):
        if t.remote:
            r = t.runner.run(["sh", "-c", f"ss -Hltn 'sport = :{port}' | grep -q LISTEN"], mutating=False, check=False)
            busy = r.rc == 0 and not r.dry_run
        else:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                    busy = False
                except OSError:
                    busy = True
        if busy:
            raise BadInput(f"port {port} on {t.name} ({host}) is already in use; free it or set "
                           f"deploy.http_port/deploy.https_port for env {t.env.name}; nothing was changed")


def tls_paths(t: Target) -> tuple[PurePosixPath, PurePosixPath]:
    tls = t.env.cfg.deploy.tls
    cert, key = t.path(tls.cert), t.path(tls.key)
    if cert.parent != key.parent:
        raise BadInput(f"deploy.tls: cert and key must sit in the same directory ({cert.parent} vs {key.parent})")
    return cert, key


def ensure_tls(t: Target) -> str:
    """Self-signed certificate when configured (local); then the certificate must exist and be valid."""
    tls = t.env.cfg.deploy.tls
    cert, key = tls_paths(t)
    valid = ["openssl", "x509", "-noout", "-checkend", "86400", "-in", str(cert)]
    state = t.runner.run(valid, mutating=False, check=False)
    if state.dry_run:
        return "certificate: checked at run time"
    if state.rc != 0 and tls.self_signed:
        name = t.env.cfg.deploy.server_name if t.env.cfg.deploy.server_name != "_" else "localhost"
        t.runner.run(["mkdir", "-p", str(cert.parent)])
        t.runner.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-days", str(tls.self_signed_days), "-subj", f"/CN={name}",
                      "-addext", f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1",
                      "-keyout", str(key), "-out", str(cert)])
        t.runner.run(["chmod", "600", str(key)])
        t.runner.run(["chmod", "644", str(cert)])  # nginx's master reads both as root
        return f"certificate: generated self-signed {cert} ({tls.self_signed_days} days)"
    if state.rc != 0:
        exists = t.runner.run(["test", "-r", str(cert)], mutating=False, check=False).rc == 0
        why = "is expired or expires within a day" if exists else "is missing"
        raise BadInput(f"TLS certificate {cert} on {t.name} {why}; install a valid certificate at deploy.tls.cert "
                       f"(and its key at deploy.tls.key); deploy refused, nothing was changed")
    return f"certificate: {cert} valid"


# -- files -----------------------------------------------------------------------------------------
def ops_image_for(env: Env, api_image: str) -> str:
    """The ops image built with `api_image` (same registry and tag, build.ops_repository)."""
    from ..build.image import image_ref

    return image_ref(env, api_image.rpartition(":")[2], env.cfg.build.ops_repository)


def stack_env(env: Env, images: dict[str, str], t: Target, ops_image: str = "") -> str:
    from ..backup.stack import store_dir

    s, dcfg, img = env.cfg.stack, env.cfg.deploy, env.cfg.images
    cert, _ = tls_paths(t)
    values = {
        "OPS_IMAGE": ops_image or "iosops/ops:none",
        "PG_MAX_SLOT_WAL_KEEP_SIZE": env.cfg.backup.walstream.max_slot_wal_keep_size,
        "BACKUP_STORE_DIR": (store_dir(env) if not t.remote else None) or "./backups",
        "IOSOPS_STACK": s.name, "IOSOPS_ENV": env.name,
        "API_IMAGE_BLUE": images.get("blue") or "iosops/api:none",
        "API_IMAGE_GREEN": images.get("green") or "iosops/api:none",
        "POSTGRES_IMAGE": img.postgres, "REDIS_IMAGE": img.redis, "NGINX_IMAGE": img.nginx,
        "PROMETHEUS_IMAGE": img.prometheus, "ALERTMANAGER_IMAGE": img.alertmanager,
        "POSTGRES_EXPORTER_IMAGE": img.postgres_exporter, "REDIS_EXPORTER_IMAGE": img.redis_exporter,
        "NODE_EXPORTER_IMAGE": img.node_exporter,
        "POSTGRES_DB": s.postgres_db, "POSTGRES_USER": s.postgres_user, "API_WORKERS": str(s.api_workers),
        "ELASTICSEARCH_URL": s.elasticsearch_url, "PUBLISH_HOST": s.publish_host,
        "HTTP_PORT": str(dcfg.http_port), "HTTPS_PORT": str(dcfg.https_port), "TLS_DIR": str(cert.parent),
    }
    return "# written by inv deploy; no secrets here (they are files under secrets/)\n" + \
        "".join(f"{k}={v}\n" for k, v in values.items())


def labels_override(env: Env, compose_text: str) -> str:
    """Extra labels (e.g. iosops.test=1) on every service, network and volume of the stack."""
    spec = yaml.safe_load(compose_text)
    extra = dict(env.cfg.stack.labels)
    # docker-compose 1.29 replaces (does not merge) a network's or volume's definition from an
    # override file: repeat the whole definition (e.g. `internal: true`) with the labels added.
    def top(kind: str) -> dict:
        return {k: {**(v or {}), "labels": {**((v or {}).get("labels") or {}), **extra}}
                for k, v in (spec.get(kind) or {}).items()}
    out: dict[str, Any] = {"services": {k: {"labels": extra} for k in spec.get("services", {})},
                           "networks": top("networks"), "volumes": top("volumes")}
    return "# written by inv deploy: stack.labels on everything\n" + yaml.safe_dump(out, sort_keys=True)


def write_stack_files(t: Target, images: dict[str, str], ops_image: str = "") -> None:
    from ..backup.stack import prepare_host

    env = t.env
    compose_text = env.path(env.cfg.deploy.compose_file).read_text()
    t.runner.run(["mkdir", "-p", str(t.dir / "nginx" / "conf.d"), str(t.dir / "secrets")])
    t.runner.run(["chmod", "700", str(t.dir / "secrets")])
    t.put("compose.yml", compose_text)
    if env.cfg.stack.labels:
        t.put("compose.labels.yml", labels_override(env, compose_text))
    t.put("stack.env", stack_env(env, images, t, ops_image), 0o600)
    # The file is readable by the containers' users (the API runs as 10001, PostgreSQL as 999); the
    # directory (0700, owned by the deploy user) keeps it from everyone else on the host.
    t.put("secrets/postgres_password", env.secret("postgres_password").get(), 0o644)
    prepare_host(t, env)  # the ops containers' config, the backup secrets, the local store directory
    if "monitoring" in env.cfg.deploy.profiles:
        for rel in ("monitoring/prometheus/prometheus.yml", "monitoring/alertmanager/alertmanager.yml"):
            src = env.path(rel)
            if not src.exists():
                raise BadInput(f"profile monitoring needs {rel} (owned by monitoring/); it is missing")
            t.put(rel, src.read_text())


def datastores_fingerprint(t: Target, images: dict[str, str]) -> str:
    """What decides the datastores' containers: the compose file, labels and every non-API setting."""
    import hashlib

    env_lines = [l for l in stack_env(t.env, images, t).splitlines()
                 if not l.startswith(("API_IMAGE_", "OPS_IMAGE="))]
    text = "\n".join([t.env.path(t.env.cfg.deploy.compose_file).read_text(), json.dumps(t.env.cfg.stack.labels,
                      sort_keys=True), *env_lines, ",".join(t.env.cfg.deploy.profiles)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def all_healthy(t: Target, services: list[str]) -> bool:
    for svc in services:
        ids = t.containers(svc)
        if not ids:
            return False
        for cid in ids:
            if t.runner.run(d.health_status(cid), mutating=False, check=False).stdout.strip() != "healthy":
                return False
    return True


# -- waiting and checking ------------------------------------------------------------------------------
def poll(runner: Runner, text: str, fn: Callable[[], Optional[str]], timeout: float, interval: float = 0.5) -> None:
    """Call fn until it returns None (done) or the timeout passes (OperationFailed with its last word)."""
    def loop() -> None:
        deadline = time.monotonic() + timeout
        last = "?"
        while time.monotonic() < deadline:
            res = fn()
            if res is None:
                return
            last = res
            if res.startswith("fatal:"):
                break
            time.sleep(interval)
        raise OperationFailed(f"{text}: {last}")
    runner.call(f"{text} (timeout {timeout:.0f}s)", loop)


def wait_service_healthy(t: Target, service: str, timeout: float, want: int = 1) -> list[str]:
    def check() -> Optional[str]:
        ids = t.containers(service)
        if len(ids) < want:
            return f"{len(ids)}/{want} containers running"
        for cid in ids:
            st = t.runner.run(d.health_status(cid), mutating=False, check=False).stdout.strip()
            if st in ("unhealthy", "exited", "dead"):
                return f"fatal: container {cid[:12]} of {service} is {st}"
            if st != "healthy":
                return f"container {cid[:12]} of {service} is {st or 'starting'}"
        return None
    poll(t.runner, f"[{t.name}] {service} not healthy", check, timeout)
    return t.containers(service)


def exec_json(t: Target, cid: str, code: str, *args: str) -> Any:
    r = t.runner.run(d.exec_(cid, ["python3", "-c", code, *args]), check=False)
    if r.dry_run:
        return None
    if r.rc != 0:
        raise OperationFailed(f"[{t.name}] check in {cid[:12]} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_ready(t: Target, service: str, timeout: float, ready_timeout: Optional[float] = None) -> list[str]:
    """Docker health (liveness) of every replica, then /ready of each, from inside the container."""
    want = t.env.cfg.deploy.replicas
    wait_service_healthy(t, service, timeout, want)
    timeout = ready_timeout or t.env.cfg.deploy.ready_timeout_s
    ids = t.containers(service)
    for cid in ids:
        def check(cid: str = cid) -> Optional[str]:
            got = exec_json(t, cid, SMOKE, "/ready")
            return None if got is None or got.get("/ready") == 200 else f"GET /ready -> {got.get('/ready')}"
        poll(t.runner, f"[{t.name}] {service} replica {cid[:12]} not ready", check, timeout)
    return ids


def smoke(t: Target, ids: list[str]) -> list[str]:
    paths = t.env.cfg.deploy.smoke_paths
    for cid in ids:
        got = exec_json(t, cid, SMOKE, *paths)
        if got is None:
            continue
        bad = {p: s for p, s in got.items() if s != 200}
        if bad:
            raise OperationFailed(f"[{t.name}] smoke check of {cid[:12]} failed: "
                                  + ", ".join(f"GET {p} -> {s}" for p, s in bad.items()))
    return [f"[{t.name}] smoke: {len(ids)} replica(s) answered 200 on {', '.join(paths)}"]


# -- nginx switch ------------------------------------------------------------------------------------
def nginx_id(t: Target) -> Optional[str]:
    ids = t.containers("nginx")
    return ids[0] if ids else None


def active_colour(t: Target) -> Optional[str]:
    text = t.read("nginx/conf.d/upstream.conf")
    return ng.parse_active(text) if text else None


def switch(t: Target, colour: str) -> None:
    """Render both nginx files, swap them in (rename), `nginx -t`; reload only a valid config, else
    put the previous files back and fail. Raises OperationFailed naming nginx's complaint."""
    env = t.env
    main = ng.render_main(env, env.path(ng.TEMPLATE).read_text())
    upstream = ng.render_upstream(env.path(ng.UPSTREAM_TEMPLATE).read_text(), colour)
    cid = nginx_id(t)
    if cid is None and not t.runner.dry_run:
        raise OperationFailed(f"[{t.name}] nginx is not running; nothing switched")
    previous = {rel: t.read(rel) for rel in ("nginx/nginx.conf", "nginx/conf.d/upstream.conf")}
    t.put("nginx/nginx.conf", main)
    t.put("nginx/conf.d/upstream.conf", upstream)
    test = t.runner.run(d.exec_(cid or "nginx", ["nginx", "-t", "-q", "-c", ng.CONF]), check=False)
    if test.rc != 0:
        for rel, text in previous.items():
            if text is not None:
                t.put(rel, text)
        why = (test.stderr or test.stdout).strip().splitlines()
        raise OperationFailed(f"[{t.name}] nginx -t rejected the new config ({why[-1] if why else 'no output'}); "
                              f"the previous config was put back and nginx was NOT reloaded")
    t.runner.run(d.exec_(cid or "nginx", ["nginx", "-c", ng.CONF, "-s", "reload"]))


def drain(t: Target) -> None:
    """Old nginx workers finish their in-flight requests; wait until none is left."""
    cid = nginx_id(t)
    if cid is None:
        return

    def check() -> Optional[str]:
        r = t.runner.run(d.exec_(cid, ["sh", "-c", WORKERS]), mutating=False, check=False)
        n = ng.parse_shutting_down(r.stdout)
        return None if n == 0 or r.dry_run else f"{n} old worker(s) still draining"
    poll(t.runner, f"[{t.name}] drain", check, t.env.cfg.deploy.drain_timeout_s, interval=0.2)


def error_window(t: Target, colour: str, since: float) -> tuple[int, int]:
    cid = nginx_id(t)
    if cid is None or t.runner.dry_run:
        return 0, 0
    r = t.runner.run([d.DOCKER, "logs", "--since", f"{since - 1:.3f}", cid], mutating=False, check=False)
    return ng.error_rate(r.stdout.splitlines(), colour, since)


def remove_colour(t: Target, colour: str) -> None:
    t.runner.run(cc.rm(t.base(), [f"api-{colour}"]), check=False)


# -- the flows ------------------------------------------------------------------------------------------
def _verify(env: Env, runner: Runner, ts: list[Target], colour: str) -> list[str]:
    if not env.cfg.deploy.verify_hosts:
        return ["verify-hosts: skipped (deploy.verify_hosts is false)"]
    if runner.dry_run:  # the new colour is not started in a dry-run, so its checks could only fail
        runner.call(f"testinfra checks of env {env.name} (colour {colour})", lambda: None)
        return ["verify-hosts: planned, not run (the new colour is not started in a dry-run)"]
    from ..hosts.verify import verify

    report = verify(env, runner, colour=colour)
    return [f"verify-hosts: {report.summary()}"]


def placement(ts: list[Target]) -> str:
    return f"compose on {', '.join(t.name for t in ts)}"


def deploy(env: Env, runner: Runner, image: str, allow_destructive: bool = False,
           say: Optional[Callable[[str], None]] = None) -> DeployResult:
    """The blue-green deploy, with its webhook messages (start, then success, failure or rolled back)."""
    with tracked(env, runner, "deploy", version=tag_of(image)) as ev:
        result = _deploy(env, runner, image, allow_destructive, say, ev)
        ev.set(summary=f"{result.colour} is live" + (f"; {result.previous} kept running for `inv rollback`"
                                                     if result.previous else ""))
    return result


def _deploy(env: Env, runner: Runner, image: str, allow_destructive: bool,
            say: Optional[Callable[[str], None]], ev: Tracker) -> DeployResult:
    start = time.monotonic()
    say = say or runner.info
    ts = targets(env, runner)
    ev.set(target=placement(ts))
    check_reachable(ts)
    ops_image = ops_image_for(env, image)
    for t in ts:
        check_image(t, image)
        check_image(t, ops_image)
    actives = {t.name: active_colour(t) for t in ts}
    if len(set(actives.values())) > 1:
        raise BadInput(f"hosts disagree on the active colour ({actives}); run `inv rollback` or fix by hand first")
    active = next(iter(actives.values()))
    idle = "blue" if active is None else ng.other(active)
    result = DeployResult(env.name, image, idle, active, [t.name for t in ts])
    def step(text: str) -> None:
        text = f"[{time.monotonic() - start:5.1f}s] {'(dry-run, not checked) ' if runner.dry_run else ''}{text}"
        result.steps.append(text)
        say(text)

    states: dict[str, dict] = {}
    first: dict[str, bool] = {}
    for t in ts:
        first[t.name] = nginx_id(t) is None
        if first[t.name]:
            check_ports(t)
        step(ensure_tls(t))
        raw = t.read("state.json")
        states[t.name] = json.loads(raw) if raw else {"images": {}}
        images = {**states[t.name].get("images", {}), idle: image}
        write_stack_files(t, images, ops_image)
    previous = states[ts[0].name].get("images", {}).get(active, "") if active else ""
    ev.start(previous=tag_of(previous) if previous else "")

    started: list[Target] = []
    try:
        for t in ts:
            # Look, then act: datastores whose definition did not change since the last deploy and that
            # are healthy are left alone (a compose run costs seconds); anything else goes through `up`.
            core = ["postgres", "redis"] + (["elasticsearch"] if "search" in env.cfg.deploy.profiles else [])
            fp = datastores_fingerprint(t, states[t.name].get("images", {}))
            if states[t.name].get("datastores") == fp and all_healthy(t, core):
                step(f"[{t.name}] no change: {', '.join(core)} healthy and unchanged")
            else:
                t.runner.run(cc.up(t.base(), core))
                for svc in core:
                    wait_service_healthy(t, svc, env.cfg.deploy.health_timeout_s)
                ensure_backup_role(t)
                step(f"[{t.name}] backup role {BACKUP_ROLE} ready")
            states[t.name]["datastores"] = fp
            # The WAL streamer runs the ops image of this release (recreated only when that changed).
            t.runner.run(cc.up(t.base(), ["walstream"]))
        # Migrations once (the database is shared by the hosts), before any new code serves.
        t0 = ts[0]
        mig = t0.runner.run(cc.run_once(t0.base(), f"api-{idle}", ["python3", "-c", MIGRATE],
                                        env={"ALLOW_DESTRUCTIVE": "1" if allow_destructive else "0"}))
        outcome = json.loads(mig.stdout.strip().splitlines()[-1]) if not mig.dry_run else {"pending": [], "applied": []}
        if outcome["applied"] is None:
            destructive = [f"{m['version']}_{m['name']}" for m in outcome["pending"] if m["destructive"]]
            raise BadInput(f"migration(s) {', '.join(destructive)} are marked destructive (-- iosops: destructive): "
                           "the running version may still use what they drop (expand/contract, see README); "
                           "deploy the expand step first, or pass --allow-destructive; nothing was applied or switched")
        result.migrations = outcome["applied"]
        step(f"migrations applied: {', '.join(result.migrations)}" if result.migrations else
             "migrations: no change (schema up to date)")

        for t in ts:
            started.append(t)
            t.runner.run(cc.up(t.base(), [f"api-{idle}"], {f"api-{idle}": env.cfg.deploy.replicas}))
        for t in ts:
            ids = wait_ready(t, f"api-{idle}", env.cfg.deploy.health_timeout_s)
            step(f"[{t.name}] api-{idle}: {len(ids)} replica(s) healthy and ready")
            step(smoke(t, ids)[0])
        for line in _verify(env, runner, ts, idle):
            step(line)
        for t in ts:
            if first[t.name]:
                t.put("nginx/nginx.conf", ng.render_main(env, env.path(ng.TEMPLATE).read_text()))
                t.put("nginx/conf.d/upstream.conf",
                      ng.render_upstream(env.path(ng.UPSTREAM_TEMPLATE).read_text(), idle))
                t.runner.run(cc.up(t.base(), ["nginx"]))
                wait_service_healthy(t, "nginx", env.cfg.deploy.health_timeout_s)
                step(f"[{t.name}] nginx started, routing to {idle}")
    except (OperationFailed, BadInput) as exc:
        if runner.dry_run:
            raise
        for t in started:
            remove_colour(t, idle)
        what = f"removed api-{idle} on {', '.join(t.name for t in started)}" if started else "nothing to undo"
        where = f"traffic stays on {active}" if active else "no traffic was ever routed"
        if isinstance(exc, BadInput) and not started:
            raise
        raise OperationFailed(f"deploy of {image} failed before the switch: {exc}; rolled back: {what}; {where}",
                              rolled_back=f"{what}; {where}" if started else "") from None

    # The switch: all hosts were ready. A failure on one host switches the others back.
    since = {t.name: t.now() for t in ts}
    switched: list[Target] = []
    if active is not None:
        try:
            for t in ts:
                switch(t, idle)
                switched.append(t)
            step(f"switched nginx to {idle} on {len(ts)} host(s)")
            for t in ts:
                drain(t)
            step("drained: the old workers finished their requests")
        except OperationFailed as exc:
            for t in switched:
                switch(t, active)
            for t in ts:
                remove_colour(t, idle)
            raise OperationFailed(f"switch to {idle} failed: {exc}; rolled back: traffic back on {active}, "
                                  f"api-{idle} removed",
                                  rolled_back=f"traffic back on {active}, api-{idle} removed") from None

        window = env.cfg.deploy.error_window_s
        if window > 0 and not runner.dry_run:
            runner.call(f"watch the error rate of {idle} for {window}s", time.sleep, window, mutating=False)
        errors = total = 0
        for t in ts:
            e, n = error_window(t, idle, since[t.name])
            errors, total = errors + e, total + n
        result.errors_after_switch, result.requests_after_switch = errors, total
        if total and errors / total > env.cfg.deploy.max_error_rate:
            for t in ts:
                switch(t, active)
                drain(t)
            raise OperationFailed(f"{idle} answered {errors}/{total} requests with 5xx after the switch "
                                  f"(> {env.cfg.deploy.max_error_rate:.1%}); rolled back: traffic back on {active} "
                                  f"(api-{idle} left running without traffic for inspection)",
                                  rolled_back=f"traffic back on {active} (api-{idle} left running without "
                                              "traffic for inspection)")
        step(f"error rate after switch: {errors}/{total} 5xx over {window}s")

    for t in ts:
        st = states[t.name]
        st["images"] = {**st.get("images", {}), idle: image}
        st.update(active=idle, previous=active, deployed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        t.put("state.json", json.dumps(st, indent=2, sort_keys=True) + "\n")
    if active:
        step(f"kept api-{active} running for `inv rollback --env {env.name}`")
    result.seconds = round(time.monotonic() - start, 2)
    return result


@dataclass
class RollbackResult:
    env: str
    colour: str
    image: str
    previous: str
    seconds: float = 0.0


def rollback(env: Env, runner: Runner) -> RollbackResult:
    """`inv rollback`: traffic back to the previous colour, with its webhook message."""
    with tracked(env, runner, "rollback") as ev:
        result = _rollback(env, runner, ev)
        ev.set(summary=f"traffic on {result.colour}; {result.previous} keeps running for a redeploy")
    return result


def _rollback(env: Env, runner: Runner, ev: Tracker) -> RollbackResult:
    start = time.monotonic()
    ts = targets(env, runner)
    ev.set(target=placement(ts))
    check_reachable(ts)
    actives = {t.name: active_colour(t) for t in ts}
    if None in actives.values():
        raise BadInput(f"nothing to roll back on {', '.join(k for k, v in actives.items() if v is None)}: "
                       "no deploy has switched traffic there yet")
    if len(set(actives.values())) > 1:
        raise BadInput(f"hosts disagree on the active colour ({actives}); fix by hand first")
    active = next(iter(actives.values()))
    back = ng.other(active)
    image = live = ""
    for t in ts:
        raw = t.read("state.json")
        images = (json.loads(raw) if raw else {}).get("images", {})
        image, live = images.get(back, ""), images.get(active, "")
        ids = t.containers(f"api-{back}")
        if not ids and not runner.dry_run:
            raise BadInput(f"api-{back} is not running on {t.name}: nothing to roll back to; deploy a known-good "
                           "tag with `inv deploy --tag ...`")
        wait_ready(t, f"api-{back}", min(env.cfg.deploy.health_timeout_s, 30))
    ev.set(version=tag_of(image) if image else "", previous=tag_of(live) if live else "")
    switched: list[Target] = []
    try:
        for t in ts:
            switch(t, back)
            switched.append(t)
    except OperationFailed as exc:
        for t in switched:
            switch(t, active)
        raise OperationFailed(f"rollback failed: {exc}; traffic stays on {active}") from None
    for t in ts:
        drain(t)
        raw = t.read("state.json")
        st = json.loads(raw) if raw else {"images": {}}
        st.update(active=back, previous=active, rolled_back_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        t.put("state.json", json.dumps(st, indent=2, sort_keys=True) + "\n")
    return RollbackResult(env.name, back, image, active, round(time.monotonic() - start, 2))


def status(env: Env, runner: Runner) -> list[dict]:
    out = []
    for t in targets(env, runner):
        raw = t.read("state.json")
        st = json.loads(raw) if raw else {}
        out.append({"host": t.name, "active": active_colour(t), "images": st.get("images", {}),
                    "replicas": {c: len(t.containers(f"api-{c}")) for c in ng.COLOURS}})
    return out


def destroy(env: Env, runner: Runner, volumes: bool = False) -> list[str]:
    """Remove the compose stack (all profiles) of every target; data volumes only with volumes=True."""
    done = []
    for t in targets(env, runner):
        if t.read("compose.yml") is None and not runner.dry_run:
            continue
        base = [*t.base(), "--profile", "monitoring", "--profile", "search", "--profile", "ops"]
        t.runner.run(cc.down(base, volumes), check=False)
        done.append(t.name)
    return done
