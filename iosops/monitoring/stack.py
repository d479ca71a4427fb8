"""`inv monitoring.up`: Prometheus, Alertmanager and the PostgreSQL/Redis/node exporters as containers on
the local stack's network (`<stack>-net`), labelled `iosops.stack=<stack>` so `inv down` removes them.

Look, then act: configs are rendered into the state dir; a container that runs the wanted image with
the same config fingerprint is left alone ("no change"), otherwise it is replaced.
The Slack webhook URL is written to a file of its own (from the env's secret reference) and mounted
at /run/secrets/slack_webhook_url, which alertmanager.yml names in api_url_file: no config file,
argv, label or log line ever holds it.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from ..commands import docker as d
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from ..secretref import Secret
from ..stack.local import labels as stack_labels
from ..stack.local import names as stack_names
from . import ALERTMANAGER_DIR, PROMETHEUS_DIR, RULES_DIR

JOBS = ("alertmanager", "ios-api", "nginx", "postgres", "redis", "elasticsearch", "node", "pushgateway",
        "blackbox-tls", "walstream")
# What monitoring.up runs (network aliases on the stack network) and the API's own port.
LOCAL_TARGETS = {"ios-api": ["api:8000"], "postgres": ["postgres-exporter:9187"],
                 "redis": ["redis-exporter:9121"], "node": ["node-exporter:9100"],
                 "alertmanager": ["alertmanager:9093"]}
SLACK_IN_CONTAINER = "/run/secrets/slack_webhook_url"
QUERIES_IN_CONTAINER = "/etc/postgres-exporter/queries.yaml"


@dataclass
class MonService:
    key: str
    name: str
    image: str
    argv: list[str]
    secret_env: dict[str, Secret] = field(default_factory=dict)


@dataclass
class MonUpResult:
    stack: str
    prometheus_url: str
    alertmanager_url: str
    config_dir: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    slack: str = ""
    seconds: float = 0.0


def metrics_dir(env: Env) -> str:
    """Folder of the backup textfile metrics (Docker creates it on first mount if missing)."""
    return str(env.path(env.cfg.backup.metrics_file).parent)


def names(env: Env) -> dict[str, str]:
    n = env.cfg.stack.name
    return {"prometheus": f"{n}-prometheus", "alertmanager": f"{n}-alertmanager",
            "postgres_exporter": f"{n}-postgres-exporter", "redis_exporter": f"{n}-redis-exporter",
            "node_exporter": f"{n}-node-exporter", "promdata": f"{n}-promdata", "amdata": f"{n}-amdata"}


def targets(env: Env) -> dict[str, list[str]]:
    unknown = sorted(set(env.cfg.monitoring.targets) - set(JOBS))
    if unknown:
        raise BadInput(f"envs/{env.name}.yaml: monitoring.targets: unknown job(s) {', '.join(unknown)}; "
                       f"jobs are {', '.join(JOBS)}")
    return {job: list(env.cfg.monitoring.targets.get(job, LOCAL_TARGETS.get(job, []))) for job in JOBS}


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("15s", "1m", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    num = duration.rstrip("smhdwy")
    unit = duration[len(num):]
    return float(num) * units[unit]


def config_dir(env: Env) -> Path:
    return env.state_dir / "monitoring" / env.cfg.stack.name


def render_prometheus(env: Env) -> dict[str, str]:
    """Relative path -> content of the Prometheus config dir mounted at /etc/prometheus."""
    m = env.cfg.monitoring
    cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = m.scrape_interval
    cfg["global"]["evaluation_interval"] = m.evaluation_interval
    # Prometheus refuses a scrape timeout longer than the interval (the live check scrapes every 5s).
    if seconds(m.scrape_interval) < seconds(str(cfg["global"].get("scrape_timeout", "10s"))):
        cfg["global"]["scrape_timeout"] = m.scrape_interval
    head = (f"# Rendered by `inv monitoring.up --env {env.name}` from monitoring/prometheus/prometheus.yml "
            f"(intervals from monitoring.*); edit the source, not this file.\n")
    files = {"prometheus.yml": head + yaml.safe_dump(cfg, sort_keys=False)}
    for path in sorted(RULES_DIR.glob("*.yml")):
        files[f"rules/{path.name}"] = path.read_text()
    for job, hosts in targets(env).items():
        groups = [{"targets": hosts, "labels": {"env": env.name}}] if hosts else []
        files[f"targets/{job}.yml"] = yaml.safe_dump(groups, sort_keys=False)
    return files


def render_alertmanager() -> dict[str, str]:
    files = {"alertmanager.yml": (ALERTMANAGER_DIR / "alertmanager.yml").read_text()}
    for path in sorted((ALERTMANAGER_DIR / "templates").glob("*.tmpl")):
        files[f"templates/{path.name}"] = path.read_text()
    return files


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slack_secret(env: Env) -> tuple[Optional[Secret], str]:
    """(value, how it was found). Missing + require_slack -> BadInput naming the reference, not a value."""
    m = env.cfg.monitoring
    ref = env.cfg.secrets.get(m.slack_webhook_secret)
    if ref is not None and ref.available(env.root):
        return env.secret(m.slack_webhook_secret), f"from secrets.{m.slack_webhook_secret} ({ref.describe()})"
    if m.require_slack:
        where = ref.describe() if ref else "no reference"
        raise BadInput(f"env {env.name}: the Slack webhook secret secrets.{m.slack_webhook_secret} is not "
                       f"available ({where}); set it, or set monitoring.require_slack: false")
    return None, (f"none: secrets.{m.slack_webhook_secret} is not set, so Slack notifications will fail "
                  f"(AlertmanagerNotificationsFailing); put a webhook URL in it to enable them")


# The compose file's service of each container monitoring.up runs (issue #14: compose is to become their
# only definition; until then their limits are read from it, not repeated here).
COMPOSE_SERVICES = {"postgres_exporter": "postgres-exporter", "redis_exporter": "redis-exporter",
                    "node_exporter": "node-exporter", "alertmanager": "alertmanager", "prometheus": "prometheus"}
_INTERP = re.compile(r"^\$\{[A-Z0-9_]+:-([^}]*)\}$")


def compose_memory(env: Env) -> dict[str, str]:
    """mem_limit of each monitoring service in the env's compose file (`${VAR:-default}`: the default)."""
    spec = yaml.safe_load(env.path(env.cfg.deploy.compose_file).read_text())["services"]
    out = {}
    for key, svc in COMPOSE_SERVICES.items():
        raw = str(spec[svc]["mem_limit"])
        m = _INTERP.match(raw)
        out[key] = m.group(1) if m else raw
    return out


def services(env: Env, cdir: Path, fp: dict[str, str]) -> list[MonService]:
    s, img, n, sn = env.cfg.stack, env.cfg.images, names(env), stack_names(env)
    m, net = env.cfg.monitoring, sn["network"]
    lab = stack_labels(env)
    mem = compose_memory(env)

    def labels_for(key: str) -> dict[str, str]:
        return {**lab, "iosops.config": fp.get(key, "")}

    password = env.secret("postgres_password")
    return [
        MonService("postgres_exporter", n["postgres_exporter"], img.postgres_exporter, d.run_detached(
            n["postgres_exporter"], img.postgres_exporter, network=net, network_alias="postgres-exporter",
            labels=labels_for("postgres_exporter"), memory=mem["postgres_exporter"],
            env={"DATA_SOURCE_URI": f"postgres:5432/{s.postgres_db}?sslmode=disable",
                 "DATA_SOURCE_USER": s.postgres_user},
            pass_env=["DATA_SOURCE_PASS"],
            volumes=[f"{PROMETHEUS_DIR / 'postgres-exporter-queries.yaml'}:{QUERIES_IN_CONTAINER}:ro"],
            command=[f"--extend.query-path={QUERIES_IN_CONTAINER}", "--web.listen-address=:9187"]),
            secret_env={"DATA_SOURCE_PASS": password}),
        MonService("redis_exporter", n["redis_exporter"], img.redis_exporter, d.run_detached(
            n["redis_exporter"], img.redis_exporter, network=net, network_alias="redis-exporter",
            labels=labels_for("redis_exporter"), memory=mem["redis_exporter"],
            command=["-redis.addr=redis://redis:6379", "-web.listen-address=:9121"])),
        MonService("node_exporter", n["node_exporter"], img.node_exporter, d.run_detached(
            n["node_exporter"], img.node_exporter, network=net, network_alias="node-exporter",
            labels=labels_for("node_exporter"), memory=mem["node_exporter"],
            # Host /proc and /sys only. Host filesystems would need `/` mounted into the container, which
            # pins other containers' network namespaces on the daemon (a network then cannot be removed);
            # real hosts run the prometheus-node-exporter package instead, with filesystem metrics.
            # The backup and WAL metrics (iosops_backup_*, iosops_wal_*, iosops_drill_*) are textfiles in
            # the folder of backup.metrics_file: the textfile collector exports them.
            volumes=["/proc:/host/proc:ro", "/sys:/host/sys:ro", f"{metrics_dir(env)}:/textfile:ro"],
            command=["--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--no-collector.filesystem",
                     "--collector.textfile.directory=/textfile", "--web.listen-address=:9100"])),
        MonService("alertmanager", n["alertmanager"], img.alertmanager, d.run_detached(
            n["alertmanager"], img.alertmanager, network=net, network_alias="alertmanager",
            labels=labels_for("alertmanager"), memory=mem["alertmanager"],
            publish=[f"{s.publish_host}:{m.alertmanager_port}:9093"],
            volumes=[f"{cdir / 'alertmanager'}:/etc/prometheus:ro",
                     f"{cdir / 'secrets' / 'slack_webhook_url'}:{SLACK_IN_CONTAINER}:ro",
                     f"{n['amdata']}:/alertmanager"],
            command=["prometheus-alertmanager", "--config.file=/etc/prometheus/alertmanager.yml",
                     "--storage.path=/alertmanager", "--cluster.listen-address=",
                     "--web.listen-address=0.0.0.0:9093"])),
        MonService("prometheus", n["prometheus"], img.prometheus, d.run_detached(
            n["prometheus"], img.prometheus, network=net, network_alias="prometheus",
            labels=labels_for("prometheus"), memory=mem["prometheus"],
            publish=[f"{s.publish_host}:{m.prometheus_port}:9090"],
            volumes=[f"{cdir / 'prometheus'}:/etc/prometheus:ro", f"{n['promdata']}:/prometheus"],
            command=["prometheus", "--config.file=/etc/prometheus/prometheus.yml",
                     "--storage.tsdb.path=/prometheus",
                     f"--storage.tsdb.retention.time={m.retention_time}",
                     f"--storage.tsdb.retention.size={m.retention_size}",
                     "--web.listen-address=0.0.0.0:9090", "--web.enable-lifecycle"])),
    ]


def _state(runner: Runner, name: str) -> Optional[tuple[str, bool, str]]:
    r = runner.run(d.inspect_format(name, '{{json .Image}} {{json .State.Running}} '
                                          '{{json (index .Config.Labels "iosops.config")}}'),
                   mutating=False, check=False)
    if r.rc != 0:
        return None
    image, running, fp = r.stdout.split()
    return json.loads(image), json.loads(running), json.loads(fp) or ""


def wait_http_ok(runner: Runner, url: str, timeout: float) -> None:
    def poll() -> None:
        import requests

        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                resp = requests.get(url, timeout=3)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise OperationFailed(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")

    runner.call(f"wait until GET {url} answers 200 (timeout {timeout:.0f}s)", poll)


def up(env: Env, runner: Runner) -> MonUpResult:
    start = time.monotonic()
    s, n, sn, lab = env.cfg.stack, names(env), stack_names(env), stack_labels(env)
    # In a dry-run of `monitoring.up` the stack step only planned the network: plan on top of that.
    if runner.run(d.inspect_format(sn["network"], "{{.Id}}"), mutating=False, check=False).rc != 0 \
            and not runner.dry_run:
        raise BadInput(f"stack {s.name} is not running (no network {sn['network']}); start it with "
                       f"`inv up --env {env.name}` or `inv monitoring.up --env {env.name}`")
    cdir = config_dir(env)
    slack, slack_note = slack_secret(env)
    prom, am = render_prometheus(env), render_alertmanager()
    for sub, files in (("prometheus", prom), ("alertmanager", am)):  # a rule file deleted upstream goes too
        stale = [p for p in (cdir / sub).rglob("*") if p.is_file() and str(p.relative_to(cdir / sub)) not in files]
        if stale:
            runner.call(f"remove {len(stale)} stale file(s) from {cdir / sub}", lambda st=stale: [p.unlink() for p in st])
    for rel_path, text in prom.items():
        runner.write_file(cdir / "prometheus" / rel_path, text)
    for rel_path, text in am.items():
        runner.write_file(cdir / "alertmanager" / rel_path, text)
    secret_dir = cdir / "secrets"
    runner.call(f"mkdir -m 700 {secret_dir}", lambda: (secret_dir.mkdir(parents=True, exist_ok=True),
                                                        secret_dir.chmod(0o700)))
    # 0644 inside a 0700 dir: only root on the host gets to it, and the container's non-root user can
    # read the bind-mounted file. Its value changes the fingerprint only as a hash.
    runner.write_file(secret_dir / "slack_webhook_url", (slack.get() if slack else "") + "\n", mode=0o644)
    slack_hash = hashlib.sha256((slack.get() if slack else "").encode()).hexdigest()
    queries = (PROMETHEUS_DIR / "postgres-exporter-queries.yaml").read_text()
    fp = {"prometheus": fingerprint(prom), "alertmanager": fingerprint(am, slack_hash),
          "postgres_exporter": fingerprint(queries), "redis_exporter": "", "node_exporter": ""}
    result = MonUpResult(stack=s.name, prometheus_url=f"http://{s.publish_host}:{env.cfg.monitoring.prometheus_port}",
                         alertmanager_url=f"http://{s.publish_host}:{env.cfg.monitoring.alertmanager_port}",
                         config_dir=str(cdir), slack=slack_note)
    for vol in (n["promdata"], n["amdata"]):
        if runner.run(d.inspect_format(vol, "{{.Name}}"), mutating=False, check=False).rc != 0:
            runner.run(d.volume_create(vol, lab))
    for svc in services(env, cdir, fp):
        want = runner.run(d.inspect_format(svc.image, "{{.Id}}"), mutating=False, check=False).stdout.strip()
        if not want and not runner.dry_run:
            raise BadInput(f"image {svc.image} is missing; build it with `inv images.offline`")
        state = _state(runner, svc.name)
        if want and state == (want, True, fp[svc.key]):
            result.unchanged.append(svc.name)
            runner.info(f"no change: {svc.name} runs {svc.image} with the same config")
            continue
        if state is not None:
            runner.run(d.rm_containers([svc.name]))
        runner.run(svc.argv, env=svc.secret_env or None)
        result.changed.append(svc.name)
    timeout = s.ready_timeout_s
    wait_http_ok(runner, f"{result.prometheus_url}/-/ready", timeout)
    wait_http_ok(runner, f"{result.alertmanager_url}/-/ready", timeout)
    result.seconds = round(time.monotonic() - start, 1)
    return result
